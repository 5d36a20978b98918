"""Observer benchmark, in process: events/s through on_events, gauges() cost, memory of a full table
and of busy series, and the cost of reading windows.

No broker: this measures the observer and the series store alone (bench/ingest.py measures the
whole Redis path). Events are shaped like the ones a real Celery 5.7 worker publishes.

    .venv/bin/python bench/observe.py [--events 1000000] [--in-flight 100000]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alertd.clock import VirtualClock  # noqa: E402
from alertd.observe.observer import Observer  # noqa: E402
from alertd.observe.series import SeriesStore  # noqa: E402

T0 = 1_700_000_000.0


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def lifecycle(i: int, at: float) -> list[dict[str, Any]]:
    """sent, received, started, then succeeded (95 %) or failed, as Celery publishes them."""
    uid = str(uuid.uuid4())
    name, queue, worker = f"app.tasks.t{i % 50}", f"q{i % 5}", f"celery@w{i % 8}"
    common = {"utcoffset": 0.0, "pid": 4242, "clock": i, "local_received": at}
    sent = {
        **common,
        "hostname": "gen1@web",
        "uuid": uid,
        "root_id": uid,
        "parent_id": None,
        "name": name,
        "args": "(1, 2)",
        "kwargs": "{}",
        "retries": 0,
        "eta": None,
        "expires": None,
        "queue": queue,
        "exchange": "",
        "routing_key": queue,
        "timestamp": at,
        "type": "task-sent",
    }
    received = {
        **common,
        "hostname": worker,
        "uuid": uid,
        "name": name,
        "args": "(1, 2)",
        "kwargs": "{}",
        "root_id": uid,
        "parent_id": None,
        "retries": 0,
        "eta": None,
        "expires": None,
        "timestamp": at + 0.01,
        "type": "task-received",
    }
    started = {**common, "hostname": worker, "uuid": uid, "timestamp": at + 0.02, "type": "task-started"}
    if i % 20 == 0:
        end = {
            **common,
            "hostname": worker,
            "uuid": uid,
            "exception": "ValueError('x')",
            "traceback": "Traceback (most recent call last):\n  File x\nValueError: x\n",
            "timestamp": at + 0.05,
            "type": "task-failed",
        }
    else:
        end = {
            **common,
            "hostname": worker,
            "uuid": uid,
            "result": "3",
            "runtime": 0.03,
            "timestamp": at + 0.05,
            "type": "task-succeeded",
        }
    return [sent, received, started, end]


def bench_throughput(n_events: int) -> None:
    clock = VirtualClock(T0)
    observer = Observer(SeriesStore(), clock)
    batches: list[list[dict[str, Any]]] = []
    batch: list[dict[str, Any]] = []
    i = 0
    while len(batches) * 64 + len(batch) < n_events:
        at = T0 + i * 0.001  # 1000 tasks/s of event time: windows and buckets roll over
        batch.extend(lifecycle(i, at))
        if i % 100 == 0:
            batch.append(
                {
                    "hostname": f"celery@w{i % 8}",
                    "freq": 2.0,
                    "active": 2,
                    "processed": i,
                    "loadavg": [0.5, 0.4, 0.3],
                    "sw_ident": "py-celery",
                    "sw_ver": "5.7.0",
                    "sw_sys": "Linux",
                    "timestamp": at,
                    "local_received": at,
                    "type": "worker-heartbeat",
                }
            )
        if len(batch) >= 64:
            batches.append(batch)
            batch = []
        i += 1
    batches.append(batch)
    total = sum(len(b) for b in batches)
    gc.collect()
    t = time.perf_counter()
    for b in batches:
        observer.on_events(b)
    took = time.perf_counter() - t
    print(f"on_events: {total:,} events in {took:.2f} s = {total / took:,.0f} events/s (batches of 64)")
    print(f"  stats: {observer.stats()}")


def bench_full_table(in_flight: int) -> None:
    clock = VirtualClock(T0)
    base = rss_mib()
    observer = Observer(SeriesStore(), clock, max_tasks=in_flight)
    # Tasks received and started but never finished: the table fills to its cap.
    for i in range(in_flight):
        sent, received, started, _ = lifecycle(i, T0 + i * 0.0001)
        observer.on_events([sent, received] if i % 2 else [sent, received, started])
    gc.collect()
    print(f"full table: {observer.stats()['tasks_tracked']:,} tasks in flight, RSS +{rss_mib() - base:.0f} MiB")
    clock.advance(60)
    runs = 20
    t = time.perf_counter()
    for _ in range(runs):
        g = observer.gauges(clock.now())
    took = (time.perf_counter() - t) / runs
    print(
        f"gauges(): {took * 1000:.1f} ms with {in_flight:,} in flight "
        f"({len(g['task_oldest_started_seconds'])} started / {len(g['task_oldest_reserved_seconds'])} reserved series)"
    )
    # A worker says goodbye holding 1/8 of the table: its tasks are orphaned in one pass.
    offline = {"hostname": "celery@w0", "pid": 4242, "timestamp": clock.now(), "local_received": clock.now()}
    t = time.perf_counter()
    observer.on_events([{**offline, "type": "worker-offline"}])
    took = time.perf_counter() - t
    print(
        f"worker-offline: {took * 1000:.1f} ms to orphan its tasks in a table of {in_flight:,} "
        f"({observer.stats().get('tasks_orphaned', 0):,} orphaned)"
    )
    # A flood of tasks that are sent and never finish: every new one evicts the oldest.
    flood = [lifecycle(in_flight + i, T0 + 100 + i * 0.0001)[0] for i in range(200_000)]
    t = time.perf_counter()
    for k in range(0, len(flood), 64):
        observer.on_events(flood[k : k + 64])
    took = time.perf_counter() - t
    print(
        f"evicting: {len(flood):,} task-sent into a full table in {took:.2f} s = {len(flood) / took:,.0f} events/s "
        f"(evicted {observer.stats()['tasks_evicted']:,})"
    )


def _fill_series(store: SeriesStore, n_series: int, counters: bool, dists: bool) -> int:
    """Busy series: every 5 s bucket of the hour holds a count and 3 runtimes from 10 ms to 10 s."""
    values = [0.01 * (1 + (i * 7919) % 1000) for i in range(3000)]
    i = 0
    for step in range(0, 3600, 5):
        for k in range(n_series):
            labels = (f"t{k}", "q", "w")
            if counters:
                store.count("tasks_succeeded", labels, T0 + step, 3)
            if dists:
                for _ in range(3):
                    store.observe("task_runtime_seconds", labels, values[i % 3000], T0 + step)
                    i += 1
    return i


def bench_series(n_series: int = 400) -> None:
    """Memory of series busy in every bucket of the hour (tracemalloc), and the cost of reading windows."""
    for kind, counters, dists in (("counter", True, False), ("distribution", False, True)):
        tracemalloc.start()
        store = SeriesStore(bucket_seconds=5, retention_seconds=3600, max_series=100_000)
        _fill_series(store, n_series, counters, dists)
        used = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        print(f"series: {used / n_series / 1024:.0f} KiB per busy {kind} series (5 s buckets, 1 h)")
        del store
    store = SeriesStore(bucket_seconds=5, retention_seconds=3600, max_series=100_000)
    t = time.perf_counter()
    n = _fill_series(store, n_series, False, True)
    print(f"  observe: {n / (time.perf_counter() - t):,.0f} values/s")
    _fill_series(store, n_series, True, False)
    now = T0 + 3595
    for window in (600.0, 3600.0):
        t = time.perf_counter()
        store.sums("tasks_succeeded", window, now)
        summed = time.perf_counter() - t
        t = time.perf_counter()
        store.distributions("task_runtime_seconds", window, now)
        merged = time.perf_counter() - t
        print(
            f"  {window / 60:.0f} m window over {n_series} series: sums {summed * 1000:.0f} ms, "
            f"distributions {merged * 1000:.0f} ms"
        )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--in-flight", type=int, default=100_000)
    args = p.parse_args()
    bench_throughput(args.events)
    bench_full_table(args.in_flight)
    bench_series()


if __name__ == "__main__":
    main()
