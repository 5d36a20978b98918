"""The API's views of the tables: tasks in flight and workers, as plain dicts."""

from __future__ import annotations

import math
from itertools import islice
from typing import Any

from alertd.observe.orphans import IN_FLIGHT
from alertd.observe.tasks import TaskTable
from alertd.observe.workers import WorkerTable


def tasks_snapshot(table: TaskTable, now: float, limit: int) -> list[dict[str, Any]]:
    """Up to `limit` tasks in flight, most recently active first."""
    out = []
    for uuid, t in islice(reversed(table.tasks.items()), max(0, limit)):
        out.append(
            {
                "uuid": uuid,
                "name": t.name,
                "queue": t.queue,
                "worker": t.worker,
                "state": t.state,
                "sent": t.sent,
                "received": t.received,
                "started": t.started,
                "eta": t.eta,
                "retries": t.retries,
                "age": max(0.0, now - t.entered) if t.state in IN_FLIGHT else None,
            }
        )
    return out


def workers_snapshot(table: WorkerTable) -> list[dict[str, Any]]:
    """Every worker in the table with its state (online, lost, offline), sorted by hostname."""
    out = []
    for w in sorted(table.workers.values(), key=lambda w: w.hostname):
        clock = table.clocks.get(w.hostname)
        offset = clock[0] if clock is not None else None
        out.append(
            {
                "hostname": w.hostname,
                "state": table.state(w),
                "last_heartbeat": w.last_heartbeat if w.last_heartbeat != -math.inf else None,
                "freq": w.freq,
                "active": w.active,
                "processed": w.processed,
                "loadavg": w.loadavg,
                "pool_size": w.pool_size,
                "memory_bytes": w.memory_bytes,
                "cpu_ratio": w.cpu_ratio,
                "sw_ident": w.sw_ident,
                "sw_ver": w.sw_ver,
                "pid": w.pid,
                "offline_at": w.offline_at,
                "lost_at": w.lost_at,
                # its clock minus ours (less transit), from its events; skewed past max_clock_skew
                "clock_offset": offset,
                "clock_skewed": offset is not None and abs(offset) > table.max_clock_skew,
                "queues": list(w.queues),
                "last_loss": w.loss.to_dict() if w.loss is not None else None,
            }
        )
    return out
