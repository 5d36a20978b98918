"""The console's in-process state: the gauge recorder, the task views kept per window, the recent
failures by task - what the console endpoints (alertd.api.console) read."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from aiohttp import web

from alertd.alert import AlertState
from alertd.api.context import ApiContext
from alertd.observe.recorder import Key, Recorder
from alertd.observe.series import CounterView, DistributionView, Labels

log = logging.getLogger(__name__)

PREFIX = "/api/alertd/v1/console"
QUEUE_GAUGES = (
    "queue_length",
    "queue_consumers",
    "queue_waiting_p95_seconds",
    "queue_waiting_oldest_seconds",
    "queue_latency_p95_seconds",
)
WORKER_GAUGES = ("worker_memory_bytes", "worker_cpu_ratio", "worker_loadavg", "worker_active_tasks")
OVERVIEW = (
    "workers_online",
    "workers_lost",
    "events_per_second",
    "tasks_per_second",
    "failure_ratio",
    "queues_over_threshold",
    "firing",
)
UNITS = {"failure_ratio": "ratio", "events_per_second": "rate", "tasks_per_second": "rate"}
TASK_WINDOWS = (300.0, 900.0, 3600.0)  # the task table's choices; views are kept for each used
DETAIL_POINTS = 60  # points of a task's charts, whatever their range
FAILURES_PER_TASK = 5
MAX_FAILED_NAMES = 10_000


def _pair(labels: Labels) -> tuple[str, str]:
    return (labels[0], labels[1])


def _all(labels: Labels) -> tuple[()]:
    return ()


def _num(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


class Console:
    """What the console keeps between requests: the gauge recorder, task views, recent failures."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        obs = ctx.config.observe
        self.step = 3.0 * obs.bucket
        self.retention = obs.retention
        self.recorder = Recorder(self.step, max(2, math.ceil(self.retention / self.step)))
        self._events: tuple[float, int] | None = None
        self._overview_views: dict[str, CounterView[tuple[()]]] = {}
        self._counters: dict[tuple[str, float], CounterView[tuple[str, str]]] = {}
        self._dists: dict[tuple[str, float], DistributionView[tuple[str, str]]] = {}
        self.failures: OrderedDict[str, deque[dict[str, Any]]] = OrderedDict()
        self.sample_seconds = 0.0  # the last sample's cost, for the bench
        self._unwatch: Callable[[], None] | None = None

    def open(self) -> None:
        """Follow failures (for the tasks' last failure and its traceback)."""
        self._unwatch = self.ctx.observer.watch(self._on_failure, frozenset({"task-failed"}))

    def close(self) -> None:
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None

    # -- sampling --------------------------------------------------------------------------

    def _on_failure(self, e: dict[str, Any]) -> None:
        name = str(e.get("task") or "")
        if not name:
            return
        q = self.failures.get(name)
        if q is None:
            if len(self.failures) >= MAX_FAILED_NAMES:
                self.failures.popitem(last=False)
            q = self.failures[name] = deque(maxlen=FAILURES_PER_TASK)
        else:
            self.failures.move_to_end(name)
        at = e.get("local_received")
        q.append(
            {
                "at": at if isinstance(at, float) else self.ctx.clock.now(),
                "queue": str(e.get("queue") or ""),
                "worker": str(e.get("worker") or ""),
                "exception": str(e.get("exception") or ""),
                "exception_repr": str(e.get("exception_repr") or "")[:500],
                "traceback": str(e.get("traceback") or "")[-2000:],
            }
        )

    def _step_sum(self, metric: str, now: float) -> float:
        view = self._overview_views.get(metric)
        if view is None:
            view = self._overview_views[metric] = self.ctx.series.counter_view(metric, self.step, _all)
        # the window of whole buckets before now's (still filling): a full step's count
        return view.read(now - self.ctx.config.observe.bucket).get((), 0.0)

    def sample(self) -> None:
        """One sample of every gauge the console charts (cheap: O(workers + queues + alerts))."""
        started = time.perf_counter()
        ctx = self.ctx
        now = ctx.clock.now()
        g = ctx.observer.gauges(now)
        values: dict[Key, float] = {}
        values[("workers_online", ())] = g.get("workers_online", {}).get((), 0.0)
        values[("workers_lost", ())] = float(sum(g.get("worker_lost", {}).values()))
        events = ctx.health.events
        if self._events is not None and now > self._events[0]:
            values[("events_per_second", ())] = (events - self._events[1]) / (now - self._events[0])
        self._events = (now, events)
        ok, failed = self._step_sum("tasks_succeeded", now), self._step_sum("tasks_failed", now)
        values[("tasks_per_second", ())] = (ok + failed) / self.step
        if ok + failed:
            values[("failure_ratio", ())] = failed / (ok + failed)
        firing = 0
        over: set[str] = set()
        metrics = self._rule_metrics()
        for a in ctx.alerts():
            if a.state is AlertState.RESOLVED:
                continue
            firing += a.state is AlertState.FIRING
            metric = metrics.get(a.generator, "")
            if metric.startswith("queue_") and "queue" in a.labels:
                over.add(a.labels["queue"])
            if a.value is not None:
                values[("alert_value", (a.fingerprint,))] = a.value
        values[("firing", ())] = float(firing)
        values[("queues_over_threshold", ())] = float(len(over))
        for name in (*QUEUE_GAUGES, *WORKER_GAUGES):
            for labels, v in g.get(name, {}).items():
                values[(name, labels)] = v
        self.recorder.sample(now, values)
        self.sample_seconds = time.perf_counter() - started

    def _rule_metrics(self) -> dict[str, str]:
        """Each metric rule's metric by the generator string its alerts carry."""
        out = {}
        for rt in self.ctx.engine.runtimes.values():
            r = rt.rule
            if r.spec.metric:
                out[f"{r.file}:{r.line} {r.group}/{r.name}"] = r.spec.metric
        return out

    async def run(self) -> None:
        while True:
            try:
                if self.recorder.due(self.ctx.clock.now()):
                    self.sample()
            except Exception:  # a chart is not worth stopping the daemon for; logged
                log.exception("console sample failed")
            await asyncio.sleep(min(1.0, self.step / 3))

    # -- reading ---------------------------------------------------------------------------

    def counter(self, metric: str, window: float) -> dict[tuple[str, str], float]:
        view = self._counters.get((metric, window))
        if view is None:
            view = self._counters[(metric, window)] = self.ctx.series.counter_view(metric, window, _pair)
        return view.read(self.ctx.clock.now())

    def dist_stat(self, metric: str, window: float, q: float) -> dict[tuple[str, str], float]:
        view = self._dists.get((metric, window))
        if view is None:
            view = self._dists[(metric, window)] = self.ctx.series.distribution_view(metric, window, _pair)
        return {k: d.quantile(q) for k, d in view.read(self.ctx.clock.now()).items() if d.count}

    def dist_stats(self, metric: str, window: float, qs: tuple[float, ...]) -> dict[tuple[str, str], list[float]]:
        view = self._dists.get((metric, window))
        if view is None:
            view = self._dists[(metric, window)] = self.ctx.series.distribution_view(metric, window, _pair)
        return {k: [d.quantile(q) for q in qs] for k, d in view.read(self.ctx.clock.now()).items() if d.count}


CONSOLE: web.AppKey[Console] = web.AppKey("console", Console)
