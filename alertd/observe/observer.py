"""The observer: what the event stream and the samples say about tasks, workers and queues.

Celery events are thin: only task-sent and task-received carry the task name, only task-sent the
queue, and nothing says a worker died if it was SIGKILLed. The observer keeps two bounded tables
(tasks in flight, by uuid; workers, by hostname) to join the rest of a task's events to its name
and queue, and to notice silence. It writes counters and distributions into the series store as
events arrive and answers gauges from its tables when the rules engine asks.
"""

from __future__ import annotations

import logging
import math
import re
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from datetime import datetime
from itertools import islice
from typing import Any

from alertd.clock import Clock
from alertd.observe.series import Labels, SeriesStore
from alertd.samples import BrokerSample, QueueSample, WorkerSample
from alertd.sources.health import StreamHealth

log = logging.getLogger(__name__)

Watcher = Callable[[dict[str, Any]], None]
Gauges = dict[str, dict[Labels, float]]

FINAL_STATES = frozenset({"succeeded", "failed", "revoked", "rejected"})
OFFLINE_FORGET_AFTER = 600.0  # a worker that said goodbye is listed this long (for "worker shut down")
LOST_FORGET_AFTER = 3600.0  # a lost worker keeps its alert this long, then is forgotten (autoscaled pods)
SAMPLE_STALE_AFTER = 300.0  # a queue or worker sample older than this is no longer reported
MEMORY_HISTORY = 3600.0  # memory growth is measured over this much sample history
MEMORY_HISTORY_MIN = 600.0  # and not before this much exists (one restart's warm-up is not a leak)
TRACEBACK_LINES = 20
COUNTERS = {
    s: f"tasks_{s}" for s in ("sent", "received", "started", "succeeded", "failed", "retried", "rejected", "revoked")
}
_FAR = 1e15  # seconds: beyond any real timestamp, and below the floats that are not finite
_TASK_STATES = {f"task-{s}": s for s in COUNTERS}
FINISHED_REMEMBERED = 10_000  # finished tasks kept by uuid: duplicate endings dropped, late events labelled
MAX_TASK_NAMES = 10_000  # last-success times kept (dead man's switches), one per task name

_EXC_NAME = re.compile(r"^\s*([A-Za-z_][\w.]*)")


# billiard wraps exceptions raised outside the task (hard time limits, lost workers) in this; the
# real class is then only in the traceback's last line.
_WRAPPERS = frozenset({"", "ExceptionWithTraceback", "ExceptionInfo"})


def exception_class(text: Any, traceback: Any = None) -> str:
    """'ValueError('x')' -> 'ValueError'; 'celery.exceptions.TimeLimitExceeded(1,)' -> 'TimeLimitExceeded'."""
    m = _EXC_NAME.match(text) if isinstance(text, str) else None
    name = m.group(1).rsplit(".", 1)[-1] if m else ""
    if name in _WRAPPERS and isinstance(traceback, str):
        lines = [ln for ln in traceback.strip().splitlines() if ln and not ln[0].isspace()]
        if lines and not lines[-1].startswith("Traceback"):
            head = lines[-1].split(":", 1)[0].strip()
            if _EXC_NAME.fullmatch(head):
                return head.rsplit(".", 1)[-1]
    return name


def trim_traceback(tb: Any, lines: int = TRACEBACK_LINES) -> str:
    """The last lines of a traceback: where it failed matters, the framework frames above do not."""
    if not isinstance(tb, str):
        return ""
    parts = tb.rstrip().splitlines()
    if len(parts) <= lines:
        return "\n".join(parts)
    return "\n".join(["...", *parts[-lines:]])


def _eta_seconds(value: Any) -> float | None:
    """Celery sends eta as an ISO 8601 string (or None); epoch seconds are accepted too."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return None
    raise TypeError(f"eta is {type(value).__name__}, not an ISO 8601 string")


def _number(e: dict[str, Any], field: str) -> float | None:
    """A numeric field or None when absent; a wrong type makes the whole event malformed."""
    value = e.get(field)
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise TypeError(f"{field} is {value!r}, not a number")


def _count(e: dict[str, Any], field: str) -> int | None:
    """A non-negative integer field or None when absent; a wrong type makes the event malformed."""
    value = e.get(field)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise TypeError(f"{field} is {value!r}, not a count")


def _text(e: dict[str, Any], field: str) -> str:
    """A string field, "" when absent; a wrong type makes the whole event malformed."""
    value = e.get(field)
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    raise TypeError(f"{field} is {type(value).__name__}, not a string")


class Task:
    """One task in flight. Slots: a full table holds 100k of these."""

    __slots__ = (
        "entered",
        "eta",
        "name",
        "queue",
        "received",
        "retried",
        "retries",
        "sent",
        "started",
        "state",
        "worker",
    )

    def __init__(self) -> None:
        self.name = ""
        self.queue = ""
        self.worker = ""
        self.state = "pending"
        # Event timestamps, each on its sender's clock (producer or worker): Celery's own timings.
        self.sent: float | None = None
        self.received: float | None = None
        self.started: float | None = None
        self.eta: float | None = None
        # Our receive time of the event that put the task in its state: ages of stuck tasks are
        # measured on our clock, so a worker's skewed clock (or a replayed capture) cannot fake them.
        self.entered = 0.0
        self.retries = 0  # the run in flight: the `retries` field of its task-sent / task-received
        self.retried = 0  # task-retried events seen


class Worker:
    """One worker by hostname: what its heartbeats and the sampler said last."""

    __slots__ = (
        "active",
        "cpu_at",
        "cpu_ratio",
        "cpu_seconds",
        "first_seen",
        "freq",
        "hostname",
        "last_heartbeat",
        "loadavg",
        "memory_bytes",
        "memory_history",
        "offline_at",
        "pid",
        "pool_size",
        "processed",
        "queues",
        "sample_at",
        "sw_ident",
        "sw_ver",
    )

    def __init__(self, hostname: str, now: float) -> None:
        self.hostname = hostname
        self.first_seen = now
        self.last_heartbeat = now  # local receive time: immune to the worker's clock skew
        self.freq = 2.0
        self.active = 0
        self.processed = 0
        self.loadavg = 0.0
        self.sw_ident = ""
        self.sw_ver = ""
        self.pid = 0
        self.offline_at: float | None = None
        self.pool_size: int | None = None
        self.memory_bytes: int | None = None
        self.memory_history: deque[tuple[float, int]] = deque(maxlen=1024)
        self.cpu_seconds: float | None = None
        self.cpu_at: float | None = None
        self.cpu_ratio: float | None = None
        self.sample_at: float | None = None
        self.queues: tuple[str, ...] = ()


class Observer:
    """Bounded task and worker tables fed by events and samples; gauges on demand."""

    def __init__(
        self,
        series: SeriesStore,
        clock: Clock,
        *,
        max_tasks: int = 100_000,
        max_workers: int = 1_000,
        worker_lost_after: float = 10.0,
        heartbeat_misses: float = 2.5,
        health: StreamHealth | None = None,
    ) -> None:
        self.series = series
        self.clock = clock
        self.max_tasks = max_tasks
        self.max_workers = max_workers
        self.worker_lost_after = worker_lost_after
        self.heartbeat_misses = heartbeat_misses
        self.health = health
        self.started_at = clock.now()
        # In flight, least recently heard of first: a full table forgets the task idle longest.
        self.tasks: OrderedDict[str, Task] = OrderedDict()
        self.workers: dict[str, Worker] = {}
        self.queues: dict[str, QueueSample] = {}
        self._growing_since: dict[str, float] = {}  # queue -> since when it has not got shorter
        self.broker: BrokerSample | None = None
        self.last_success: dict[str, float] = {}
        self.expected: set[str] = set()
        self._watchers: dict[str, list[Watcher]] = {}
        self._watch_all: list[Watcher] = []
        # Recently finished uuids, oldest first: an OrderedDict pops its oldest in O(1), where a
        # dict used as a queue slows down as deleted slots pile up at its front.
        # uuid -> the finished task (kept whole: no allocation per task): late events still get its labels.
        self._finished: OrderedDict[str, Task] = OrderedDict()
        self._stats = {
            "events": 0,
            "malformed": 0,
            "duplicates": 0,
            "tasks_evicted": 0,
            "workers_evicted": 0,
            "unknown_types": 0,
        }

    # -- events ----------------------------------------------------------------------------

    def on_events(self, events: Iterable[Any]) -> None:
        """The hot path: one batch from a source. Never raises; bad events are counted and skipped."""
        stats = self._stats
        for event in events:
            stats["events"] += 1
            try:
                self._on_event(event)
            except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
                stats["malformed"] += 1
                if stats["malformed"] <= 10 or stats["malformed"] % 1000 == 0:
                    log.warning("malformed event skipped (%d so far): %s", stats["malformed"], e)

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if not isinstance(kind, str):
            raise TypeError("event type is not a string")
        now = event.get("local_received")
        # The fast path is a finite float (the chained comparison also rejects nan); anything else is checked.
        if type(now) is not float or not -_FAR < now < _FAR:
            now = _number(event, "local_received")
            if now is None:
                now = self.clock.now()
        task: Task | None = None
        state = _TASK_STATES.get(kind)  # one lookup instead of slicing a new string per event
        if state is not None:
            task = self._on_task_event(state, event, now)
        elif kind.startswith("task-"):
            task = self._on_task_event(kind[5:], event, now)  # a custom task event (send_event)
        elif kind.startswith("worker-"):
            self._on_worker_event(kind[7:], event, now)
        else:
            self._stats["unknown_types"] += 1
            return
        if self._watch_all or kind in self._watchers:
            self._notify_watchers(kind, event, task)

    def _on_task_event(self, state: str, e: dict[str, Any], now: float) -> Task | None:
        # Every field is checked before anything changes: a malformed event leaves no trace.
        uuid = e["uuid"]
        if not isinstance(uuid, str) or not uuid:
            raise TypeError("task uuid is not a string")
        ts = e.get("timestamp")
        if type(ts) is not float or not -_FAR < ts < _FAR:
            ts = _number(e, "timestamp")
            if ts is None:
                ts = now
        name = e.get("name")
        if name is not None and type(name) is not str:
            raise TypeError("name is not a string")
        hostname = e.get("hostname")
        if hostname is not None and type(hostname) is not str:
            raise TypeError("hostname is not a string")
        runtime = eta = None
        queue = exception = ""
        retries = 0
        if state == "succeeded":
            runtime = _number(e, "runtime")
        elif state == "failed" or state == "retried":
            exception = exception_class(e.get("exception"), e.get("traceback"))
        elif state == "sent" or state == "received":
            eta = _eta_seconds(e.get("eta"))
            if state == "sent":
                queue = _text(e, "queue") or _text(e, "routing_key")
            r = e.get("retries")
            if r is not None:
                if not isinstance(r, int) or isinstance(r, bool):
                    raise TypeError(f"retries is {r!r}, not an integer")
                retries = r
        tasks = self.tasks
        task = tasks.get(uuid)
        final = state in FINAL_STATES
        if task is None:
            if final and uuid in self._finished:
                # Celery reports some endings twice (a hard time limit: once from the pool, once
                # from the request); counting both would double the failure rate.
                self._stats["duplicates"] += 1
                return None
            task = Task()
            gone = self._finished.get(uuid) if state == "sent" or state == "retried" else None
            if gone is not None:
                # The task finished already: a task-sent from a slow producer, or a retry reported
                # after the retried run had already succeeded. Counted under its labels, not kept.
                task.name, task.queue = gone.name, gone.queue
            elif not final:  # a final event of a task never seen (alertd restarted) is counted, not kept
                tasks[uuid] = task
                if len(tasks) > self.max_tasks:
                    tasks.popitem(last=False)
                    self._stats["tasks_evicted"] += 1
        elif not final:
            tasks.move_to_end(uuid)  # least recently heard of goes first when the table is full
        if name:
            task.name = name
        late = False
        if state == "sent":
            # The producer publishes task-sent on its own connection, so it may reach us after the
            # worker's task-received (or even task-started) for the same run: then it only fills in
            # the queue and the sent time and must not send the task back to waiting.
            late = task.state in ("received", "started") and retries <= task.retries
            task.queue = queue or task.queue
            task.sent = ts
            if not late:
                task.state = state
                task.eta = eta
                task.retries = retries
                task.worker = ""  # not received by any worker yet (a retry may go to another one)
            elif task.eta is None:
                task.eta = eta
            labels = (task.name, task.queue, "")  # the sender is a producer, not a worker
        else:
            if hostname and hostname != task.worker:
                # task-sent's hostname is the producer's; every later event comes from the worker.
                task.worker = hostname
                self._touch_worker(hostname, now)
            if state == "retried":
                # The retry's new message can overtake the parent's task-retried: run n+1 may be
                # received (even finished) before run n's retry is reported. An earlier run's retry
                # is counted and changes nothing else.
                task.retried += 1
                late = task.retried <= task.retries
            if not late:
                task.state = state
            labels = (task.name, task.queue, task.worker)
        series = self.series
        counter = COUNTERS.get(state)
        if counter is not None:
            if state == "failed" or state == "retried":
                series.count(counter, (*labels, exception), now)
            else:
                series.count(counter, labels, now)
        if state == "received":
            task.received = ts
            task.entered = now
            if retries > task.retries:
                task.retries = retries
            if eta is not None:
                task.eta = eta
        elif state == "started":
            task.started = ts
            task.entered = now
            # Queue wait starts when the task could first have run: sent, or its ETA if later.
            base = task.sent if task.sent is not None else task.received
            if base is not None:
                if task.eta is not None and task.eta > base:
                    base = task.eta
                series.observe("task_queue_wait_seconds", labels, max(0.0, ts - base), now)
        elif state == "succeeded":
            if runtime is not None:
                series.observe("task_runtime_seconds", labels, runtime, now)
            if task.name:
                self._succeeded(task.name, now)
        elif state == "failed":
            if task.started is not None:
                series.observe("task_runtime_seconds", labels, max(0.0, ts - task.started), now)
        elif state == "retried" and not late:
            # Back to waiting: the retry is published again (task-sent) and received anew.
            task.retries = task.retried
            task.started = None
            task.received = None
        if final:
            tasks.pop(uuid, None)
            finished = self._finished
            finished[uuid] = task
            if len(finished) > FINISHED_REMEMBERED:
                finished.popitem(last=False)
        return task

    def _succeeded(self, name: str, now: float) -> None:
        last = self.last_success
        if name not in last and len(last) >= MAX_TASK_NAMES:
            # Names come from producers; a bug that mints one per call must not grow us forever.
            del last[min(last, key=last.__getitem__)]
        last[name] = now

    def _touch_worker(self, hostname: str, now: float) -> Worker:
        w = self.workers.get(hostname)
        if w is None:
            w = self.workers[hostname] = Worker(hostname, now)
            if len(self.workers) > self.max_workers:
                self._evict_worker()
        return w

    def _evict_worker(self) -> None:
        # Prefer forgetting a worker that is gone over one that is alive.
        now = self.clock.now()
        gone = [w for w in self.workers.values() if self._worker_state(w, now) != "online"]
        victim = min(gone or self.workers.values(), key=lambda w: w.last_heartbeat)
        del self.workers[victim.hostname]
        self._stats["workers_evicted"] += 1

    def _on_worker_event(self, kind: str, e: dict[str, Any], now: float) -> None:
        hostname = e["hostname"]
        if not isinstance(hostname, str) or not hostname:
            raise TypeError("worker hostname is not a string")
        # Checked before anything changes, as for task events.
        freq = _number(e, "freq")
        active = _count(e, "active")
        processed = _count(e, "processed")
        pid = _count(e, "pid")
        load = e.get("loadavg")
        if load is not None and not (
            isinstance(load, list | tuple)
            and all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in load)
        ):
            raise TypeError(f"loadavg is {load!r}, not a list of numbers")
        sw_ident = _text(e, "sw_ident")
        sw_ver = _text(e, "sw_ver")

        w = self._touch_worker(hostname, now)
        if kind == "offline":
            w.offline_at = now
            return
        w.offline_at = None
        w.last_heartbeat = now  # our receive time: a worker's skewed clock cannot make it look dead or alive
        if freq is not None and freq > 0:
            w.freq = freq
        if active is not None:
            w.active = active
        if processed is not None:
            w.processed = processed
        if load:
            w.loadavg = float(load[0])
        w.sw_ident = sw_ident or w.sw_ident
        w.sw_ver = sw_ver or w.sw_ver
        if pid is not None:
            w.pid = pid

    # -- watchers (event rules) ------------------------------------------------------------

    def watch(self, callback: Watcher, types: frozenset[str] | None = None) -> Callable[[], None]:
        """Call `callback` with each enriched event of `types` (all when None); returns unsubscribe."""
        if types is None:
            self._watch_all.append(callback)
        else:
            for t in types:
                self._watchers.setdefault(t, []).append(callback)

        def unsubscribe() -> None:
            if types is None:
                if callback in self._watch_all:
                    self._watch_all.remove(callback)
            else:
                for t in types:
                    cbs = self._watchers.get(t, [])
                    if callback in cbs:
                        cbs.remove(callback)
                    if not cbs:
                        self._watchers.pop(t, None)

        return unsubscribe

    def _notify_watchers(self, kind: str, event: dict[str, Any], task: Task | None) -> None:
        if task is None and kind.startswith("task-"):
            return  # a duplicate final event: already reported
        enriched = self.enrich(event, task)
        for cb in (*self._watchers.get(kind, ()), *self._watch_all):
            try:
                cb(enriched)
            except Exception:  # a broken rule must not stop ingestion
                log.exception("event watcher failed")

    def enrich(self, event: dict[str, Any], task: Task | None = None) -> dict[str, Any]:
        """The event plus task name, queue, worker and exception class joined from the task table."""
        out = dict(event)
        uuid = event.get("uuid")
        if task is None and isinstance(uuid, str):
            task = self.tasks.get(uuid)
        out["task"] = event.get("name") or (task.name if task else "")
        out["queue"] = event.get("queue") or (task.queue if task else "")
        out["worker"] = event.get("hostname") or (task.worker if task else "")
        if "exception" in event:
            out["exception_repr"] = event.get("exception") or ""
            out["exception"] = exception_class(event.get("exception"), event.get("traceback"))
        if "traceback" in event:
            out["traceback"] = trim_traceback(event.get("traceback"))
        return out

    # -- samples ---------------------------------------------------------------------------

    def on_queue_sample(self, s: QueueSample) -> None:
        """Latest length and consumers of a queue; notes since when it has not got shorter."""
        prev = self.queues.get(s.queue)
        if s.messages == 0 or prev is None or s.messages < prev.messages:
            self._growing_since[s.queue] = s.at
        self.queues[s.queue] = s

    def on_worker_sample(self, s: WorkerSample) -> None:
        """Pool size, memory and CPU (a ratio from the delta between two samples) of a worker."""
        w = self.workers.get(s.worker)
        if w is None:
            # Seen by inspect before any heartbeat reached us: listed, but not "online" until it beats.
            w = self._touch_worker(s.worker, s.at)
            w.last_heartbeat = -math.inf
        if s.pool_size is not None:
            w.pool_size = s.pool_size
        if s.memory_bytes is not None:
            w.memory_bytes = s.memory_bytes
            history = w.memory_history
            history.append((s.at, s.memory_bytes))
            while history and s.at - history[0][0] > MEMORY_HISTORY:
                history.popleft()
        if s.cpu_seconds is not None:
            if w.cpu_seconds is not None and w.cpu_at is not None and s.at > w.cpu_at:
                w.cpu_ratio = max(0.0, (s.cpu_seconds - w.cpu_seconds) / (s.at - w.cpu_at))
            w.cpu_seconds, w.cpu_at = s.cpu_seconds, s.at
        if s.queues:
            w.queues = s.queues
        w.sample_at = s.at

    def on_broker_sample(self, s: BrokerSample) -> None:
        """Whether the last sampling pass reached the broker (broker_up)."""
        self.broker = s

    def expect_task(self, name: str) -> None:
        """Report task_last_succeeded_seconds for `name` even before it is first seen (dead man's switch)."""
        self.expected.add(name)

    # -- gauges ----------------------------------------------------------------------------

    def _worker_state(self, w: Worker, now: float) -> str:
        if w.offline_at is not None:
            return "offline"
        if now - w.last_heartbeat > max(self.worker_lost_after, w.freq * self.heartbeat_misses):
            return "lost"
        return "online"

    def _forget_gone_workers(self, now: float) -> None:
        for w in list(self.workers.values()):
            seen = w.last_heartbeat if w.last_heartbeat != -math.inf else (w.sample_at or now)
            if w.offline_at is not None:
                if now - w.offline_at > OFFLINE_FORGET_AFTER:
                    del self.workers[w.hostname]
            elif now - seen > LOST_FORGET_AFTER:
                del self.workers[w.hostname]

    def gauges(self, now: float) -> Gauges:
        """Every gauge of the catalogue, keyed by metric name; label tuples in catalogue order."""
        self._forget_gone_workers(now)
        g: Gauges = {
            name: {}
            for name in (
                "queue_length",
                "queue_consumers",
                "queue_stranded_messages",
                "queue_not_draining_seconds",
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
                "task_last_succeeded_seconds",
            )
        }
        for q, s in list(self.queues.items()):
            if now - s.at > SAMPLE_STALE_AFTER:
                # No longer sampled (deleted, or no worker lists it): report nothing rather than a stale length.
                del self.queues[q]
                self._growing_since.pop(q, None)
                continue
            g["queue_length"][(q,)] = float(s.messages)
            if s.consumers is not None:
                g["queue_consumers"][(q,)] = float(s.consumers)
                g["queue_stranded_messages"][(q,)] = float(s.messages) if s.consumers == 0 else 0.0
            since = self._growing_since.get(q, s.at)
            g["queue_not_draining_seconds"][(q,)] = s.at - since if s.messages > 0 else 0.0
        online = 0
        for w in self.workers.values():
            key = (w.hostname,)
            state = self._worker_state(w, now)
            if w.last_heartbeat == -math.inf and state != "offline":
                continue  # known only from inspect; no heartbeat seen yet
            up = state == "online"
            online += up
            g["worker_up"][key] = float(up)
            g["worker_lost"][key] = float(state == "lost")
            g["worker_offline"][key] = float(state == "offline")
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
        g["workers_online"] = {(): float(online)}
        self._oldest(g, now)
        for name in self.expected | set(self.last_success):
            g["task_last_succeeded_seconds"][(name,)] = now - self.last_success.get(name, self.started_at)
        last_event = self.health.last_event_at if self.health else None
        g["events_silence_seconds"] = {(): now - (last_event if last_event is not None else self.started_at)}
        g["event_stream_up"] = {(): float(self.health.connected)} if self.health else {}
        g["broker_up"] = {(): float(self.broker.ok)} if self.broker else {}
        return g

    def _oldest(self, g: Gauges, now: float) -> None:
        # One pass over the table (about 20 ms for 100k tasks in flight), once per evaluation. The
        # order does not matter here, and dict's own iteration is twice as fast as OrderedDict's
        # (which walks its linked list and looks each key up again).
        started = g["task_oldest_started_seconds"]
        reserved = g["task_oldest_reserved_seconds"]
        for t in dict.values(self.tasks):
            state = t.state
            if state == "started":
                target = started
                since = t.entered
            elif state == "received":
                target = reserved
                since = t.entered
                if t.eta is not None and t.eta > since:
                    if t.eta > now:
                        continue  # an ETA/countdown task waiting for its time is not stuck
                    since = t.eta
            else:
                continue
            key = (t.name, t.queue)
            age = now - since
            if age > target.get(key, -1.0):
                target[key] = age if age > 0.0 else 0.0

    # -- views and state -------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Counts for /metrics and the API: events, malformed, duplicates, table sizes and evictions."""
        return {**self._stats, "tasks_tracked": len(self.tasks), "workers_tracked": len(self.workers)}

    def workers_snapshot(self) -> list[dict[str, Any]]:
        """Every worker in the table with its state (online, lost, offline), sorted by hostname."""
        now = self.clock.now()
        out = []
        for w in sorted(self.workers.values(), key=lambda w: w.hostname):
            out.append(
                {
                    "hostname": w.hostname,
                    "state": self._worker_state(w, now),
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
                    "queues": list(w.queues),
                }
            )
        return out

    def tasks_snapshot(self, limit: int = 100) -> list[dict[str, Any]]:
        """Up to `limit` tasks in flight, most recently active first."""
        now = self.clock.now()
        out = []
        for uuid, t in islice(reversed(self.tasks.items()), max(0, limit)):
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
                    "age": max(0.0, now - t.entered) if t.state in ("received", "started") else None,
                }
            )
        return out

    def export_state(self) -> dict[str, Any]:
        """What a restart must not forget: last successes (dead man's switches) and known workers."""
        return {
            "last_success": dict(self.last_success),
            "workers": {
                w.hostname: {"last_heartbeat": w.last_heartbeat, "freq": w.freq, "offline_at": w.offline_at}
                for w in self.workers.values()
                if w.last_heartbeat != -math.inf
            },
        }

    def import_state(self, state: dict[str, Any]) -> None:
        """Restore export_state()'s output; entries that do not parse are skipped, never fatal."""
        last_success = state.get("last_success") if isinstance(state, dict) else None
        if isinstance(last_success, dict):
            for name, at in last_success.items():
                if isinstance(at, int | float) and not isinstance(at, bool) and math.isfinite(at):
                    self._succeeded(str(name), max(float(at), self.last_success.get(str(name), -math.inf)))
        workers = state.get("workers") if isinstance(state, dict) else None
        if not isinstance(workers, dict):
            return
        for hostname, d in workers.items():
            if hostname in self.workers or not isinstance(d, dict):
                continue
            try:
                beat = _number(d, "last_heartbeat")
                freq = _number(d, "freq")
                offline_at = _number(d, "offline_at")
            except TypeError:
                log.warning("saved state of worker %r skipped: not understood", hostname)
                continue
            if beat is None:
                continue
            w = self._touch_worker(str(hostname), beat)
            w.freq = freq if freq and freq > 0 else w.freq
            w.offline_at = offline_at
