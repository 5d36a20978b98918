"""Scale benchmark, in process: many task names x queues x workers -> RSS, bytes per busy series,
the cost of long windows, and the rule tick (p50 / p99 / max) over a long run.

No broker: a simulated Celery fleet on a virtual clock feeds the observer (task-sent, received,
started, succeeded or failed, worker heartbeats, queue samples), and the default rule pack is
ticked once per simulated second as the daemon does (every group due every 15 s). Task names
are Zipf-distributed, so a few are hot and most are rare, as in a real monolith; each name
belongs to one queue and runs on the workers that consume it.

    .venv/bin/python bench/scale.py [--names 1000 --queues 20 --workers 50 --events 5000000]
    .venv/bin/python bench/scale.py --before C1,C2   # the same run without commits C1, C2 first

With --before, each side runs in its own process, one after the other in the same invocation:
a copy of the tree with what those commits changed in alertd/ taken back out, then the tree as
it is, so the figures compare exactly those changes on the same machine at the same time.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

T0 = 1_700_000_000.0
BUCKET, RETENTION = 5.0, 3600.0  # the daemon's defaults (observe.bucket, observe.retention)


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def pct(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (the p99 of 100 ticks is the 99th slowest, not an interpolation)."""
    s = sorted(xs)
    return s[max(0, math.ceil(q * len(s)) - 1)]


# -- bytes per busy series ------------------------------------------------------------------------


def _busy_bytes(kind: str, per_bucket: int, n_series: int) -> int:
    """tracemalloc bytes of a store holding n_series busy in every bucket of the hour."""
    from alertd.observe.series import SeriesStore

    rnd = random.Random(per_bucket)
    medians = [10 ** rnd.uniform(-2, 1) for _ in range(n_series)]
    labels = [(f"app.tasks.t{i}", "q", "celery@w") for i in range(n_series)]
    gc.collect()
    tracemalloc.start()
    store = SeriesStore(bucket_seconds=BUCKET, retention_seconds=RETENTION, max_series=100_000)
    observe, count = store.observe, store.count
    for step in range(0, int(RETENTION), int(BUCKET)):
        now = T0 + step
        for i in range(n_series):
            if kind == "counter":
                count("tasks_succeeded", labels[i], now, per_bucket)
                continue
            m = medians[i]
            for _ in range(per_bucket):
                observe("task_runtime_seconds", labels[i], m * rnd.lognormvariate(0, 0.5), now)
    # A reader of the newest bucket, so that whatever a store does when read is counted too.
    if kind == "counter":
        store.sums("tasks_succeeded", BUCKET, T0 + RETENTION - 1)
    else:
        store.distributions("task_runtime_seconds", BUCKET, T0 + RETENTION - 1)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del store
    return used


def bench_busy_series() -> dict[str, Any]:
    """Bytes of one more series busy in every 5 s bucket of the hour: (bytes(2n) - bytes(n)) / n.

    3 values per bucket is bench/observe.py's "busy" series (the 114 KiB issue 14 quotes); 30
    and 300 are hot tasks (6 and 60 runs a second on one worker). Runtimes are log-normal around
    a per-series median, as real task runtimes are. What a store shares among its series (its
    ring of buckets) cancels out in the difference.
    """
    out: dict[str, Any] = {}
    for kind, per_bucket, n in (
        ("counter", 1, 500),
        ("distribution", 3, 500),
        ("distribution", 30, 50),
        ("distribution", 300, 5),
    ):
        one, two = _busy_bytes(kind, per_bucket, n), _busy_bytes(kind, per_bucket, 2 * n)
        out[f"{kind}_{per_bucket}"] = (two - one) / n
    return out


def bench_windows(n_series: int = 1000, per_bucket: int = 3) -> dict[str, Any]:
    """p95 over 10 m and 1 h windows for 1,000 busy series: the first read, then one a tick later."""
    from alertd.observe.series import SeriesStore

    rnd = random.Random(1)
    store = SeriesStore(bucket_seconds=BUCKET, retention_seconds=RETENTION, max_series=100_000)
    medians = [10 ** rnd.uniform(-2, 1) for _ in range(n_series)]
    labels = [(f"app.tasks.t{i}", "q", "celery@w") for i in range(n_series)]

    def fill(start: int, stop: int) -> None:
        for step in range(start, stop, int(BUCKET)):
            for i in range(n_series):
                for _ in range(per_bucket):
                    store.observe("task_runtime_seconds", labels[i], medians[i] * rnd.lognormvariate(0, 0.5), T0 + step)

    fill(0, int(RETENTION))
    out: dict[str, Any] = {}
    now = T0 + RETENTION - 1
    for window in (600.0, 3600.0):
        t = time.perf_counter()
        for d in store.distributions("task_runtime_seconds", window, now).values():
            d.quantile(0.95)
        out[f"first_{int(window)}"] = time.perf_counter() - t
    # 15 s later (one rule interval): three buckets closed, three left the window
    fill(int(RETENTION), int(RETENTION) + 15)
    now += 15
    for window in (600.0, 3600.0):
        t = time.perf_counter()
        for d in store.distributions("task_runtime_seconds", window, now).values():
            d.quantile(0.95)
        out[f"next_{int(window)}"] = time.perf_counter() - t
    return out


# -- the fleet ----------------------------------------------------------------------------------------


class Fleet:
    """Task names on queues on workers; emits each simulated second's events in time order."""

    def __init__(self, names: int, queues: int, workers: int, rate: float, seed: int = 14) -> None:
        self.rnd = rnd = random.Random(seed)
        self.names = [f"app.module{i % 37}.tasks.task_{i}" for i in range(names)]
        self.queues = [f"queue{q}" for q in range(queues)]
        self.workers = [f"celery@worker{w}" for w in range(workers)]
        # Each worker consumes two queues, so a queue is served by about 2 * workers / queues of them.
        serving: dict[int, list[str]] = {q: [] for q in range(queues)}
        for w, host in enumerate(self.workers):
            serving[w % queues].append(host)
            serving[(w + 7) % queues].append(host)
        self.serving = serving
        weights = [1.0 / (i + 1) ** 1.1 for i in range(names)]  # Zipf: a few hot names, a long tail
        total = sum(weights)
        acc, self.cum = 0.0, []
        for w in weights:
            acc += w / total
            self.cum.append(acc)
        self.median = [10 ** rnd.uniform(-2.3, 1.3) for _ in range(names)]  # 5 ms .. 20 s
        self.rate = rate
        self.pending: dict[int, list[dict[str, Any]]] = {}
        self.n = 0

    def _at(self, t: float, e: dict[str, Any]) -> None:
        e["local_received"] = t
        e["timestamp"] = t
        s = int(t - T0)
        bucket = self.pending.get(s)
        if bucket is None:
            bucket = self.pending[s] = []
        bucket.append(e)

    def second(self, s: int) -> list[dict[str, Any]]:
        """The events received during simulated second s (T0-relative seconds as epoch times)."""
        rnd = self.rnd
        n_new = int(self.rate) + (1 if rnd.random() < self.rate - int(self.rate) else 0)
        picks = rnd.choices(range(len(self.names)), cum_weights=self.cum, k=n_new)
        base = T0 + s
        for i in picks:
            self.n += 1
            uid = f"{self.n:08x}-0000-4000-8000-{i:012x}"
            name, q = self.names[i], i % len(self.queues)
            queue = self.queues[q]
            worker = rnd.choice(self.serving[q])
            sent = base + rnd.random()
            started = sent + 0.005 + rnd.lognormvariate(-3.0, 1.0)  # waits of ~50 ms, a tail to seconds
            runtime = min(120.0, self.median[i] * rnd.lognormvariate(0, 0.5))
            self._at(
                sent,
                {
                    "type": "task-sent",
                    "uuid": uid,
                    "name": name,
                    "queue": queue,
                    "hostname": "gen@web",
                    "retries": 0,
                    "eta": None,
                },
            )
            self._at(
                sent + 0.004,
                {
                    "type": "task-received",
                    "uuid": uid,
                    "name": name,
                    "hostname": worker,
                    "retries": 0,
                    "eta": None,
                    "pid": 100,
                },
            )
            self._at(started, {"type": "task-started", "uuid": uid, "hostname": worker, "pid": 101})
            if rnd.random() < (0.2 if i % 97 == 13 else 0.01):  # 1 % failures, 20 % for a few names that page
                end = {
                    "type": "task-failed",
                    "uuid": uid,
                    "hostname": worker,
                    "exception": "ValueError('x')",
                    "traceback": "Traceback (most recent call last):\nValueError: x\n",
                }
            else:
                end = {"type": "task-succeeded", "uuid": uid, "hostname": worker, "runtime": runtime, "result": "3"}
            self._at(started + runtime, end)
        if s % 2 == 0:  # heartbeats every 2 s
            for w, host in enumerate(self.workers):
                self._at(
                    base + w / len(self.workers),
                    {
                        "type": "worker-heartbeat",
                        "hostname": host,
                        "freq": 2.0,
                        "active": 4,
                        "processed": self.n,
                        "loadavg": [0.5, 0.4, 0.3],
                        "sw_ident": "py-celery",
                        "sw_ver": "5.5.0",
                        "pid": 100,
                    },
                )
        events = self.pending.pop(s, [])
        events.sort(key=lambda e: e["local_received"])
        return events


def bench_scale(names: int, queues: int, workers: int, events: int, rate: float) -> dict[str, Any]:
    from alertd.clock import VirtualClock
    from alertd.observe.observer import Observer
    from alertd.observe.series import SeriesStore
    from alertd.rules.engine import Engine
    from alertd.rules.loader import expand_rule_paths, load_rules
    from alertd.samples import QueueSample
    from alertd.sources.health import StreamHealth

    gc.collect()
    base_rss = rss_mib()
    clock = VirtualClock(T0)
    health = StreamHealth()
    health.mark_connected(T0)
    series = SeriesStore(bucket_seconds=BUCKET, retention_seconds=RETENTION)
    observer = Observer(series, clock, health=health)
    rules = load_rules(expand_rule_paths(["rules/*.yaml"], ROOT))
    engine = Engine(
        rules, series, clock, gauges=observer.gauges, watch=observer.watch, expect_task=observer.expect_task
    )
    fleet = Fleet(names, queues, workers, rate)
    ticks: list[float] = []  # ticks that evaluated the groups (every 15 s), wall seconds
    idle: list[float] = []  # the other ticks (nothing due): what every second costs
    checkpoints: list[tuple[int, float, float]] = []  # (events, event-time hours, RSS MiB)
    next_check = 500_000
    ingest = 0.0
    seen = 0
    s = 0
    was_due = dict(engine.next_eval)
    while seen < events:
        batch = fleet.second(s)
        t = time.perf_counter()
        for k in range(0, len(batch), 256):
            observer.on_events(batch[k : k + 256])
        ingest += time.perf_counter() - t
        seen += len(batch)
        if batch:
            health.last_event_at = batch[-1]["local_received"]
            health.events = seen
        now = T0 + s + 1
        clock.set(now)
        if s % 5 == 0:
            for q, queue in enumerate(fleet.queues):
                observer.on_queue_sample(QueueSample(queue, (s // 5 + q) % 40, None, now))
        t = time.perf_counter()
        engine.tick(now)
        took = time.perf_counter() - t
        (ticks if engine.next_eval != was_due else idle).append(took)
        was_due = dict(engine.next_eval)
        if seen >= next_check:
            checkpoints.append((seen, (s + 1) / 3600, rss_mib() - base_rss))
            next_check += 500_000
        s += 1
    rss = rss_mib() - base_rss
    # The pack loaded anew on the full store (a reload that changed every rule): its first tick
    # builds every window at once, unless the engine builds them in slices (the daemon's budget).
    reload: dict[str, Any] = {}
    budgets = [None]
    if "build_budget" in inspect.signature(Engine).parameters:
        from alertd.daemon import BUILD_BUDGET

        budgets.append(BUILD_BUDGET)
    for budget in budgets:
        kw = {} if budget is None else {"build_budget": budget}
        fresh = Engine(rules, series, clock, gauges=observer.gauges, **kw)  # type: ignore[arg-type]
        took, waited = [], 0
        for k in range(60):
            t = time.perf_counter()
            fresh.tick(T0 + s + k)
            took.append(time.perf_counter() - t)
            if any(rt.last_evaluation is None for rt in fresh.runtimes.values() if rt.rule.kind == "metric"):
                waited = k + 1
        reload[str(budget)] = {"first": took[0], "max": max(took), "waited": waited}
    return {
        "reload": reload,
        "events": seen,
        "event_hours": s / 3600,
        "ingest_eps": seen / ingest,
        "series": {
            m: series.series_count(m) for m in ("tasks_succeeded", "task_runtime_seconds", "task_queue_wait_seconds")
        },
        "ticks": ticks,
        "idle": idle,
        "checkpoints": checkpoints,
        "rss": rss,
    }


def child(args: argparse.Namespace) -> None:
    out: dict[str, Any] = {}
    if not args.skip_busy:
        out["busy"] = bench_busy_series()
        out["windows"] = bench_windows()
    out["scale"] = bench_scale(args.names, args.queues, args.workers, args.events, args.rate)
    print("RESULT " + json.dumps(out), flush=True)


def report(label: str, r: dict[str, Any]) -> None:
    print(f"== {label}")
    if "busy" in r:
        b = r["busy"]
        print(f"  busy counter series (every 5 s bucket of 1 h): {b['counter_1'] / 1024:.1f} KiB")
        for k in (3, 30, 300):
            kib = b[f"distribution_{k}"] / 1024
            print(f"  busy distribution series, {k:>3} values per 5 s bucket over 1 h: {kib:.1f} KiB")
        w = {k: v * 1000 for k, v in r["windows"].items()}
        print(
            f"  p95 of 1,000 busy series: 10 m window {w['first_600']:.0f} ms first read, {w['next_600']:.0f} ms "
            f"a tick later; 1 h window {w['first_3600']:.0f} ms first read, {w['next_3600']:.0f} ms a tick later"
        )
    sc = r["scale"]
    ticks, idle = [t * 1000 for t in sc["ticks"]], [t * 1000 for t in sc["idle"]]
    hours, eps = sc["event_hours"], sc["ingest_eps"]
    print(f"  scale: {sc['events']:,} events over {hours:.2f} h of event time, ingest {eps:,.0f} events/s")
    print(f"  series: {sc['series']}")
    print(
        f"  rule ticks evaluating the pack ({len(ticks)}): first {ticks[0]:.0f} ms, p50 {pct(ticks, 0.5):.1f} ms, "
        f"p99 {pct(ticks, 0.99):.1f} ms, max {max(ticks):.1f} ms"
    )
    print(f"  the other {len(idle)} ticks (nothing due): p99 {pct(idle, 0.99):.2f} ms")
    for budget, r2 in sc["reload"].items():
        how = "windows built at once" if budget == "None" else f"windows built {float(budget) * 1000:.0f} ms a tick"
        print(
            f"  the pack loaded anew on the full store (a reload), {how}: first tick {r2['first'] * 1000:.0f} ms, "
            f"slowest of 60 {r2['max'] * 1000:.0f} ms; every rule evaluated after {r2['waited']} ticks"
        )
    marks = ", ".join(f"{e / 1e6:.1f}M {h:.2f}h {m:.0f}" for e, h, m in sc["checkpoints"])
    print(f"  RSS growth (events, event-time hours, MiB): {marks}")
    print(f"  RSS growth at the end: {sc['rss']:.0f} MiB")


def before_tree(commits: list[str]) -> Path:
    """A copy of alertd/ and rules/ with what `commits` changed in alertd/ taken back out."""
    tmp = Path(tempfile.mkdtemp(prefix="alertd-before-"))
    shutil.copytree(ROOT / "alertd", tmp / "alertd", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "rules", tmp / "rules")
    for commit in reversed(commits):
        diff = subprocess.run(
            ["git", "show", "--format=", commit, "--", "alertd"], cwd=ROOT, capture_output=True, check=True
        )
        # -C1 and --reject: the tree may have moved around these lines since (a later commit may
        # have rewritten a hunk that an earlier one of the list put in: that hunk is skipped)
        subprocess.run(["git", "apply", "-R", "-C1", "--reject"], cwd=tmp, input=diff.stdout, capture_output=True)
    return tmp


def run_side(tree: Path, argv: list[str]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree), "ALERTD_BENCH_ROOT": str(tree)}
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", *argv], env=env, capture_output=True, text=True
    )
    if proc.returncode:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"benchmark side in {tree} failed")
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return dict(json.loads(line[len("RESULT ") :]))


def main() -> None:
    global ROOT
    p = argparse.ArgumentParser()
    p.add_argument("--names", type=int, default=1000)
    p.add_argument("--queues", type=int, default=20)
    p.add_argument("--workers", type=int, default=50)
    p.add_argument("--events", type=int, default=5_000_000)
    p.add_argument("--rate", type=float, default=300.0, help="tasks per simulated second")
    p.add_argument("--before", metavar="COMMITS", help="first run the same without these commits (comma-separated)")
    p.add_argument("--skip-busy", action="store_true", help="only the scale run")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        ROOT = Path(os.environ.get("ALERTD_BENCH_ROOT", ROOT))
        sys.path.insert(0, str(ROOT))
        child(args)
        return
    argv = [a for a in sys.argv[1:] if a != "--before" and a != args.before]
    print(f"load average before: {os.getloadavg()}")
    if args.before:
        commits = args.before.split(",")
        tree = before_tree(commits)
        try:
            report(f"before (without {', '.join(commits)})", run_side(tree, argv))
        finally:
            shutil.rmtree(tree, ignore_errors=True)
    report("now (working tree)", run_side(ROOT, argv))
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
