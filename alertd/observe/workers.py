"""The worker table: each worker by hostname, what its heartbeats and samples said, and its losses.

A SIGKILLed or OOM-killed worker sends no goodbye, so a loss is judged from missing heartbeats,
on our receive clock, and only while alertd could have seen them: while its own event stream is
down, and for a while after it comes back, silence is alertd's blindness, not the worker's death.
A worker that comes back as a new process (a new pid under the same hostname) without a goodbye
was lost too, however fast its supervisor restarted it. Each loss, and each shutdown, takes the
tasks the worker held out of the task table (`orphan`) and keeps a record of them for the page.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from alertd.clock import Clock
from alertd.observe.clocks import Clocks, note
from alertd.observe.fields import count, number, text
from alertd.observe.losses import Loss, seeing_since, watched_since
from alertd.observe.tasks import Task
from alertd.samples import WorkerSample
from alertd.sources.health import StreamHealth

Orphan = Callable[[str, float, int | None], list[tuple[Task, str]]]

OFFLINE_FORGET_AFTER = 600.0  # a worker that said goodbye is listed this long (for "worker shut down")
LOST_FORGET_AFTER = 3600.0  # a lost worker keeps its alert this long, then is forgotten (autoscaled pods)
# A loss stays on worker_lost at least this long, so that rules evaluated every 15 s see a crash
# that the supervisor restarted within one heartbeat (or that came back seconds after the verdict).
LOST_SHOWN_FOR = 60.0
SAMPLE_STALE_AFTER = 300.0  # a queue or worker sample older than this is no longer reported
MEMORY_HISTORY = 3600.0  # memory growth is measured over this much sample history
MEMORY_HISTORY_MIN = 600.0  # and not before this much exists (one restart's warm-up is not a leak)


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
        "loss",
        "lost_at",
        "lost_until",
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
        self.lost_at: float | None = None  # declared lost from missing heartbeats, until it beats again
        self.lost_until = -math.inf  # worker_lost reads 1 until then, even if it is back
        self.loss: Loss | None = None  # the last loss or shutdown, for the page and the worker view
        self.pool_size: int | None = None
        self.memory_bytes: int | None = None
        self.memory_history: deque[tuple[float, int]] = deque(maxlen=1024)
        self.cpu_seconds: float | None = None
        self.cpu_at: float | None = None
        self.cpu_ratio: float | None = None
        self.sample_at: float | None = None
        self.queues: tuple[str, ...] = ()


class WorkerTable:
    """Workers by hostname; judges losses; hands the tasks of a gone process to `orphan`."""

    def __init__(
        self,
        clock: Clock,
        stats: dict[str, int],
        *,
        orphan: Orphan,
        max_workers: int,
        worker_lost_after: float,
        heartbeat_misses: float,
        restart_grace: float,
        health: StreamHealth | None,
        clocks: Clocks,
        max_clock_skew: float,
    ) -> None:
        self.clock = clock
        self._stats = stats
        self._orphan = orphan
        self.max_workers = max_workers
        self.worker_lost_after = worker_lost_after
        self.heartbeat_misses = heartbeat_misses
        self.restart_grace = restart_grace
        self.health = health
        self.clocks = clocks
        self.max_clock_skew = max_clock_skew
        self.workers: dict[str, Worker] = {}
        # Workers never heard from (named by task events or inspect only), oldest first: what a
        # full table forgets first, in O(1); a flood of made-up hostnames is all of this kind.
        self._unheard: OrderedDict[str, None] = OrderedDict()

    # -- events ----------------------------------------------------------------------------

    def on_event(self, kind: str, e: dict[str, Any], now: float) -> None:
        """worker-online, worker-heartbeat or worker-offline (kind without the prefix)."""
        hostname = e["hostname"]
        if not isinstance(hostname, str) or not hostname:
            raise TypeError("worker hostname is not a string")
        # Checked before anything changes, as for task events.
        freq = number(e, "freq")
        active = count(e, "active")
        processed = count(e, "processed")
        pid = count(e, "pid")
        load = e.get("loadavg")
        if load is not None and not (
            isinstance(load, list | tuple)
            and all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in load)
        ):
            raise TypeError(f"loadavg is {load!r}, not a list of numbers")
        sw_ident = text(e, "sw_ident")
        sw_ver = text(e, "sw_ver")
        ts = number(e, "timestamp")

        w = self.touch(hostname, now)
        if ts is not None:
            # A worker's clock may be anywhere: shown in the view, never a reason to drop its events.
            note(self.clocks, hostname, ts - now, now)
        if kind == "offline":
            if w.offline_at is None:
                w.offline_at = now
                # A warm shutdown has finished its running tasks and hands its prefetched ones back
                # to the broker; a cold one drops what runs. Either way none of them is in flight here.
                self._lose(w, now, "offline", None, pages=False)
            return
        if pid and w.pid and pid != w.pid and w.offline_at is None and w.lost_at is None:
            # A new process under this hostname, no goodbye from the old one: it died (SIGKILL, OOM,
            # a crash) and its supervisor restarted it within its heartbeat window. Unless our own
            # stream had a gap since the old one's last heartbeat: its goodbye may be in that gap.
            self._lose(w, now, "restart", pid, pages=watched_since(self.health, w.last_heartbeat))
        w.offline_at = None
        w.lost_at = None
        if w.last_heartbeat == -math.inf:
            self._unheard.pop(hostname, None)
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

    def touch(self, hostname: str, now: float) -> Worker:
        """The worker of that hostname, added if new (the least alive one goes when full)."""
        w = self.workers.get(hostname)
        if w is None:
            w = self.workers[hostname] = Worker(hostname, now)
            if len(self.workers) > self.max_workers:
                self._evict()
        return w

    def _evict(self) -> None:
        # Prefer forgetting a worker that is gone over one that is alive, the least recently heard
        # first: one never heard from, if any (the oldest listed), else by a scan of the table
        # (a scan per new hostname took 1.4 ms at 5000 workers: a flood of names stalled the loop).
        unheard = self._unheard
        while unheard:
            host, _ = unheard.popitem(last=False)
            w = self.workers.get(host)
            if w is not None and w.last_heartbeat == -math.inf:
                del self.workers[host]
                self._stats["workers_evicted"] += 1
                return
        now = self.clock.now()
        gone = [w for w in self.workers.values() if w.offline_at is not None or self._silent(w, now, -math.inf)]
        victim = min(gone or self.workers.values(), key=lambda w: w.last_heartbeat)
        del self.workers[victim.hostname]
        self._stats["workers_evicted"] += 1

    def touch_from_task(self, hostname: str, now: float) -> object:
        """A worker named by a task event. Listed, but judged only once it sends a worker event:
        without heartbeats (`--without-heartbeat`, or none received yet) its silence means nothing."""
        w = self.workers.get(hostname)
        if w is None:
            w = self.touch(hostname, now)
            w.last_heartbeat = -math.inf
            self._unheard[hostname] = None
        return w

    def redelivered(self, hostname: str) -> None:
        """A task lost with `hostname` was received again: its loss record says how many were."""
        w = self.workers.get(hostname)
        if w is not None and w.loss is not None:
            w.loss.redelivered += 1

    def _lose(self, w: Worker, now: float, cause: str, keep_pid: int | None, *, pages: bool) -> None:
        taken = self._orphan(w.hostname, now, keep_pid)
        tasks: dict[tuple[str, str], int] = {}
        for t, state in taken:
            key = (t.name, state)
            tasks[key] = tasks.get(key, 0) + 1
        w.loss = Loss(now, cause, w.pid, tasks, pages)
        if pages:
            w.lost_until = now + LOST_SHOWN_FOR
            self._stats["workers_lost"] += 1

    # -- judging losses ----------------------------------------------------------------------

    def window(self, w: Worker) -> float:
        """Silence longer than this, while we could see, means lost."""
        return max(self.worker_lost_after, w.freq * self.heartbeat_misses)

    def _silent(self, w: Worker, now: float, seeing: float) -> bool:
        return now - max(w.last_heartbeat, seeing) > self.window(w)

    def sweep(self, now: float) -> None:
        """Declare the workers whose heartbeats stopped lost (orphaning their tasks); forget the long gone."""
        seeing = seeing_since(self.health)
        for w in list(self.workers.values()):
            heard = w.last_heartbeat != -math.inf
            seen = w.last_heartbeat if heard else (w.sample_at or w.first_seen)
            if w.offline_at is not None:
                if now - w.offline_at > OFFLINE_FORGET_AFTER:
                    del self.workers[w.hostname]
                    self._unheard.pop(w.hostname, None)
                continue
            if now - seen > LOST_FORGET_AFTER:
                del self.workers[w.hostname]
                self._unheard.pop(w.hostname, None)
                continue
            if heard and w.lost_at is None and seeing is not None and self._silent(w, now, seeing):
                w.lost_at = now
                self._lose(w, now, "heartbeats", None, pages=True)

    def state(self, w: Worker) -> str:
        """online, lost or offline, as of the last sweep."""
        if w.offline_at is not None:
            return "offline"
        if w.lost_at is not None:
            return "lost"
        return "online"

    # -- samples ---------------------------------------------------------------------------

    def on_sample(self, s: WorkerSample) -> None:
        """Pool size, memory and CPU (a ratio from the delta between two samples) of a worker."""
        w = self.workers.get(s.worker)
        if w is None:
            # Seen by inspect before any heartbeat reached us: listed, but not "online" until it beats.
            w = self.touch(s.worker, s.at)
            w.last_heartbeat = -math.inf
            self._unheard[s.worker] = None
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

    # -- saved state -------------------------------------------------------------------------

    def export_state(self) -> dict[str, Any]:
        return {
            w.hostname: {"last_heartbeat": w.last_heartbeat, "freq": w.freq, "offline_at": w.offline_at, "pid": w.pid}
            for w in self.workers.values()
            if w.last_heartbeat != -math.inf
        }

    def import_state(self, workers: dict[Any, Any], log: Any) -> None:
        for hostname, d in workers.items():
            if hostname in self.workers or not isinstance(d, dict):
                continue
            try:
                beat = number(d, "last_heartbeat")
                freq = number(d, "freq")
                offline_at = number(d, "offline_at")
                pid = count(d, "pid")
            except TypeError:
                log.warning("saved state of worker %r skipped: not understood", hostname)
                continue
            if beat is None:
                continue
            w = self.touch(str(hostname), beat)
            w.freq = freq if freq and freq > 0 else w.freq
            w.offline_at = offline_at
            w.pid = pid or 0
