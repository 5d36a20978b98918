"""The console's endpoints on the real daemon (virtual clock): the history they chart comes from
the series store (counters, distributions) and the recorder (sampled gauges), read role only."""

from __future__ import annotations

import math
import uuid as uuidlib

from alertd.observe.recorder import Recorder
from alertd.observe.series import SeriesStore
from tests.api_fixtures import (
    Harness,
    api_sqlite_fixture,  # noqa: F401 (registers the fixture)
)

PREFIX = "/api/alertd/v1/console"


def run_task(api: Harness, name: str, queue: str, runtime: float, fail: bool = False) -> None:
    now = api.clock.now()
    u = str(uuidlib.uuid4())
    common = {"uuid": u, "hostname": "celery@w1", "local_received": now}
    final = (
        {"type": "task-failed", "exception": "ValueError('x')", "traceback": "Traceback\n  boom\nValueError: x"}
        if fail
        else {"type": "task-succeeded", "runtime": runtime}
    )
    api.daemon.observer.on_events(
        [
            {"type": "task-sent", "name": name, "queue": queue, "timestamp": now - 0.5, **common},
            {"type": "task-received", "name": name, "timestamp": now - 0.4, **common},
            {"type": "task-started", "timestamp": now - 0.2, **common},
            {**final, "timestamp": now, **common},
        ]
    )


def test_series_steps_sum_whole_buckets_oldest_first() -> None:
    s = SeriesStore(bucket_seconds=5, retention_seconds=60)
    for t in range(100, 130):
        s.count("tasks_succeeded", ("a", "q", "w"), float(t))
        s.observe("task_runtime_seconds", ("a", "q", "w"), 1.0 if t < 115 else 3.0, float(t))
    steps = s.counter_steps("tasks_succeeded", 129.0, 15.0, 3, lambda labels: (labels[0],))
    assert steps == [{}, {("a",): 15.0}, {("a",): 15.0}]
    dists = s.distribution_steps("task_runtime_seconds", 129.0, 15.0, 3, lambda labels: ())
    assert dists[0] == {} and round(dists[1][()].quantile(0.5)) == 1 and round(dists[2][()].quantile(0.5)) == 3
    # older than the retention: empty, never wrong
    assert s.counter_steps("tasks_succeeded", 1000.0, 15.0, 2, lambda labels: ()) == [{}, {}]


def test_recorder_ring_aligns_series_and_forgets_idle_ones() -> None:
    r = Recorder(step=1, points=3)
    r.sample(1.0, {("a", ()): 1.0})
    r.sample(2.0, {("a", ()): 2.0, ("b", ("x",)): 5.0})
    assert r.times() == [1.0, 2.0] and r.series("b", ("x",)) == [None, 5.0]
    for t in (3.0, 4.0, 5.0):
        r.sample(t, {("b", ("x",)): math.nan})
    assert r.times() == [3.0, 4.0, 5.0] and r.series("a") == [None, None, None]
    r.sample(6.0, {})
    assert r.labels_of("a") == [] and r.latest("b", ("x",)) is None


async def test_console_endpoints_chart_real_events(api_sqlite: Harness) -> None:
    api = api_sqlite
    for i in range(20):
        run_task(api, "billing.charge", "payments", 0.1 * (i % 5 + 1), fail=i % 4 == 0)
        run_task(api, "mail.send", "default", 0.01)
        await api.step(1.0)
    ov = await api.get(f"{PREFIX}/overview")
    assert set(ov["tiles"]) >= {"workers_online", "tasks_per_second", "failure_ratio", "firing", "events_per_second"}
    assert ov["units"]["worker_memory_bytes"] == "bytes" and ov["retention"] == 3600
    assert len(ov["times"]) == len(ov["tiles"]["firing"]["series"]) >= 1

    rows = {(r["task"], r["queue"]): r for r in (await api.get(f"{PREFIX}/tasks"))["tasks"]}
    charge = rows[("billing.charge", "payments")]
    assert charge["failed"] == 5 and charge["succeeded"] == 15 and charge["failure_ratio"] == 0.25
    assert 0.19 < charge["runtime_p50"] < 0.31 and charge["wait_p95"] is not None
    assert charge["last_failure"]["exception"] == "ValueError"
    assert rows[("mail.send", "default")]["failure_ratio"] == 0

    detail = await api.get(f"{PREFIX}/task", params={"task": "billing.charge", "range": "600"})
    assert len(detail["times"]) == len(detail["rate"]) == len(detail["runtime_p95"]) and detail["range"] == 600
    assert sum(r * detail["step"] for r in detail["rate"]) == 20
    assert detail["failures"][0]["traceback"].endswith("ValueError: x")
    assert [a["labels"]["alertname"] for a in detail["alerts"]] == ["TaskFailed"]

    workers = (await api.get(f"{PREFIX}/workers"))["workers"]
    assert [w["hostname"] for w in workers] == ["celery@w1"] and "worker_memory_bytes" in workers[0]["series"]
    queues = {q["queue"]: q for q in (await api.get(f"{PREFIX}/queues"))["queues"]}
    assert queues["payments"]["tasks"] == ["billing.charge"]
    values = await api.get(f"{PREFIX}/alert-values")
    assert values["alerts"] == {}  # the event rule has no metric value to chart

    bad = await api.call("GET", f"{PREFIX}/task", params={"task": "x", "range": "soon"})
    assert bad.status == 400 and "range" in bad.body["error"]
    assert (await api.call("GET", f"{PREFIX}/overview", token=None)).status == 401


def test_series_steps_add_up_to_the_window_sums_late_data_included() -> None:
    """Random counts and values, some arriving late into sealed buckets: the steps over the whole
    retention add up to what sums() and distributions() answer for the same window."""
    import random

    rnd = random.Random(7)
    s = SeriesStore(bucket_seconds=5, retention_seconds=300)
    names = [(f"t{i}", f"q{i % 3}", f"w{i % 4}") for i in range(12)]
    t = 1000.0
    for _ in range(3000):
        t += rnd.random() * 0.2
        labels = rnd.choice(names)
        at = t - (rnd.random() * 20 if rnd.random() < 0.1 else 0.0)  # a tenth late by up to 20 s
        s.count("tasks_succeeded", labels, at, 1.0)
        s.observe("task_runtime_seconds", labels, rnd.lognormvariate(0, 1), at)
    by_queue = lambda labels: (labels[1],)  # noqa: E731
    steps = s.counter_steps("tasks_succeeded", t, 25.0, 12, by_queue)
    total: dict[tuple[str, ...], float] = {}
    for part in steps:
        for k, v in part.items():
            total[k] = total.get(k, 0.0) + v
    window: dict[tuple[str, ...], float] = {}
    for labels, v in s.sums("tasks_succeeded", 300.0, t).items():
        window[by_queue(labels)] = window.get(by_queue(labels), 0.0) + v
    assert total == window
    dists = s.distribution_steps("task_runtime_seconds", t, 25.0, 12, lambda labels: ())
    assert sum(p[()].count for p in dists if () in p) == sum(
        d.count for d in s.distributions("task_runtime_seconds", 300.0, t).values()
    )
