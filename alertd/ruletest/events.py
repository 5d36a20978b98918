"""Event synthesis: a test's event item as the Celery events a real deployment would send for it."""

from __future__ import annotations

import uuid as uuidlib
from datetime import UTC, datetime
from typing import Any

from alertd.ruletest.spec import T0, EventItem

PRODUCER = "producer@test"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def expand(item: EventItem, at: float, n: str) -> list[dict[str, Any]]:
    """One item occurrence as the Celery events a real deployment would send for it."""
    t = T0 + at
    if item.type.startswith("worker-"):
        return [
            {
                "type": item.type,
                "hostname": item.worker,
                "freq": item.freq,
                "active": item.active,
                "timestamp": t,
                "local_received": t,
                **item.fields,
            }
        ]
    uid = str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"alertd-test:{n}"))
    state = item.type.removeprefix("task-")
    started = t - item.runtime if state in ("succeeded", "failed", "retried") else t
    sent = started - item.wait
    received = sent if item.prefetched is None else max(sent, started - item.prefetched)
    eta = _iso(sent + item.eta) if item.eta is not None else None
    if state in ("rejected", "revoked"):
        started = sent = t
    final: dict[str, Any] = {
        "type": item.type,
        "uuid": uid,
        "hostname": item.worker,
        "timestamp": t,
        "local_received": t,
    }
    if state == "succeeded":
        final["runtime"] = item.runtime
    if state in ("failed", "retried"):
        final["exception"] = item.exception or "Exception()"
        final["traceback"] = item.traceback
    final.update(item.fields)
    if item.raw or state == "sent":
        if state == "sent":
            final.update(name=item.task, queue=item.queue, hostname=PRODUCER, eta=eta)
        return [final]
    chain: list[dict[str, Any]] = [
        {
            "type": "task-sent",
            "uuid": uid,
            "name": item.task,
            "queue": item.queue,
            "hostname": PRODUCER,
            "eta": eta,
            "timestamp": sent,
            "local_received": sent,
        },
        {
            "type": "task-received",
            "uuid": uid,
            "name": item.task,
            "hostname": item.worker,
            "eta": eta,
            "timestamp": received,
            "local_received": received,
        },
    ]
    if state == "received":
        chain[1].update(timestamp=t, local_received=t)
        return chain
    if state in ("rejected", "revoked"):
        return [*chain, final]
    chain.append(
        {"type": "task-started", "uuid": uid, "hostname": item.worker, "timestamp": started, "local_received": started}
    )
    if state == "started":
        return chain
    return [*chain, final]
