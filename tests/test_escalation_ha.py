"""Escalation with real processes (issue 15): two `alertd run` replicas on one Redis store, a real
HTTP sink, Celery task events on the broker's event channel (under a private global_keyprefix);
the replica that paged is SIGKILLed mid-policy, before the step is due. The survivor sends the
step at its time (not at the group's next group_interval, 30 s away), once, and then the
resolved notice to both receivers, once each."""

from __future__ import annotations

import signal
import time
import uuid
from typing import Any

import pytest

from tests.daemon_fixtures import FAIL_RULES, Deployment, wait_until
from tests.notify_fixtures import ThreadedSink

pytestmark = pytest.mark.broker

AFTER = 6.0  # the step, after the first page
GROUP_INTERVAL = 30.0  # far beyond the step: only a wake-up sends it on time
LATE = 3.0  # a rules tick (1 s), the sink's clock against alertd's, a busy machine


def posts(sink: ThreadedSink, path: str) -> list[dict[str, Any]]:
    with sink.lock:
        return [{**r["json"], "at": r["at"]} for r in sink.requests if r["path"] == path]


def test_a_replica_killed_mid_policy_leaves_the_survivor_to_send_the_step_once_on_time(
    deployment: Deployment,
) -> None:
    http_sink: ThreadedSink = deployment.sink
    # the step's receiver is written below `hook`, the receiver write_setup defines
    route = f"""  - name: secondary
    apprise: ["{http_sink.url(path="/secondary")}"]
    retries: 0
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 1s
  group_interval: {GROUP_INTERVAL:g}s
  repeat_interval: 1h
  escalate: [{{after: {AFTER:g}s, receiver: secondary}}]
"""
    replicas = [
        deployment.alertd(
            name=name,
            store=f"{deployment.broker}?prefix=escalate-{deployment.unique}:",  # one store, shared
            rules=FAIL_RULES.replace("resolve_after: 10m", "resolve_after: 14s"),
            route=route,
            hook={"send_resolved_immediately": True},  # the resolve need not wait out group_interval
            extra="ha: {claim_ttl: 10s}",
        )
        for name in ("a", "b")
    ]

    app = deployment.producer()
    with app.connection_for_write() as conn:
        events = app.events.Dispatcher(conn, hostname="celery@escalate")
        task_id = str(uuid.uuid4())
        events.send("task-received", uuid=task_id, name="t.esc", args="()", kwargs="{}", retries=0)
        events.send("task-failed", uuid=task_id, exception="RuntimeError('boom')", traceback="RuntimeError: boom")
        events.close()

    wait_until(lambda: posts(http_sink, "/hook"), timeout=20, what="the first page")
    wait_until(
        lambda: replicas[1].api.get("/api/alertd/v1/history", query="kind=sent"),
        timeout=10,
        what="the page in the shared history",
    )
    sender = next((r for r in replicas if "Sent JSON POST" in r.output()), replicas[0])
    survivor = replicas[1] if sender is replicas[0] else replicas[0]
    sender.kill(signal.SIGKILL)  # mid-policy: the step is due in AFTER seconds
    (page,) = posts(http_sink, "/hook")
    assert not posts(http_sink, "/secondary")

    wait_until(lambda: posts(http_sink, "/secondary"), timeout=AFTER + 15, what="the escalation step")
    (step,) = posts(http_sink, "/secondary")
    assert AFTER - 0.5 <= step["at"] - page["at"] <= AFTER + LATE, step["at"] - page["at"]
    assert "escalated: unacknowledged 6s after the first page" in step["message"]

    def resolved(path: str) -> bool:
        return any(p["type"] == "success" for p in posts(http_sink, path))

    wait_until(lambda: resolved("/hook") and resolved("/secondary"), timeout=40, what="both resolved notices")
    time.sleep(3)  # room for a late duplicate
    for path in ("/hook", "/secondary"):
        assert [p["type"] for p in posts(http_sink, path)] == ["failure", "success"], (path, posts(http_sink, path))
    (escalated,) = survivor.api.get("/api/alertd/v1/history", query="kind=escalated")
    assert escalated["receiver"] == "secondary" and escalated["detail"]["step"] == 1
    assert "Traceback" not in survivor.output()
