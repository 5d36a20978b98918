"""A task's worker events that reach us before its task-sent (the producer publishes it on its
own connection) are labelled as if they had come in order: one row per task, its queue known,
its wait counted from when it was sent. On a virtual clock, events shaped as Celery 5.7's."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from alertd.clock import VirtualClock
from alertd.observe.exposition import ObserverCollector
from alertd.observe.observer import Observer
from alertd.observe.reorder import MAX_EVENTS_HELD, SENT_GRACE
from alertd.observe.series import SeriesStore
from tests.observe_fixtures import (
    Events,
    clock_fixture,  # noqa: F401 (registers the fixture)
    events_fixture,  # noqa: F401
    observer_fixture,  # noqa: F401
    series_fixture,  # noqa: F401
)

W = "celery@w1"


def in_order_once(observer: Observer, events: Events, name: str = "t.warm") -> None:
    """One task in order: the stream now carries task-sent events."""
    u = events.uuid()
    observer.on_events([events.sent(u, name, "q"), events.received(u, name, W), events.started(u), events.succeeded(u)])


def rows(series: SeriesStore, metric: str, now: float) -> dict[Any, float]:
    return {labels: v for labels, v in series.sums(metric, 600, now).items() if labels[0] == "t.add"}


def test_worker_events_before_their_task_sent_are_counted_once_under_the_queue(
    observer: Observer, series: SeriesStore, clock: VirtualClock, events: Events
) -> None:
    seen: list[dict[str, Any]] = []
    observer.watch(seen.append, frozenset({"task-started", "task-succeeded"}))
    in_order_once(observer, events)
    u = events.uuid()
    sent = events.sent(u, "t.add", "q")  # sent now, reaches us last
    clock.advance(0.25)
    observer.on_events([events.received(u, "t.add", W)])
    clock.advance(0.25)
    observer.on_events([events.started(u)])
    clock.advance(0.25)
    observer.on_events([events.succeeded(u, runtime=0.25)])
    clock.advance(0.25)
    observer.on_events([{**sent, "local_received": clock.now()}])
    now = clock.now()
    for metric in ("tasks_sent", "tasks_received", "tasks_started"):
        assert rows(series, metric, now) == {("t.add", "q", "" if metric == "tasks_sent" else W): 1}, metric
    assert rows(series, "tasks_succeeded", now) == {("t.add", "q", W): 1}
    waits = series.distributions("task_queue_wait_seconds", 600, now)
    # from its task-sent (0.5 s before it started), not from its receipt; the sketch's 1 % error
    assert {k: (d.count, round(d.max, 2)) for k, d in waits.items() if k[0] == "t.add"} == {("t.add", "q", W): (1, 0.5)}
    assert [(e["type"], e["queue"]) for e in seen if e["task"] == "t.add"] == [
        ("task-started", "q"),
        ("task-succeeded", "q"),
    ]
    assert observer.stats()["tasks_reordered"] == 1 and observer.stats()["tasks_held"] == 0
    registry = CollectorRegistry()
    registry.register(ObserverCollector(observer, series, clock, None))
    text = generate_latest(registry).decode()
    assert "alertd_tasks_reordered_total 1.0" in text and "alertd_tasks_held 0.0" in text


def test_a_task_whose_task_sent_never_comes_is_counted_after_the_grace_and_its_name_is_not_held_again(
    observer: Observer, series: SeriesStore, clock: VirtualClock, events: Events
) -> None:
    in_order_once(observer, events)
    u = events.uuid()
    observer.on_events([events.received(u, "t.add", W), events.started(u)])
    assert rows(series, "tasks_started", clock.now()) == {}  # waits for its task-sent
    assert [t["state"] for t in observer.tasks_snapshot() if t["name"] == "t.add"] == []
    clock.advance(SENT_GRACE)
    observer.gauges(clock.now())  # the tick applies what waited its grace out
    assert rows(series, "tasks_started", clock.now()) == {("t.add", "", W): 1}
    assert [t["state"] for t in observer.tasks_snapshot() if t["name"] == "t.add"] == ["started"]
    # t.add's producer sends no task-sent (task_send_sent_event off): its next task is not held
    v = events.uuid()
    observer.on_events([events.received(v, "t.add", W), events.started(v)])
    assert rows(series, "tasks_started", clock.now()) == {("t.add", "", W): 2}
    # until one of its task-sent events is seen again
    observer.on_events(events.lifecycle("t.add", "q"))
    x = events.uuid()
    observer.on_events([events.received(x, "t.add", W)])
    assert observer.stats()["tasks_held"] == 1


def test_a_task_sent_after_the_grace_is_applied_as_it_came(
    observer: Observer, series: SeriesStore, clock: VirtualClock, events: Events
) -> None:
    in_order_once(observer, events)
    u = events.uuid()
    sent = events.sent(u, "t.add", "q")
    observer.on_events([events.received(u, "t.add", W)])
    clock.advance(SENT_GRACE + 1)
    # no tick in between: the late task-sent itself finds the grace over
    observer.on_events([{**sent, "local_received": clock.now()}])
    now = clock.now()
    assert rows(series, "tasks_received", now) == {("t.add", "", W): 1}
    assert rows(series, "tasks_sent", now) == {("t.add", "q", ""): 1}
    (snap,) = [t for t in observer.tasks_snapshot() if t["name"] == "t.add"]
    assert snap["state"] == "received" and snap["queue"] == "q"  # not sent back to waiting
    assert observer.stats()["tasks_reordered"] == 0


def test_without_task_sent_events_nothing_waits(
    observer: Observer, series: SeriesStore, clock: VirtualClock, events: Events
) -> None:
    u = events.uuid()
    observer.on_events([events.received(u, "t.add", W), events.started(u)])
    assert rows(series, "tasks_started", clock.now()) == {("t.add", "", W): 1}
    assert observer.stats()["tasks_held"] == 0


def test_a_held_task_of_a_worker_that_shuts_down_is_taken_from_it_not_left_in_flight(
    series: SeriesStore, clock: VirtualClock, events: Events
) -> None:
    observer = Observer(series, clock, worker_lost_after=10.0)
    observer.on_events([events.worker("worker-online", W)])
    in_order_once(observer, events)
    u = events.uuid()
    observer.on_events([events.received(u, "t.add", W), events.started(u), events.worker("worker-offline", W)])
    assert observer.orphaned(u) and observer.stats()["tasks_held"] == 0
    clock.advance(SENT_GRACE + 60)
    g = observer.gauges(clock.now())
    assert ("t.add", "") not in g["task_oldest_started_seconds"]
    assert [t for t in observer.tasks_snapshot() if t["name"] == "t.add"] == []


def test_held_tasks_are_bounded(series: SeriesStore, clock: VirtualClock, events: Events) -> None:
    observer = Observer(series, clock)
    observer._tasks.reorder.max_held = 3  # the bound, small enough to pass
    in_order_once(observer, events)
    observer.on_events([events.received(events.uuid(), "t.add", W) for _ in range(5)])
    assert observer.stats()["tasks_held"] == 3
    assert rows(series, "tasks_received", clock.now()) == {("t.add", "", W): 2}  # the oldest, as they came


def test_a_held_task_flooding_custom_events_is_applied_as_it_came(
    observer: Observer, series: SeriesStore, clock: VirtualClock, events: Events
) -> None:
    in_order_once(observer, events)
    u = events.uuid()
    observer.on_events([events.received(u, "t.add", W)])
    progress = {**events.started(u), "type": "task-progress"}  # a custom event (send_event), in a loop
    observer.on_events([dict(progress) for _ in range(MAX_EVENTS_HELD)])
    assert observer.stats()["tasks_held"] == 0
    assert rows(series, "tasks_received", clock.now()) == {("t.add", "", W): 1}
