"""The task table: tasks in flight by uuid, joined to their name and queue, and what they say.

Only task-sent and task-received carry the task name, only task-sent the queue: the table joins
every later event of a task to them, counts each event into the series store under the joined
labels; the gauges of tasks in flight (running, reserved, waiting) are read from it in one pass
by alertd.observe.waiting, and the API's view of it by alertd.observe.snapshots.

A task leaves the table when it finishes, when the table is full (least recently heard of goes
first), or when its worker is lost, shuts down or restarts: then it is *orphaned*, kept aside
by uuid so that a redelivery (the same uuid received again) brings it back (alertd.observe.orphans).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from alertd.observe.clocks import CLOCK_WINDOW, Clocks, note
from alertd.observe.fields import FAR, eta_seconds, exception_class, number, text
from alertd.observe.orphans import rejoin
from alertd.observe.reorder import SENT_GRACE, Reorder
from alertd.observe.series import SeriesStore

FINAL_STATES = frozenset({"succeeded", "failed", "revoked", "rejected"})
COUNTERS = {
    s: f"tasks_{s}" for s in ("sent", "received", "started", "succeeded", "failed", "retried", "rejected", "revoked")
}
TASK_STATES = {f"task-{s}": s for s in COUNTERS}
FINISHED_REMEMBERED = 10_000  # finished tasks kept by uuid: duplicate endings dropped, late events labelled
ORPHANS_REMEMBERED = 10_000  # orphaned tasks kept by uuid: a redelivery rejoins the table with its labels
MAX_TASK_NAMES = 10_000  # last-success times kept (dead man's switches), one per task name


class Task:
    """One task in flight. Slots: a full table holds 100k of these."""

    __slots__ = (
        "entered",
        "eta",
        "eta_at",
        "name",
        "pid",
        "queue",
        "received",
        "retried",
        "retries",
        "sent",
        "sent_at",
        "sent_offset",
        "started",
        "state",
        "worker",
    )

    def __init__(self) -> None:
        self.name = ""
        self.queue = ""
        self.worker = ""
        self.pid = 0  # the worker process that received it: a restart under the same hostname orphans it
        self.state = "pending"
        # Event timestamps, each on its sender's clock (producer or worker): Celery's own timings.
        self.sent: float | None = None
        self.received: float | None = None
        self.started: float | None = None
        self.eta: float | None = None
        # Our receive time of the event that put the task in its state: ages of stuck tasks are
        # measured on our clock, so a worker's skewed clock (or a replayed capture) cannot fake them.
        self.entered = 0.0
        self.sent_at: float | None = None  # our receive time of task-sent: waiting counts from it
        self.sent_offset = 0.0  # the producer's clock offset when it sent it (alertd.observe.clocks)
        self.eta_at: float | None = None  # the ETA moved onto our clock by its sender's apparent offset
        self.retries = 0  # the run in flight: the `retries` field of its task-sent / task-received
        self.retried = 0  # task-retried events seen


HELD = Task()  # on_event's answer for an event held back (alertd.observe.reorder): apply `reorder.ready`


class TaskTable:
    """Tasks in flight by uuid, least recently heard of first; counts every task event it is fed."""

    def __init__(
        self,
        series: SeriesStore,
        stats: dict[str, int],
        *,
        max_tasks: int,
        touch_worker: Callable[[str, float], object],
        clocks: Clocks,
        max_clock_skew: float,
        max_task_names: int = MAX_TASK_NAMES,
        max_orphans: int = ORPHANS_REMEMBERED,
        sent_grace: float = SENT_GRACE,
    ) -> None:
        self.series = series
        self.max_tasks = max_tasks
        self.max_task_names = max_task_names
        self.max_orphans = max_orphans
        self.clocks = clocks
        self.max_clock_skew = max_clock_skew
        self.stats = stats
        self._touch_worker = touch_worker
        self.tasks: OrderedDict[str, Task] = OrderedDict()
        # Recently finished uuids, oldest first: an OrderedDict pops its oldest in O(1), where a
        # dict used as a queue slows down as deleted slots pile up at its front.
        # uuid -> the finished task (kept whole: no allocation per task): late events still get its labels.
        self._finished: OrderedDict[str, Task] = OrderedDict()
        self.orphans: OrderedDict[str, Task] = OrderedDict()
        # task name -> when it last succeeded, least recently first (re-inserted on each success)
        self.last_success: OrderedDict[str, float] = OrderedDict()
        # Called with the worker an orphaned task was lost with, when the task is received again.
        self.on_redelivered: Callable[[str], None] | None = None
        # Worker events that came before their task's task-sent (alertd.observe.reorder).
        self.reorder = Reorder(sent_grace, max_names=max_task_names)

    def on_event(self, state: str, e: dict[str, Any], now: float) -> Task | None:
        """One task event (state: "sent", "started", ...); the task, or None for a dropped duplicate."""
        # Every field is checked before anything changes: a malformed event leaves no trace.
        uuid = e["uuid"]
        if not isinstance(uuid, str) or not uuid:
            raise TypeError("task uuid is not a string")
        ts = e.get("timestamp")
        if type(ts) is not float or not -FAR < ts < FAR:
            ts = number(e, "timestamp")
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
        retries = pid = 0
        # The common field values are taken as they are; any other goes through its reader in
        # alertd.observe.fields, which converts it or rejects the event (the same as before).
        if state == "succeeded":
            runtime = e.get("runtime")
            if type(runtime) is not float or not -FAR < runtime < FAR:
                runtime = number(e, "runtime")
        elif state == "failed" or state == "retried":
            exception = exception_class(e.get("exception"), e.get("traceback"))
        elif state == "sent" or state == "received":
            eta = e.get("eta")
            if eta is not None:
                eta = eta_seconds(eta)
            if state == "sent":
                q = e.get("queue")
                queue = q if type(q) is str and q else text(e, "queue") or text(e, "routing_key")
            r = e.get("retries")
            if r is not None:
                if not isinstance(r, int) or isinstance(r, bool):
                    raise TypeError(f"retries is {r!r}, not an integer")
                retries = r
        if state == "received" or state == "started":
            p = e.get("pid")
            if p is not None:
                if type(p) is not int or p < 0:
                    raise TypeError(f"pid is {p!r}, not a process id")
                pid = p
        tasks = self.tasks
        task = tasks.get(uuid)
        reorder = self.reorder
        if reorder.held and uuid in reorder.held:
            reorder.more(uuid, (state, e, now))
            return HELD
        if (
            task is None
            and state == "received"
            and name
            and reorder.holds(name)
            and uuid not in self._finished
            and uuid not in self.orphans
        ):
            reorder.hold(uuid, name, hostname or "", (state, e, now))
            return HELD
        final = state in FINAL_STATES
        if task is None:
            if final and uuid in self._finished:
                # Celery reports some endings twice (a hard time limit: once from the pool, once
                # from the request); counting both would double the failure rate.
                self.stats["duplicates"] += 1
                return None
            # A task of a lost worker comes back by its worker's events, not the producer's: no
            # lookup for task-sent, the bulk of new uuids.
            orphan = self.orphans.pop(uuid, None) if self.orphans and state != "sent" else None
            if orphan is not None:
                task = rejoin(self, uuid, orphan, state, final)
            else:
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
                        self.stats["tasks_evicted"] += 1
        elif not final:
            tasks.move_to_end(uuid)  # least recently heard of goes first when the table is full
        if name:
            task.name = name
        late = False
        if state == "sent":
            if reorder.unsent or not reorder.sent_seen:
                reorder.seen_sent(task.name)
            # The producer publishes task-sent on its own connection, so it may reach us after the
            # worker's task-received (or even task-started) for the same run: then it only fills in
            # the queue and the sent time and must not send the task back to waiting.
            late = (task.state == "received" or task.state == "started") and retries <= task.retries
            task.queue = queue or task.queue
            task.sent = ts
            if hostname:
                # Inlined alertd.observe.clocks.note for its common case: one lookup per task-sent.
                d = ts - now
                c = self.clocks.get(hostname)
                if c is None or d > c[0] or now - c[1] > CLOCK_WINDOW:
                    c = note(self.clocks, hostname, d, now)
                task.sent_offset = c[0]
            # A late task-sent was sent before the task-received we already have.
            task.sent_at = min(now, task.entered) if late else now
            if not late:
                task.state = state
                task.eta = eta
                task.eta_at = None if eta is None else eta + (now - ts)
                task.retries = retries
                task.worker = ""  # not received by any worker yet (a retry may go to another one)
            elif task.eta is None and eta is not None:
                task.eta = eta
                task.eta_at = eta + (now - ts)
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
            task.pid = pid
            if retries > task.retries:
                task.retries = retries
            if eta is not None:
                task.eta = eta
                task.eta_at = eta + (now - ts)
        elif state == "started":
            task.started = ts
            task.entered = now
            if pid:
                task.pid = pid
            # Queue wait starts when the task could first have run: sent, or its ETA if later.
            base = task.sent if task.sent is not None else task.received
            if base is not None:
                if task.eta is not None and task.eta > base:
                    base = task.eta
                wait = ts - base
                if task.sent is not None and hostname:
                    # Sent on the producer's clock, started on the worker's: when those are
                    # clearly apart, move both onto ours.
                    c = self.clocks.get(hostname)
                    if c is not None:
                        skew = c[0] - task.sent_offset
                        if skew > self.max_clock_skew or skew < -self.max_clock_skew:
                            wait -= skew
                series.observe("task_queue_wait_seconds", labels, max(0.0, wait), now)
        elif state == "succeeded":
            if runtime is not None:
                series.observe("task_runtime_seconds", labels, runtime, now)
            if task.name:
                self.note_success(task.name, now)
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

    def note_success(self, name: str, now: float) -> None:
        """When `name` last succeeded (a bounded map: dead man's switches read it)."""
        last = self.last_success
        if name in last:
            last.move_to_end(name)
        elif len(last) >= self.max_task_names:
            # Names come from producers; a bug that mints one per call must not grow us forever.
            # Least recently succeeded first, in O(1) (a scan for the oldest stalled a flood).
            last.popitem(last=False)
            self.stats["task_names_evicted"] += 1
        last[name] = now
