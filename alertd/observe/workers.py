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
from alertd.observe.series import Labels
from alertd.observe.tasks import Task
from alertd.samples import WorkerSample
from alertd.sources.health import StreamHealth

Gauges = dict[str, dict[Labels, float]]
Orphan = Callable[[str, float, int | None], list[tuple[Task, str]]]

OFFLINE_FORGET_AFTER = 600.0  # a worker that said goodbye is listed this long (for "worker shut down")
LOST_FORGET_AFTER = 3600.0  # a lost worker keeps its alert this long, then is forgotten (autoscaled pods)
# A loss stays on worker_lost at least this long, so that rules evaluated every 15 s see a crash
# that the supervisor restarted within one heartbeat (or that came back seconds after the verdict).
LOST_SHOWN_FOR = 60.0
# Workers cut off by the same broker outage reconnect on kombu's backoff (2 s, 4 s, 6 s ... apart,
# at most 30 s): after a gap in our stream they may come back up to this long after we do.
WORKER_RECONNECT_MAX = 30.0
SAMPLE_STALE_AFTER = 300.0  # a queue or worker sample older than this is no longer reported
MEMORY_HISTORY = 3600.0  # memory growth is measured over this much sample history
MEMORY_HISTORY_MIN = 600.0  # and not before this much exists (one restart's warm-up is not a leak)
LOSS_NAMES_SHOWN = 10  # task names listed in a loss's summary; the rest are counted


class Loss:
    """One process of a worker gone: how, when, and the tasks it held."""

    __slots__ = ("at", "cause", "pages", "pid", "redelivered", "tasks")

    def __init__(self, at: float, cause: str, pid: int, tasks: dict[tuple[str, str], int], pages: bool) -> None:
        self.at = at
        self.cause = cause  # "heartbeats" (silence), "restart" (new pid, no goodbye) or "offline" (goodbye)
        self.pid = pid
        self.tasks = tasks  # (task name, "started" | "received") -> how many
        self.pages = pages  # no goodbye, and alertd was watching: a real loss, not its own blindness
        self.redelivered = 0  # of those tasks, received again since (acks_late, or reserved ones)

    def orphaned(self) -> int:
        return sum(self.tasks.values())

    def summary(self) -> str:
        """'1 t.sleep (running), 3 t.add (reserved)', the most numerous first."""
        parts = sorted(self.tasks.items(), key=lambda kv: (-kv[1], kv[0]))
        words = [
            f"{n} {name or '(unnamed)'} ({'running' if state == 'started' else 'reserved'})"
            for (name, state), n in parts[:LOSS_NAMES_SHOWN]
        ]
        rest = sum(n for _, n in parts[LOSS_NAMES_SHOWN:])
        if rest:
            words.append(f"{rest} more")
        return ", ".join(words)

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "cause": self.cause,
            "pid": self.pid,
            "orphaned": self.orphaned(),
            "running": sum(n for (_, s), n in self.tasks.items() if s == "started"),
            "reserved": sum(n for (_, s), n in self.tasks.items() if s == "received"),
            "redelivered": self.redelivered,
            "tasks": [{"task": name, "state": s, "count": n} for (name, s), n in sorted(self.tasks.items())],
        }


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
            self._lose(w, now, "restart", pid, pages=self._watched_since(w.last_heartbeat))
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

    def _seeing_since(self) -> float | None:
        """From when on missing heartbeats count: None while the stream is down (nobody is judged).

        After a reconnect (and after alertd's own start) silence counts from the reconnect, plus
        the time the workers cut off by the same outage may take to reconnect themselves.
        """
        h = self.health
        if h is None:
            return -math.inf
        if not h.connected or h.connected_since is None:
            return None
        since = h.connected_since
        if h.gaps and h.gaps[-1][1] == since:
            since += min(since - h.gaps[-1][0], WORKER_RECONNECT_MAX)
        return since

    def _watched_since(self, t: float) -> bool:
        """Whether the stream has been up without a gap since `t`: no event since then was missed."""
        h = self.health
        if h is None:
            return True
        return h.connected and h.connected_since is not None and h.connected_since <= t

    def _silent(self, w: Worker, now: float, seeing: float) -> bool:
        return now - max(w.last_heartbeat, seeing) > self.window(w)

    def sweep(self, now: float) -> None:
        """Declare the workers whose heartbeats stopped lost (orphaning their tasks); forget the long gone."""
        seeing = self._seeing_since()
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

    # -- gauges and views --------------------------------------------------------------------

    def gauges(self, g: Gauges, now: float) -> int:
        """The worker_* gauges (after a sweep); returns how many workers are online."""
        online = 0
        for w in self.workers.values():
            key = (w.hostname,)
            state = self.state(w)
            if w.last_heartbeat == -math.inf and state != "offline":
                continue  # known only from inspect or task events: no heartbeat seen yet
            up = state == "online"
            online += up
            g["worker_up"][key] = float(up)
            g["worker_lost"][key] = float(state == "lost" or now < w.lost_until)
            # A restart (deploy) says goodbye and is back within the grace: that pages nothing.
            g["worker_offline"][key] = float(w.offline_at is not None and now - w.offline_at >= self.restart_grace)
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

    def gone_server(self, queue: str, now: float) -> str:
        """The worker that served `queue` and is gone now - lost (worker_lost reads 1), or shut
        down and not back - the latest first; '' when none is. A queue's no-consumer alert names
        it: a lost worker's page explains that alert, and that alert explains a shutdown's."""
        best: Worker | None = None
        for w in self.workers.values():
            gone = self.state(w) in ("lost", "offline") or now < w.lost_until
            if queue not in w.queues or w.loss is None or not gone:
                continue
            if best is None or (best.loss is not None and w.loss.at > best.loss.at):
                best = w
        return best.hostname if best is not None else ""

    def details(self, hostname: str) -> dict[str, Any]:
        """What a worker_lost page says beyond the labels: the tasks the worker took with it."""
        w = self.workers.get(hostname)
        loss = w.loss if w is not None else None
        if loss is None:
            return {}
        d = loss.to_dict()
        d["orphaned_tasks"] = loss.summary()
        return d

    def snapshot(self) -> list[dict[str, Any]]:
        """Every worker in the table with its state (online, lost, offline), sorted by hostname."""
        out = []
        for w in sorted(self.workers.values(), key=lambda w: w.hostname):
            clock = self.clocks.get(w.hostname)
            offset = clock[0] if clock is not None else None
            out.append(
                {
                    "hostname": w.hostname,
                    "state": self.state(w),
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
                    "clock_skewed": offset is not None and abs(offset) > self.max_clock_skew,
                    "queues": list(w.queues),
                    "last_loss": w.loss.to_dict() if w.loss is not None else None,
                }
            )
        return out

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
