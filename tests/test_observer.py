"""The observer on a virtual clock: joins by uuid, waits with ETA, loss timing, caps, absence, /metrics."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from alertd.clock import VirtualClock
from alertd.observe.exposition import ObserverCollector
from alertd.observe.observer import Observer, exception_class
from alertd.observe.series import SeriesStore
from alertd.samples import QueueSample, WorkerSample
from alertd.sources.health import StreamHealth

T0 = 1_700_000_000.0


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(start=T0)


@pytest.fixture
def series() -> SeriesStore:
    return SeriesStore(bucket_seconds=1, retention_seconds=3600)


def obs(series: SeriesStore, clock: VirtualClock, **kw: Any) -> Observer:
    return Observer(series, clock, worker_lost_after=10.0, heartbeat_misses=2.5, **kw)


def ev(clock: VirtualClock, type: str, **fields: Any) -> dict[str, Any]:
    return {"type": type, "timestamp": clock.now(), "local_received": clock.now(), **fields}


def test_name_and_queue_are_joined_by_uuid(series: SeriesStore, clock: VirtualClock) -> None:
    o = obs(series, clock)
    o.on_events([ev(clock, "task-sent", uuid="u1", name="billing.charge", queue="payments", hostname="gen@web")])
    clock.advance(2)
    o.on_events([ev(clock, "task-received", uuid="u1", name="billing.charge", hostname="celery@w1")])
    clock.advance(1)
    o.on_events([ev(clock, "task-started", uuid="u1", hostname="celery@w1")])
    clock.advance(4)
    o.on_events([ev(clock, "task-failed", uuid="u1", hostname="celery@w1", exception="ValueError('x')", traceback="")])
    now = clock.now()
    key = ("billing.charge", "payments", "celery@w1")
    assert series.sums("tasks_failed", 60, now) == {(*key, "ValueError"): 1}
    assert series.sums("tasks_started", 60, now) == {key: 1}
    wait = series.distributions("task_queue_wait_seconds", 60, now)[key]
    assert wait.count == 1 and wait.max == pytest.approx(3.0, rel=0.03)
    assert series.distributions("task_runtime_seconds", 60, now)[key].max == pytest.approx(4.0, rel=0.03)
    assert o.stats()["tasks_tracked"] == 0  # finished tasks leave the table


def test_queue_wait_counts_from_eta_not_from_sent(series: SeriesStore, clock: VirtualClock) -> None:
    o = obs(series, clock)
    eta = datetime.fromtimestamp(T0 + 60, UTC).isoformat()
    o.on_events([ev(clock, "task-sent", uuid="u", name="t", queue="q", eta=eta)])
    clock.advance(1)
    o.on_events([ev(clock, "task-received", uuid="u", name="t", hostname="w", eta=eta)])
    clock.advance(30)
    g = o.gauges(clock.now())
    assert g["task_oldest_reserved_seconds"] == {}  # waiting for its ETA is not stuck
    clock.advance(31)  # 2 s after the ETA
    assert g != o.gauges(clock.now())
    assert o.gauges(clock.now())["task_oldest_reserved_seconds"][("t", "q")] == pytest.approx(2.0)
    o.on_events([ev(clock, "task-started", uuid="u", hostname="w")])
    d = series.distributions("task_queue_wait_seconds", 300, clock.now())[("t", "q", "w")]
    assert d.max == pytest.approx(2.0, rel=0.03)


def test_killed_worker_is_lost_after_its_heartbeat_window(series: SeriesStore, clock: VirtualClock) -> None:
    o = obs(series, clock)
    o.on_events([ev(clock, "worker-online", hostname="celery@a", freq=5.0)])
    for _ in range(3):
        clock.advance(5)
        o.on_events([ev(clock, "worker-heartbeat", hostname="celery@a", freq=5.0, active=2, processed=9)])
    # window = max(worker_lost_after 10, freq 5 x 2.5) = 12.5 s
    clock.advance(12)
    assert o.gauges(clock.now())["worker_up"] == {("celery@a",): 1.0}
    clock.advance(1)
    g = o.gauges(clock.now())
    assert g["worker_lost"] == {("celery@a",): 1.0} and g["worker_up"] == {("celery@a",): 0.0}
    assert g["workers_online"] == {(): 0.0}
    # a goodbye is "offline", not "lost"
    o.on_events([ev(clock, "worker-online", hostname="celery@b"), ev(clock, "worker-offline", hostname="celery@b")])
    g = o.gauges(clock.now())
    assert g["worker_offline"][("celery@b",)] == 1.0 and g["worker_lost"][("celery@b",)] == 0.0


def test_task_table_is_capped_and_evictions_counted(series: SeriesStore, clock: VirtualClock) -> None:
    o = Observer(series, clock, max_tasks=100)
    o.on_events([ev(clock, "task-received", uuid=f"u{i}", name="t", hostname="w") for i in range(150)])
    assert o.stats()["tasks_tracked"] == 100 and o.stats()["tasks_evicted"] == 50


def test_malformed_events_are_counted_and_skipped(series: SeriesStore, clock: VirtualClock) -> None:
    o = obs(series, clock)
    good = ev(clock, "task-received", uuid="u", name="t", hostname="w")
    o.on_events([None, {}, {"type": 3}, {"type": "task-started"}, {"type": "worker-heartbeat"}, good])  # type: ignore[list-item]
    assert o.stats()["malformed"] == 5
    assert series.sums("tasks_received", 60, clock.now()) == {("t", "", "w"): 1}


def test_duplicate_final_events_count_once(series: SeriesStore, clock: VirtualClock) -> None:
    o = obs(series, clock)
    o.on_events([ev(clock, "task-received", uuid="u", name="t", hostname="w"), ev(clock, "task-started", uuid="u")])
    tb = "Traceback (most recent call last):\n  File x\nbilliard.exceptions.TimeLimitExceeded: TimeLimitExceeded(1,)\n"
    failed = ev(clock, "task-failed", uuid="u", hostname="w", exception="ExceptionWithTraceback()", traceback=tb)
    o.on_events([failed, dict(failed)])
    assert series.sums("tasks_failed", 60, clock.now()) == {("t", "", "w", "TimeLimitExceeded"): 1}
    assert o.stats()["duplicates"] == 1


def test_exception_class_names() -> None:
    assert exception_class("ValueError('x')") == "ValueError"
    assert exception_class("celery.exceptions.SoftTimeLimitExceeded()") == "SoftTimeLimitExceeded"
    assert exception_class("WorkerLostError('Worker exited prematurely: signal 9 (SIGKILL)')") == "WorkerLostError"
    assert exception_class(None) == ""


def test_expected_task_reports_absence_from_start(series: SeriesStore, clock: VirtualClock) -> None:
    o = obs(series, clock)
    o.expect_task("reports.nightly")
    clock.advance(3600)
    assert o.gauges(clock.now())["task_last_succeeded_seconds"] == {("reports.nightly",): 3600.0}
    o.on_events([ev(clock, "task-received", uuid="n", name="reports.nightly", hostname="w")])
    o.on_events([ev(clock, "task-succeeded", uuid="n", hostname="w", runtime=1.0)])
    clock.advance(60)
    assert o.gauges(clock.now())["task_last_succeeded_seconds"][("reports.nightly",)] == 60.0
    # and a restart remembers it
    o2 = obs(series, clock)
    o2.import_state(o.export_state())
    o2.expect_task("reports.nightly")
    assert o2.gauges(clock.now())["task_last_succeeded_seconds"][("reports.nightly",)] == 60.0


def test_watchers_get_enriched_events_of_their_types(series: SeriesStore, clock: VirtualClock) -> None:
    o = obs(series, clock)
    seen: list[dict[str, Any]] = []
    unsubscribe = o.watch(seen.append, frozenset({"task-failed"}))
    o.on_events([ev(clock, "task-sent", uuid="u", name="t.x", queue="q")])
    o.on_events([ev(clock, "task-failed", uuid="u", hostname="w", exception="KeyError('k')", traceback="tb")])
    assert len(seen) == 1
    assert {k: seen[0][k] for k in ("task", "queue", "worker", "exception", "exception_repr")} == {
        "task": "t.x",
        "queue": "q",
        "worker": "w",
        "exception": "KeyError",
        "exception_repr": "KeyError('k')",
    }
    unsubscribe()
    o.on_events([ev(clock, "task-failed", uuid="v", hostname="w", exception="KeyError('k')")])
    assert len(seen) == 1


def test_samples_give_queue_and_worker_gauges(series: SeriesStore, clock: VirtualClock) -> None:
    o = obs(series, clock)
    o.on_events([ev(clock, "worker-heartbeat", hostname="w", active=3, loadavg=[0.5, 0.4, 0.3])])
    o.on_queue_sample(QueueSample("celery", 120, 0, clock.now()))
    o.on_worker_sample(WorkerSample("w", clock.now(), pool_size=4, memory_bytes=200 << 20, cpu_seconds=10.0))
    clock.advance(10)
    o.on_worker_sample(WorkerSample("w", clock.now(), pool_size=4, memory_bytes=210 << 20, cpu_seconds=15.0))
    o.on_events([ev(clock, "worker-heartbeat", hostname="w", active=3, loadavg=[0.5, 0.4, 0.3])])
    g = o.gauges(clock.now())
    assert g["queue_length"] == {("celery",): 120.0} and g["queue_consumers"] == {("celery",): 0.0}
    assert g["worker_cpu_ratio"] == {("w",): 0.5}
    assert g["worker_saturation_ratio"] == {("w",): 0.75}
    assert g["worker_memory_bytes"] == {("w",): float(210 << 20)}
    assert g["worker_loadavg"] == {("w",): 0.5}


def test_metrics_use_celery_exporter_names(series: SeriesStore, clock: VirtualClock) -> None:
    health = StreamHealth(connected=True, events=4)
    o = obs(series, clock, health=health)
    o.on_events(
        [
            ev(clock, "task-sent", uuid="u", name="t", queue="q"),
            ev(clock, "task-received", uuid="u", name="t", hostname="w"),
        ]
    )
    o.on_events(
        [
            ev(clock, "task-started", uuid="u", hostname="w"),
            ev(clock, "task-succeeded", uuid="u", hostname="w", runtime=0.2),
        ]
    )
    o.on_queue_sample(QueueSample("q", 7, 1, clock.now()))
    registry = CollectorRegistry()
    registry.register(ObserverCollector(o, series, clock, health))
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(generate_latest(registry).decode())
        for s in fam.samples
    }
    labels = (("hostname", "w"), ("name", "t"), ("queue_name", "q"))
    assert samples[("celery_task_succeeded_total", labels)] == 1.0
    assert samples[("celery_task_runtime_count", labels)] == 1.0

    def bucket(le: str) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((*labels, ("le", le))))

    assert samples[("celery_task_runtime_bucket", bucket("0.25"))] == 1.0
    assert samples[("celery_task_runtime_bucket", bucket("0.1"))] == 0.0
    assert samples[("celery_queue_length", (("queue_name", "q"),))] == 7.0
    assert samples[("alertd_events_total", ())] == 4.0
    assert samples[("alertd_stream_connected", ())] == 1.0
