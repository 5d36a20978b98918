"""What the worker table answers once per evaluation: the worker_* gauges, and for a page about
a lost worker, the tasks it took with it (or, for a queue left without consumers, the gone worker
that served it). Read-only: the table itself (alertd.observe.workers) is written by events.
"""

from __future__ import annotations

import math
from typing import Any

from alertd.observe.waiting import Gauges
from alertd.observe.workers import MEMORY_HISTORY_MIN, SAMPLE_STALE_AFTER, Worker, WorkerTable


def worker_gauges(table: WorkerTable, g: Gauges, now: float) -> int:
    """The worker_* gauges (after a sweep); returns how many workers are online."""
    online = 0
    for w in table.workers.values():
        key = (w.hostname,)
        state = table.state(w)
        if w.last_heartbeat == -math.inf and state != "offline":
            continue  # known only from inspect or task events: no heartbeat seen yet
        up = state == "online"
        online += up
        g["worker_up"][key] = float(up)
        g["worker_lost"][key] = float(state == "lost" or now < w.lost_until)
        # A restart (deploy) says goodbye and is back within the grace: that pages nothing.
        g["worker_offline"][key] = float(w.offline_at is not None and now - w.offline_at >= table.restart_grace)
        if not up:
            continue
        g["worker_active_tasks"][key] = float(w.active)
        g["worker_loadavg"][key] = w.loadavg
        fresh = w.sample_at is not None and now - w.sample_at <= SAMPLE_STALE_AFTER
        if fresh and w.pool_size:
            g["worker_pool_size"][key] = float(w.pool_size)
            g["worker_saturation_ratio"][key] = w.active / w.pool_size
        if fresh and w.memory_bytes is not None:
            g["worker_memory_bytes"][key] = float(w.memory_bytes)
            (t0, m0), (t1, m1) = w.memory_history[0], w.memory_history[-1]
            if t1 - t0 >= MEMORY_HISTORY_MIN:
                g["worker_memory_growth_bytes_per_hour"][key] = (m1 - m0) / (t1 - t0) * 3600.0
        if fresh and w.cpu_ratio is not None:
            g["worker_cpu_ratio"][key] = w.cpu_ratio
    return online


def gone_server(table: WorkerTable, queue: str, now: float) -> str:
    """The worker that served `queue` and is gone now - lost (worker_lost reads 1), or shut
    down and not back - the latest first; '' when none is. A queue's no-consumer alert names
    it: a lost worker's page explains that alert, and that alert explains a shutdown's."""
    best: Worker | None = None
    for w in table.workers.values():
        gone = table.state(w) in ("lost", "offline") or now < w.lost_until
        if queue not in w.queues or w.loss is None or not gone:
            continue
        if best is None or (best.loss is not None and w.loss.at > best.loss.at):
            best = w
    return best.hostname if best is not None else ""


def loss_details(table: WorkerTable, hostname: str) -> dict[str, Any]:
    """What a worker_lost page says beyond the labels: the tasks the worker took with it."""
    w = table.workers.get(hostname)
    loss = w.loss if w is not None else None
    if loss is None:
        return {}
    d = loss.to_dict()
    d["orphaned_tasks"] = loss.summary()
    return d
