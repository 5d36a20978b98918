"""Every periodic entry's runs, matched from task events, and the gauges the rules judge them by.

Beat's sends are seen as task-sent events (beat needs `task_send_sent_event`), then followed by
uuid through received, started, retried and the outcome. A send is matched to an entry by task
name and, where several entries share the name, by the args/kwargs repr the event carries. The
checks are gauges (catalogue: periodic_*) read by ordinary metric rules in rules/celery.yaml, so
grace, severity and per-entry exceptions are tuned with matchers on entry/task/queue like every
other rule. Each gauge is a property of the entry's latest runs, so an alert is one per entry and
the next good run resolves it.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from alertd.clock import Clock
from alertd.observe.observer import Observer
from alertd.offloop import in_daemon_thread
from alertd.periodic.config import PeriodicConfig
from alertd.periodic.entries import Entry, same_call
from alertd.periodic.runs import FINAL, FINISHED, RUNNING, WAITING, Run
from alertd.periodic.schedules import Schedule
from alertd.periodic.sources import EntryLoader, schedule_loader
from alertd.periodic.views import snapshot

log = logging.getLogger(__name__)

Labels = tuple[str, ...]
Watch = Callable[[Callable[[dict[str, Any]], None], frozenset[str] | None], Callable[[], None]]

GAUGES = (
    "periodic_missed_seconds",
    "periodic_late_start_seconds",
    "periodic_failed",
    "periodic_overran",
    "periodic_never_finished",
    "periodic_runtime_seconds",
)
EVENT_TYPES = frozenset(
    f"task-{s}" for s in ("sent", "received", "started", "retried", "succeeded", "failed", "revoked", "rejected")
)
MAX_IN_FLIGHT = 10_000  # runs followed by uuid; past it the oldest are forgotten


@dataclass
class EntryState:
    entry: Entry
    since: float  # when alertd began watching it: the baseline while no run has been seen
    runs: deque[Run] = field(default_factory=deque)
    queue_seen: str = ""
    sent_seen: bool = False  # a run of it came with task-sent (beat sends sent events)
    received_only: int = 0  # runs first seen from task-received: task-sent is off on beat
    _memo: tuple[float, Schedule, float] | None = field(default=None, repr=False)  # base, schedule, next

    @property
    def queue(self) -> str:
        return self.entry.queue or self.queue_seen

    def last(self) -> Run | None:
        return self.runs[-1] if self.runs else None

    def last_run_at(self) -> float:
        at = max((r.at for r in self.runs), default=-math.inf)
        stored = self.entry.last_run_at if self.entry.last_run_at is not None else -math.inf
        return max(at, stored)

    def next_expected(self) -> float:
        last = self.last_run_at()
        base = last if last > -math.inf else self.since
        memo = self._memo
        # Asked at every evaluation: computed once per run (a rare crontab date, a solar event, cost more)
        if memo is not None and memo[0] == base and memo[1] is self.entry.schedule:
            return memo[2]
        at = self.entry.schedule.next_after(base)
        self._memo = (base, self.entry.schedule, at)
        return at


class Periodic:
    """The periodic checks of one daemon: entries from a source, runs from the observer's events."""

    def __init__(
        self,
        config: PeriodicConfig,
        clock: Clock,
        *,
        watch: Watch | None = None,
        orphaned: Callable[[str], bool] | None = None,
        loader: EntryLoader | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.orphaned = orphaned
        self.loader = loader if loader is not None else schedule_loader(config)
        self.entries: dict[str, EntryState] = {}
        self._by_task: dict[str, list[EntryState]] = {}
        self._in_flight: OrderedDict[str, tuple[EntryState, Run]] = OrderedDict()
        self._saved: dict[str, Any] = {}  # state restored before the entries it belongs to are loaded
        self.problems: list[str] = []
        self.loaded_at: float | None = None
        sources = (
            ("beat_schedule", config.app),
            ("redbeat", config.redbeat),
            ("django_celery_beat", config.django_celery_beat),
        )
        self.source = ",".join(name for name, on in sources if on)
        # Subscribed once there is an entry (or a restored run) to match events to: until then no
        # event can be a run of one, and the observer need not enrich every task event for us.
        self._watch = watch
        self._watching = False

    @classmethod
    def watching(cls, config: PeriodicConfig, observer: Observer, clock: Clock) -> Periodic:
        """Checks fed by the observer's task events, told of lost workers by its orphaned tasks."""
        return cls(config, clock, watch=observer.watch, orphaned=observer.orphaned)

    # -- entries ---------------------------------------------------------------------------

    def set_entries(self, entries: list[Entry], now: float) -> None:
        """The schedule as last read: new entries start watched from now, removed ones are dropped."""
        fresh: dict[str, EntryState] = {}
        for e in entries:
            old = self.entries.get(e.name)
            if old is not None:
                old.entry = e
                fresh[e.name] = old
            else:
                fresh[e.name] = self._restored(e, now)
        self.entries = fresh
        self._by_task = {}
        for st in fresh.values():
            if st.entry.enabled:
                self._by_task.setdefault(st.entry.task, []).append(st)
        self.loaded_at = now
        if not self._watching and self._watch is not None and (self._by_task or self._in_flight):
            self._watch(self.on_event, EVENT_TYPES)
            self._watching = True

    def _restored(self, e: Entry, now: float) -> EntryState:
        st = EntryState(e, since=now, runs=deque(maxlen=self.config.history))
        saved = self._saved.pop(e.name, None)
        if isinstance(saved, dict):
            since = saved.get("since")
            if isinstance(since, int | float) and not isinstance(since, bool) and math.isfinite(since):
                st.since = min(float(since), now)
            st.sent_seen = bool(saved.get("sent_seen"))
            st.queue_seen = str(saved.get("queue_seen") or "")
            for d in saved.get("runs") or []:
                run = Run.from_dict(d)
                if run is not None:
                    st.runs.append(run)
                    if run.in_flight:
                        self._follow(st, run)
        return st

    async def run(self) -> None:
        """Read the schedule now and every `reload` seconds, off the event loop (it imports user code)."""
        if not self.source:
            return
        while True:
            try:
                entries, problems = await in_daemon_thread(self.loader, name="alertd-periodic-schedule")
            except Exception as e:  # a broken app module: keep the entries read before, say why
                self.problems = [str(e)]
                log.error("periodic: schedule not read: %s", e)
            else:
                self.set_entries(entries, self.clock.now())
                self.problems = problems
                for p in problems:
                    log.warning("periodic: %s", p)
            await self.clock.sleep(self.config.reload)

    # -- events ----------------------------------------------------------------------------

    def on_event(self, event: dict[str, Any]) -> None:
        """An enriched task event from the observer (task name and queue joined by uuid)."""
        uuid = event.get("uuid")
        kind = event.get("type")
        if not isinstance(uuid, str) or not isinstance(kind, str):
            return
        at = event.get("local_received")
        now = float(at) if isinstance(at, int | float) and not isinstance(at, bool) else self.clock.now()
        state = kind.removeprefix("task-")
        followed = self._in_flight.get(uuid)
        if followed is None:
            if state in ("sent", "received"):
                self._new_run(uuid, state, event, now)
            return
        st, run = followed
        if state == "sent":
            if run.sent_at is None:
                # beat's task-sent came after the worker's task-received (two publishers, no
                # order between them): the run was beat's after all
                run.sent_at = min(now, run.received_at if run.received_at is not None else now)
                st.sent_seen = True
                st.received_only = max(0, st.received_only - 1)
            return  # otherwise a retry, re-sent under the same uuid: the same run
        if state == "received":
            run.received_at = run.received_at if run.received_at is not None else now
            run.state = "received"
        elif state == "started":
            run.started_at = now
            run.state = "started"
            run.worker = str(event.get("hostname") or run.worker)
        elif state == "retried":
            run.state = "retried"
            run.retries += 1
        elif state in FINAL:
            run.state = state
            run.finished_at = now
            run.exception = str(event.get("exception") or "") if state == "failed" else ""
            self._in_flight.pop(uuid, None)

    def _new_run(self, uuid: str, state: str, event: dict[str, Any], now: float) -> None:
        st = self._match(str(event.get("task") or event.get("name") or ""), event)
        if st is None:
            return
        run = Run(uuid, sent_at=now if state == "sent" else None, received_at=now if state == "received" else None)
        run.state = state
        run.due_at = st.next_expected()
        run.next_due = st.entry.schedule.next_after(now)
        if state == "sent":
            st.sent_seen = True
        else:
            st.received_only += 1
        queue = event.get("queue")
        if isinstance(queue, str) and queue:
            st.queue_seen = queue
        st.runs.append(run)
        self._follow(st, run)

    def _follow(self, st: EntryState, run: Run) -> None:
        self._in_flight[run.uuid] = (st, run)
        if len(self._in_flight) > MAX_IN_FLIGHT:
            self._in_flight.popitem(last=False)

    def _match(self, task: str, event: Mapping[str, Any]) -> EntryState | None:
        """The entry a send is a run of: by task name, then args/kwargs; the most due among equals."""
        candidates = self._by_task.get(task)
        if not candidates:
            return None
        if len(candidates) > 1 or "args" in event:
            candidates = [
                c
                for c in candidates
                if same_call(c.entry.args_repr, event.get("args"))
                and same_call(c.entry.kwargs_repr, event.get("kwargs"))
            ]
        if not candidates:
            return None  # the task called with other arguments: not one of the entries' runs
        # Entries that send the very same call cannot be told apart: the run goes to the one
        # whose run is most due (docs/periodic.md).
        return min(candidates, key=lambda c: c.next_expected())

    # -- checks ----------------------------------------------------------------------------

    def _sweep_lost(self) -> None:
        """Runs whose worker was lost mid-run (the observer orphaned the task): never finished."""
        if self.orphaned is None:
            return
        for uuid, (_, run) in list(self._in_flight.items()):
            if run.state in RUNNING and self.orphaned(uuid):
                run.state = "lost"
                self._in_flight.pop(uuid, None)

    def gauges(self, now: float) -> dict[str, dict[Labels, float]]:
        """The periodic_* gauges of every enabled entry, labels (entry, task, queue)."""
        self._sweep_lost()
        g: dict[str, dict[Labels, float]] = {name: {} for name in GAUGES}
        for st in self.entries.values():
            if not st.entry.enabled:
                continue
            labels = (st.entry.name, st.entry.task, st.queue)
            c = self._checks(st, now)
            if c is None:
                continue
            g["periodic_missed_seconds"][labels] = c["missed_seconds"]
            g["periodic_late_start_seconds"][labels] = c["late_start_seconds"]
            g["periodic_failed"][labels] = float(c["failed"])
            g["periodic_overran"][labels] = float(c["overran"])
            g["periodic_never_finished"][labels] = float(c["never_finished"])
            if c["runtime_seconds"] is not None:
                g["periodic_runtime_seconds"][labels] = c["runtime_seconds"]
        return g

    def _checks(self, st: EntryState, now: float) -> dict[str, Any] | None:
        """checks(), or None for an entry whose schedule cannot be computed (ephem missing for a
        solar one, say): a user's schedule must never stop the evaluation of every rule."""
        try:
            return checks(st, now)
        except Exception as e:
            problem = f"{st.entry.name}: its next run cannot be computed: {type(e).__name__}: {e}"
            if problem not in self.problems:
                self.problems.append(problem)
                log.error("periodic: %s", problem)
            return None

    # -- views and state -------------------------------------------------------------------

    def snapshot(self, now: float) -> dict[str, Any]:
        """Every entry with its schedule in words, next expected run, last run and state (API, CLI)."""
        return snapshot(self, now)

    def export_state(self) -> dict[str, Any]:
        """Each entry's recent runs, so a restart neither forgets a failure nor pages a missed run anew."""
        state = dict(self._saved)
        for name, st in self.entries.items():
            state[name] = {
                "since": st.since,
                "sent_seen": st.sent_seen,
                "queue_seen": st.queue_seen,
                "runs": [r.as_dict() for r in st.runs],
            }
        return {"entries": state}

    def import_state(self, state: Any) -> None:
        """Restore export_state()'s output; applied to each entry when the schedule lists it."""
        entries = state.get("entries") if isinstance(state, dict) else None
        if not isinstance(entries, dict):
            return
        self._saved = {str(k): v for k, v in entries.items()}
        if self.entries:  # restored after the schedule was read: re-apply to what is listed
            current = [st.entry for st in self.entries.values()]
            self.entries = {}
            self.set_entries(current, self.clock.now())


def checks(st: EntryState, now: float) -> dict[str, Any]:
    """What the gauges say of one entry now."""
    runs = list(st.runs)
    last = runs[-1] if runs else None
    missed = max(0.0, now - st.next_expected())
    late = 0.0
    if last is not None and last.sent_at is not None:
        if last.started_at is not None:
            late = max(0.0, last.started_at - last.sent_at)
        elif last.state in WAITING:
            late = max(0.0, now - last.sent_at)
    finished = [r for r in runs if r.state in FINISHED]
    decided = [r for r in runs if r.state in FINISHED or r.state == "lost"]
    running = [r for r in runs if r.state in RUNNING]
    overran = any(r.overran(now) for r in running) or bool(finished and finished[-1].overran(now))
    runtime = running[0].runtime(now) if running else (finished[-1].runtime(now) if finished else None)
    return {
        "missed_seconds": missed,
        "late_start_seconds": late,
        "failed": bool(finished and finished[-1].state == "failed"),
        "overran": overran,
        "never_finished": bool(decided and decided[-1].state == "lost"),
        "runtime_seconds": runtime,
    }
