"""/metrics as Prometheus parses it: celery-exporter's names and labels, histograms, alertd's ingest health."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from alertd.clock import VirtualClock
from alertd.observe.exposition import BUCKETS, ObserverCollector
from alertd.observe.observer import Observer
from alertd.observe.reorder import SENT_GRACE
from alertd.observe.series import SeriesStore
from alertd.samples import QueueSample, WorkerSample
from alertd.sources.health import StreamHealth
from tests.observe_fixtures import (
    TIMEOUT_TRACEBACK,
    Events,
    clock_fixture,  # noqa: F401 (registers the fixture)
    events_fixture,  # noqa: F401
    series_fixture,  # noqa: F401
)

W = "celery@w1"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def generate_registry_text(
    observer: Observer, series: SeriesStore, clock: VirtualClock, health: StreamHealth | None
) -> str:
    registry = CollectorRegistry()
    registry.register(ObserverCollector(observer, series, clock, health))
    return generate_latest(registry).decode()


def scrape(observer: Observer, series: SeriesStore, clock: VirtualClock, health: StreamHealth | None) -> Samples:
    text = generate_registry_text(observer, series, clock, health)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def task_labels(name: str, queue: str, hostname: str = W, **extra: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"name": name, "queue_name": queue, "hostname": hostname, **extra}.items()))


@pytest.fixture
def health() -> StreamHealth:
    return StreamHealth(broker="redis://127.0.0.1:6379/0", transport="redis-fast")


@pytest.fixture
def observer(series: SeriesStore, clock: VirtualClock, health: StreamHealth) -> Observer:
    return Observer(series, clock, health=health)


def test_task_counters_use_celery_exporter_names_and_labels(
    observer: Observer, series: SeriesStore, clock: VirtualClock, events: Events, health: StreamHealth
) -> None:
    for runtime in (0.004, 0.2, 0.2, 40.0):
        u = events.uuid()
        observer.on_events([events.sent(u, "t.add", "q"), events.received(u, "t.add"), events.started(u)])
        observer.on_events([events.succeeded(u, runtime=runtime)])
    u, v = events.uuid(), events.uuid()
    observer.on_events([events.sent(u, "t.timeout", "q"), events.received(u, "t.timeout"), events.started(u)])
    clock.advance(1)
    observer.on_events([events.failed(u, exception="ExceptionWithTraceback()", traceback=TIMEOUT_TRACEBACK)])
    observer.on_events([events.received(v, "t.retry_once"), events.started(v), events.retried(v)])
    clock.advance(SENT_GRACE)  # v's task-sent never comes: its events are applied after the grace
    s = scrape(observer, series, clock, health)

    assert s[("celery_task_sent_total", task_labels("t.add", "q", ""))] == 4.0  # no worker has it yet
    assert s[("celery_task_received_total", task_labels("t.add", "q"))] == 4.0
    assert s[("celery_task_succeeded_total", task_labels("t.add", "q"))] == 4.0
    assert s[("celery_task_failed_total", task_labels("t.timeout", "q", exception="TimeLimitExceeded"))] == 1.0
    assert s[("celery_task_retried_total", task_labels("t.retry_once", "", exception="ConnectionError"))] == 1.0
    # every state celery-exporter exports is declared, even with no samples yet
    families = {name for name, _ in s}
    assert {"celery_task_rejected_total", "celery_task_revoked_total"}.isdisjoint(families)
    text = generate_registry_text(observer, series, clock, health)
    for state in ("sent", "received", "started", "succeeded", "failed", "retried", "rejected", "revoked"):
        assert f"# TYPE celery_task_{state}_total counter" in text


def test_runtime_histogram_is_cumulative_with_prometheus_buckets(
    observer: Observer, series: SeriesStore, clock: VirtualClock, events: Events, health: StreamHealth
) -> None:
    runtimes = [0.004, 0.2, 0.2, 40.0]
    for runtime in runtimes:
        u = events.uuid()
        observer.on_events([events.sent(u, "t.add", "q"), events.received(u, "t.add"), events.started(u)])
        observer.on_events([events.succeeded(u, runtime=runtime)])
    clock.advance(7200)  # long past every window: /metrics is since start, not windowed
    s = scrape(observer, series, clock, health)
    labels = task_labels("t.add", "q")

    def bucket(le: str) -> float:
        return s[("celery_task_runtime_bucket", tuple(sorted((*labels, ("le", le)))))]

    assert bucket("0.005") == 1.0 and bucket("0.1") == 1.0 and bucket("0.25") == 3.0
    assert bucket("30.0") == 3.0 and bucket("60.0") == 4.0 and bucket("+Inf") == 4.0
    counts = [bucket(str(b)) for b in BUCKETS]
    assert counts == sorted(counts)  # cumulative: never decreasing
    assert s[("celery_task_runtime_count", labels)] == 4.0
    assert s[("celery_task_runtime_sum", labels)] == pytest.approx(sum(runtimes))
    assert s[("celery_task_queue_wait_seconds_count", labels)] == 4.0


def test_worker_and_queue_gauges(
    observer: Observer, series: SeriesStore, clock: VirtualClock, events: Events, health: StreamHealth
) -> None:
    health.mark_connected(clock.now())  # events flow, so the stream is up: silence then judges workers
    observer.on_events([events.worker("worker-heartbeat", "celery@a", active=2)])
    observer.on_events([events.worker("worker-heartbeat", "celery@b", active=1)])
    observer.on_worker_sample(WorkerSample("celery@a", clock.now(), pool_size=4, queues=("q1", "q2")))
    observer.on_worker_sample(WorkerSample("celery@b", clock.now(), pool_size=8, queues=("q1",)))
    observer.on_queue_sample(QueueSample("q1", 12, 2, clock.now()))
    observer.on_queue_sample(QueueSample("q2", 0, 1, clock.now()))
    s = scrape(observer, series, clock, health)
    assert s[("celery_worker_up", (("hostname", "celery@a"),))] == 1.0
    assert s[("celery_worker_tasks_active", (("hostname", "celery@a"),))] == 2.0
    assert s[("celery_queue_length", (("queue_name", "q1"),))] == 12.0
    assert s[("celery_active_consumer_count", (("queue_name", "q1"),))] == 2.0
    assert s[("celery_active_worker_count", (("queue_name", "q1"),))] == 2.0
    assert s[("celery_active_process_count", (("queue_name", "q1"),))] == 12.0
    assert s[("celery_active_worker_count", (("queue_name", "q2"),))] == 1.0
    assert s[("celery_workers_online", ())] == 2.0
    assert s[("alertd_celery_worker_pool_size", (("hostname", "celery@b"),))] == 8.0
    # a worker that stops heartbeating is 0, not absent: dashboards and alerts see it go
    clock.advance(60)
    s = scrape(observer, series, clock, health)
    assert s[("celery_worker_up", (("hostname", "celery@a"),))] == 0.0
    assert ("celery_active_worker_count", (("queue_name", "q1"),)) not in s
    assert s[("celery_workers_online", ())] == 0.0


def test_alertd_ingest_health(series: SeriesStore, clock: VirtualClock, events: Events, health: StreamHealth) -> None:
    observer = Observer(series, clock, health=health, max_tasks=2)
    health.mark_connected(clock.now())
    health.mark_disconnected(clock.now() + 1, "connection reset")
    health.mark_connected(clock.now() + 2)
    health.events, health.malformed, health.last_event_at = 40, 3, clock.now() + 2
    observer.on_events([None, events.received(events.uuid(), "t"), events.received(events.uuid(), "t")])
    observer.on_events([events.received(events.uuid(), "t")])
    small = SeriesStore(max_series=1)
    small.count("tasks_sent", ("a", "q", ""), clock.now())
    small.count("tasks_sent", ("b", "q", ""), clock.now())
    s = scrape(observer, small, clock, health)
    assert s[("alertd_events_total", ())] == 40.0
    assert s[("alertd_events_malformed_total", ())] == 3.0 + 1.0  # the source's and the observer's
    assert s[("alertd_stream_connected", ())] == 1.0
    assert s[("alertd_stream_reconnects_total", ())] == 1.0
    assert ("alertd_stream_decoder_process", ()) not in s  # a source says where it decodes; this one did not
    assert s[("alertd_last_event_timestamp_seconds", ())] == clock.now() + 2
    health.decoder = "process"
    assert scrape(observer, small, clock, health)[("alertd_stream_decoder_process", ())] == 1.0
    health.decoder = "loop"  # the child failed: the loop decodes
    assert scrape(observer, small, clock, health)[("alertd_stream_decoder_process", ())] == 0.0
    assert s[("alertd_tasks_tracked", ())] == 2.0
    assert s[("alertd_tasks_evicted_total", ())] == 1.0
    assert s[("alertd_workers_tracked", ())] == 1.0
    assert s[("alertd_series_dropped_total", (("metric", "tasks_sent"),))] == 1.0


def test_without_stream_health_the_observer_counts_events(
    series: SeriesStore, clock: VirtualClock, events: Events
) -> None:
    observer = Observer(series, clock)
    observer.on_events([events.received(events.uuid(), "t"), {"type": None}])
    s = scrape(observer, series, clock, None)
    assert s[("alertd_events_total", ())] == 2.0 and s[("alertd_events_malformed_total", ())] == 1.0
    assert ("alertd_stream_connected", ()) not in s
