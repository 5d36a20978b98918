"""The wait of tasks not yet started, on a virtual clock: it rises while nothing starts (an
outage) and is cleared by start, revocation and orphaning; the latency gauge adds the waits of
tasks started in the last minute."""

from __future__ import annotations

import pytest

from alertd.clock import VirtualClock
from alertd.observe.observer import Observer
from alertd.observe.series import SeriesStore
from alertd.samples import QueueSample
from tests.observe_fixtures import Events, clock_fixture, events_fixture, observer_fixture, series_fixture  # noqa: F401

W = "celery@w1"


def waiting(observer: Observer, clock: VirtualClock) -> dict[str, dict[tuple[str, ...], float]]:
    g = observer.gauges(clock.now())
    return {k: v for k, v in g.items() if "waiting" in k or "latency" in k}


def test_tasks_wait_from_sent_until_they_start(observer: Observer, clock: VirtualClock, events: Events) -> None:
    observer.on_events([events.worker("worker-heartbeat", W)])
    first, second, later = events.uuid(), events.uuid(), events.uuid()
    observer.on_events([events.sent(first, "t.a", "q"), events.sent(later, "t.a", "q", eta=events.eta_in(60))])
    clock.advance(30)
    observer.on_events([events.sent(second, "t.b", "q"), events.worker("worker-heartbeat", W)])
    clock.advance(8)
    g = waiting(observer, clock)
    assert g["task_waiting_oldest_seconds"] == {("t.a", "q"): 38.0, ("t.b", "q"): 8.0}  # the ETA task is not due
    assert g["queue_waiting_oldest_seconds"] == {("q",): 38.0}
    assert g["queue_waiting_p95_seconds"] == {("q",): 38.0}  # nearest rank: of two, the longer
    assert g["queue_latency_p95_seconds"] == {("q",): pytest.approx(38.0, rel=0.02)}  # binned: 2 %
    # prefetched by a worker it still waits; started, it does not
    observer.on_events([events.received(first, "t.a", W), events.worker("worker-heartbeat", W)])
    assert waiting(observer, clock)["queue_waiting_oldest_seconds"] == {("q",): 38.0}
    observer.on_events([events.started(first, W), events.revoked(second, W)])
    clock.advance(30)  # the ETA task is due 8 s ago
    observer.on_events([events.worker("worker-heartbeat", W)])
    g = waiting(observer, clock)
    assert g["task_waiting_oldest_seconds"] == {("t.a", "q"): 8.0}
    assert g["queue_latency_p95_seconds"] == {
        ("q",): pytest.approx(38.0, rel=0.02)
    }  # t.a waited 38 s before it started


def test_the_latency_gauge_falls_a_minute_after_the_backlog_drains(
    observer: Observer, clock: VirtualClock, events: Events
) -> None:
    uuids = [events.uuid() for _ in range(20)]
    observer.on_events([events.worker("worker-online", W)])
    for u in uuids:
        observer.on_events([events.sent(u, "t.a", "q")])
        clock.advance(5)
        observer.on_events([events.worker("worker-heartbeat", W)])
    assert waiting(observer, clock)["queue_latency_p95_seconds"][("q",)] > 90  # nothing has started
    for u in uuids:  # the worker drains the backlog
        observer.on_events([events.received(u, "t.a", W), events.started(u, W), events.succeeded(u, W)])
    g = waiting(observer, clock)
    assert g["queue_waiting_oldest_seconds"] == {}
    assert g["queue_latency_p95_seconds"][("q",)] > 90  # the waits of the tasks just started
    for _ in range(31):
        clock.advance(2)
        observer.on_events([events.worker("worker-heartbeat", W)])
    assert waiting(observer, clock)["queue_latency_p95_seconds"] == {}


def test_a_task_whose_start_was_lost_stops_waiting_once_its_queue_is_sampled_empty(
    observer: Observer, clock: VirtualClock, events: Events
) -> None:
    observer.on_events([events.sent(events.uuid(), "t.a", "q")])  # its other events never reach us
    clock.advance(20)
    assert waiting(observer, clock)["queue_waiting_oldest_seconds"] == {("q",): 20.0}
    observer.on_queue_sample(QueueSample("q", 0, None, clock.now()))
    fresh = events.uuid()
    clock.advance(1)
    observer.on_events([events.sent(fresh, "t.a", "q")])  # sent after the sample: it does wait
    clock.advance(4)
    assert waiting(observer, clock)["queue_waiting_oldest_seconds"] == {("q",): 4.0}


def test_orphaned_tasks_stop_waiting(series: SeriesStore, clock: VirtualClock, events: Events) -> None:
    observer = Observer(series, clock, worker_lost_after=10.0)
    observer.on_events([events.worker("worker-heartbeat", W)])
    u = events.uuid()
    observer.on_events([events.sent(u, "t.a", "q"), events.received(u, "t.a", W)])
    clock.advance(5)
    assert waiting(observer, clock)["queue_waiting_oldest_seconds"] == {("q",): 5.0}
    clock.advance(10)  # W is lost: the task it prefetched went with it
    assert waiting(observer, clock)["queue_waiting_oldest_seconds"] == {}


def test_a_late_task_sent_keeps_the_wait_from_the_receipt(
    observer: Observer, clock: VirtualClock, events: Events
) -> None:
    u = events.uuid()
    observer.on_events([events.received(u, "t.a", W)])
    clock.advance(3)
    observer.on_events([events.sent(u, "t.a", "q")])  # the producer's event overtaken by the worker's
    clock.advance(2)
    assert waiting(observer, clock)["task_waiting_oldest_seconds"] == {("t.a", "q"): 5.0}
