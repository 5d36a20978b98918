"""The observer: what the event stream and the samples say about tasks, workers and queues.

Celery events are thin: only task-sent and task-received carry the task name, only task-sent the
queue, and nothing says a worker died if it was SIGKILLed. The observer feeds two bounded tables,
tasks in flight by uuid (alertd.observe.tasks) and workers by hostname (alertd.observe.workers),
writes counters and distributions into the series store as events arrive, and answers gauges
from its tables when the rules engine asks. Event fields are read by alertd.observe.fields.

What it assembles comes from beside the tables: the waiting and latency gauges from
alertd.observe.waiting, the worker gauges and a lost worker's page from alertd.observe.worker_gauges,
queue samples from alertd.observe.queues, the API's snapshots from alertd.observe.snapshots, and
event rules' subscriptions live in alertd.observe.watchers.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from alertd.clock import Clock
from alertd.observe.clocks import Clocks
from alertd.observe.fields import FAR, exception_class, number, trim_traceback
from alertd.observe.orphans import orphan_tasks
from alertd.observe.queues import QueueTable
from alertd.observe.reorder import SENT_GRACE, apply_ready
from alertd.observe.series import DistributionView, Labels, SeriesStore
from alertd.observe.snapshots import tasks_snapshot, workers_snapshot
from alertd.observe.tasks import COUNTERS, FINAL_STATES, HELD, TASK_STATES, Task, TaskTable
from alertd.observe.waiting import Gauges, queue_latency, task_gauges
from alertd.observe.watchers import Watcher, Watchers, enrich
from alertd.observe.worker_gauges import gone_server, loss_details, worker_gauges
from alertd.observe.workers import LOST_FORGET_AFTER, OFFLINE_FORGET_AFTER, SAMPLE_STALE_AFTER, Worker, WorkerTable
from alertd.samples import BrokerSample, QueueSample, WorkerSample
from alertd.sources.health import StreamHealth

__all__ = [
    "COUNTERS",
    "FINAL_STATES",
    "LOST_FORGET_AFTER",
    "OFFLINE_FORGET_AFTER",
    "SAMPLE_STALE_AFTER",
    "Observer",
    "Task",
    "Worker",
    "exception_class",
    "trim_traceback",
]

log = logging.getLogger(__name__)

RESTART_GRACE = 120.0  # a worker that said goodbye and is back within this was restarted, not shut down
RECENT_STARTS = 60.0  # the latency gauge also counts the waits of tasks started this recently
MAX_CLOCK_SKEW = 2.0  # senders' clocks further apart than this are corrected for, and shown
GAUGES = (
    "queue_length",
    "queue_consumers",
    "queue_stranded_messages",
    "queue_not_draining_seconds",
    "queue_waiting_oldest_seconds",
    "queue_waiting_p95_seconds",
    "queue_latency_p95_seconds",
    "worker_up",
    "worker_lost",
    "worker_offline",
    "worker_active_tasks",
    "worker_loadavg",
    "worker_pool_size",
    "worker_saturation_ratio",
    "worker_memory_bytes",
    "worker_memory_growth_bytes_per_hour",
    "worker_cpu_ratio",
    "task_oldest_started_seconds",
    "task_oldest_reserved_seconds",
    "task_waiting_oldest_seconds",
    "task_waiting_p95_seconds",
    "task_last_succeeded_seconds",
)
STATS = (  # the counts of stats(), beside the table sizes
    "events",
    "malformed",
    "duplicates",
    "tasks_evicted",
    "tasks_orphaned",
    "tasks_redelivered",
    "workers_evicted",
    "workers_lost",
    "task_names_evicted",
    "orphans_evicted",
    "queues_evicted",
    "unknown_types",
)
_MALFORMED = (KeyError, TypeError, ValueError, AttributeError, OverflowError)


class Observer:
    """Bounded task and worker tables fed by events and samples; gauges on demand."""

    _started_waits: DistributionView[tuple[str]] | None = None  # made on first use, for its store

    def __init__(
        self,
        series: SeriesStore,
        clock: Clock,
        *,
        max_tasks: int = 100_000,
        max_workers: int = 1_000,
        worker_lost_after: float = 10.0,
        heartbeat_misses: float = 2.5,
        restart_grace: float = RESTART_GRACE,
        recent_starts: float = RECENT_STARTS,
        max_clock_skew: float = MAX_CLOCK_SKEW,
        health: StreamHealth | None = None,
        max_task_names: int = 10_000,
        max_orphans: int = 10_000,
        sent_grace: float = SENT_GRACE,
        max_senders: int = 10_000,
        max_queues: int = 1_000,
    ) -> None:
        self.clock = clock
        self.health = health
        self.recent_starts = recent_starts
        self.started_at = clock.now()
        self._stats = dict.fromkeys(STATS, 0)
        self._clocks = Clocks(max_senders)  # each sender's clock offset from ours (alertd.observe.clocks)
        self._workers = WorkerTable(
            clock,
            self._stats,
            orphan=self._orphan,
            max_workers=max_workers,
            worker_lost_after=worker_lost_after,
            heartbeat_misses=heartbeat_misses,
            restart_grace=restart_grace,
            health=health,
            clocks=self._clocks,
            max_clock_skew=max_clock_skew,
        )
        self._tasks = TaskTable(
            series,
            self._stats,
            max_tasks=max_tasks,
            touch_worker=self._workers.touch_from_task,
            clocks=self._clocks,
            max_clock_skew=max_clock_skew,
            max_task_names=max_task_names,
            max_orphans=max_orphans,
            sent_grace=sent_grace,
        )
        self._tasks.on_redelivered = self._workers.redelivered
        self._queues = QueueTable(self._stats, max_queues)
        self.queues = self._queues.queues  # the same dict: the table changes it in place
        self.broker: BrokerSample | None = None
        self.expected: set[str] = set()
        self._watchers = Watchers()

    @property
    def series(self) -> SeriesStore:
        return self._tasks.series

    @series.setter
    def series(self, store: SeriesStore) -> None:
        self._tasks.series = store

    def _orphan(self, worker: str, now: float, keep_pid: int | None) -> list[tuple[Task, str]]:
        if self._tasks.reorder.held:
            self._tasks.reorder.release_worker(worker)
            self._apply_held()
        return orphan_tasks(self._tasks, worker, now, keep_pid)

    # -- events ----------------------------------------------------------------------------

    def on_events(self, events: Iterable[Any]) -> None:
        """The hot path: one batch from a source. Never raises; bad events are counted and skipped."""
        stats = self._stats
        on_task = self._tasks.on_event
        on_worker = self._workers.on_event
        watchers, watch_all = self._watchers.by_type, self._watchers.all  # changed in place only
        reorder = self._tasks.reorder
        now = None
        for event in events:
            stats["events"] += 1
            try:
                # One call per event into its table: the dispatch is inlined here.
                kind = event["type"]
                if not isinstance(kind, str):
                    raise TypeError("event type is not a string")
                now = event.get("local_received")
                # The fast path is a finite float (the chained comparison also rejects nan); anything else is checked.
                if type(now) is not float or not -FAR < now < FAR:
                    now = number(event, "local_received")
                    if now is None:
                        now = self.clock.now()
                task: Task | None = None
                state = TASK_STATES.get(kind)  # one lookup instead of slicing a new string per event
                if state is not None:
                    task = on_task(state, event, now)
                elif kind.startswith("task-"):
                    task = on_task(kind[5:], event, now)  # a custom task event (send_event)
                elif kind.startswith("worker-"):
                    on_worker(kind[7:], event, now)
                else:
                    stats["unknown_types"] += 1
                    continue
                if task is HELD:  # waits for its task-sent (alertd.observe.reorder)
                    if reorder.ready:
                        self._apply_held()
                    continue
                if watch_all or kind in watchers:
                    self._notify_watchers(kind, event, task)
            except _MALFORMED as e:
                self._malformed(e)
        if reorder.held and now is not None:
            self.release_held(now)

    def _malformed(self, e: Exception) -> None:
        stats = self._stats
        stats["malformed"] += 1
        if stats["malformed"] <= 10 or stats["malformed"] % 1000 == 0:
            log.warning("malformed event skipped (%d so far): %s", stats["malformed"], e)

    def release_held(self, now: float) -> None:
        """Apply the held events whose task-sent did not come within the grace by `now`."""
        self._tasks.reorder.due(now)
        self._apply_held()

    def _apply_held(self) -> None:
        apply_ready(self._tasks.reorder, self._tasks.on_event, self._notify_watchers, self._malformed, _MALFORMED)

    # -- watchers (event rules) ------------------------------------------------------------

    def watch(self, callback: Watcher, types: frozenset[str] | None = None) -> Callable[[], None]:
        """Call `callback` with each enriched event of `types` (all when None); returns unsubscribe."""
        return self._watchers.watch(callback, types)

    def _notify_watchers(self, kind: str, event: dict[str, Any], task: Task | None) -> None:
        if not (self._watchers.all or kind in self._watchers.by_type) or (task is None and kind.startswith("task-")):
            return  # no rule asks, or a duplicate final event: already reported
        self._watchers.notify(kind, enrich(event, task, self._tasks.tasks))

    # -- samples ---------------------------------------------------------------------------

    def on_queue_sample(self, s: QueueSample) -> None:
        """Latest length and consumers of a queue; notes since when it has not got shorter."""
        self._queues.on_sample(s)

    def on_worker_sample(self, s: WorkerSample) -> None:
        """Pool size, memory and CPU (a ratio from the delta between two samples) of a worker."""
        self._workers.on_sample(s)

    def on_broker_sample(self, s: BrokerSample) -> None:
        """Whether the last sampling pass reached the broker (broker_up)."""
        self.broker = s

    def orphaned(self, uuid: str) -> bool:
        """Whether the task was taken from a worker lost, shut down or restarted mid-run (periodic checks)."""
        return uuid in self._tasks.orphans

    def expect_task(self, name: str) -> None:
        """Report task_last_succeeded_seconds for `name` even before it is first seen (dead man's switch)."""
        self.expected.add(name)

    # -- gauges ----------------------------------------------------------------------------

    def gauges(self, now: float) -> Gauges:
        """Every gauge of the catalogue, keyed by metric name; label tuples in catalogue order."""
        if self._tasks.reorder.held:
            self.release_held(now)
        self._workers.sweep(now)
        g: Gauges = {name: {} for name in GAUGES}
        self._queues.gauges(g, now)
        g["workers_online"] = {(): float(worker_gauges(self._workers, g, now))}
        waiting = task_gauges(self._tasks.tasks, g, now, self._queues.emptied)
        self._latency(g["queue_latency_p95_seconds"], waiting, now)
        last_success = self._tasks.last_success
        for name in self.expected | set(last_success):
            g["task_last_succeeded_seconds"][(name,)] = now - last_success.get(name, self.started_at)
        last_event = self.health.last_event_at if self.health else None
        g["events_silence_seconds"] = {(): now - (last_event if last_event is not None else self.started_at)}
        g["event_stream_up"] = {(): float(self.health.connected)} if self.health else {}
        g["broker_up"] = {(): float(self.broker.ok)} if self.broker else {}
        return g

    def _latency(self, out: dict[Labels, float], waiting: dict[str, list[float]], now: float) -> None:
        # The wait of a queue's tasks now: those still waiting (so it rises during an outage, when
        # nothing starts) together with those started in the last minute (so it also holds when
        # task-sent events are off, and falls soon after the backlog has drained).
        # A view by queue: the store merges the minute's waits per queue, and each evaluation
        # adds the buckets that closed and drops those that left (per series, then merged here,
        # this was most of a tick at 1,000 task names x 50 workers). Read-only: merged after.
        view = self._started_waits
        if view is None or view.store is not self.series:
            view = self._started_waits = self.series.distribution_view(
                "task_queue_wait_seconds", self.recent_starts, _queue_of
            )
        queue_latency(out, waiting, {queue: d for (queue,), d in view.read(now).items() if d.count})

    def details(self, metric: str, labels: Mapping[str, str]) -> dict[str, Any]:
        """What a page about `metric` may say beyond its labels (rules read it as `details`)."""
        if metric in ("worker_lost", "worker_offline", "worker_up"):
            return loss_details(self._workers, labels.get("worker", ""))
        if metric == "queue_stranded_messages":
            return {"gone_worker": gone_server(self._workers, labels.get("queue", ""), self.clock.now())}
        return {}

    # -- views and state -------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Counts for /metrics and the API: events, malformed, duplicates, table sizes, evictions and losses."""
        return {
            **self._stats,
            "tasks_tracked": len(self._tasks.tasks),
            "tasks_held": len(self._tasks.reorder.held),
            "tasks_reordered": self._tasks.reorder.reordered,
            "workers_tracked": len(self._workers.workers),
            "senders_evicted": self._clocks.evicted,
        }

    def workers_snapshot(self) -> list[dict[str, Any]]:
        """Every worker in the table with its state (online, lost, offline) and last loss, by hostname."""
        self._workers.sweep(self.clock.now())
        return workers_snapshot(self._workers)

    def tasks_snapshot(self, limit: int = 100) -> list[dict[str, Any]]:
        """Up to `limit` tasks in flight, most recently active first."""
        return tasks_snapshot(self._tasks, self.clock.now(), limit)

    def in_flight(self) -> Counter[tuple[str, str]]:
        """Tasks in the table (sent, received or started, not finished) per (task name, queue)."""
        return Counter((t.name, t.queue) for t in self._tasks.tasks.values())

    def export_state(self) -> dict[str, Any]:
        """What a restart must not forget: last successes (dead man's switches) and known workers."""
        return {"last_success": dict(self._tasks.last_success), "workers": self._workers.export_state()}

    def import_state(self, state: dict[str, Any]) -> None:
        """Restore export_state()'s output; entries that do not parse are skipped, never fatal."""
        last_success = state.get("last_success") if isinstance(state, dict) else None
        if isinstance(last_success, dict):
            known = self._tasks.last_success
            for name, at in last_success.items():
                if isinstance(at, int | float) and not isinstance(at, bool) and math.isfinite(at):
                    self._tasks.note_success(str(name), max(float(at), known.get(str(name), -math.inf)))
        workers = state.get("workers") if isinstance(state, dict) else None
        if isinstance(workers, dict):
            self._workers.import_state(workers, log)


def _queue_of(labels: Labels) -> tuple[str] | None:
    """The queue of a (task, queue, worker) series; None for waits of tasks whose queue is unknown."""
    return (labels[1],) if labels[1] else None
