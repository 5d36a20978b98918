"""Orphaned tasks on a virtual clock: a worker that is lost, shuts down or restarts takes the tasks
it had started or reserved out of "in flight"; a redelivery brings them back."""

from __future__ import annotations

from typing import Any

from alertd.clock import VirtualClock
from alertd.observe.observer import Observer
from alertd.observe.series import SeriesStore
from tests.observe_fixtures import Events, clock_fixture, events_fixture, observer_fixture, series_fixture  # noqa: F401

W = "celery@w1"
OTHER = "celery@w2"


def feed_held(observer: Observer, events: Events, worker: str = W, pid: int = 28272) -> tuple[str, list[str]]:
    """One task running on `worker` and two reserved behind it; returns their uuids."""
    running, reserved = events.uuid(), [events.uuid(), events.uuid()]
    batch: list[dict[str, Any]] = [
        events.sent(running, "t.long", "q"),
        {**events.received(running, "t.long", worker), "pid": pid},
        {**events.started(running, worker), "pid": pid},
    ]
    for u in reserved:
        batch += [events.sent(u, "t.short", "q"), {**events.received(u, "t.short", worker), "pid": pid}]
    observer.on_events(batch)
    return running, reserved


def beat(observer: Observer, events: Events, worker: str = W, pid: int = 28272, type: str = "worker-heartbeat") -> None:
    observer.on_events([{**events.worker(type, worker), "pid": pid}])


def test_a_lost_worker_takes_its_running_and_reserved_tasks_out_of_flight(
    observer: Observer, series: SeriesStore, clock: VirtualClock, events: Events
) -> None:
    beat(observer, events, type="worker-online")
    feed_held(observer, events)
    waiting = events.uuid()
    observer.on_events([events.sent(waiting, "t.short", "q")])  # in the broker: no worker holds it
    clock.advance(5)
    g = observer.gauges(clock.now())
    assert g["task_oldest_started_seconds"] == {("t.long", "q"): 5.0}
    assert g["task_oldest_reserved_seconds"] == {("t.short", "q"): 5.0}
    clock.advance(6)  # 11 s without a heartbeat: over the 10 s window
    g = observer.gauges(clock.now())
    assert g["worker_lost"] == {(W,): 1.0}
    assert g["task_oldest_started_seconds"] == {} and g["task_oldest_reserved_seconds"] == {}
    assert g["task_waiting_oldest_seconds"] == {("t.short", "q"): 11.0}  # the sent one still waits
    assert series.sums("tasks_orphaned", 60, clock.now()) == {("t.long", "q", W): 1, ("t.short", "q", W): 2}
    assert observer.stats()["tasks_orphaned"] == 3 and observer.stats()["tasks_tracked"] == 1
    details = observer.details("worker_lost", {"worker": W})
    assert details["cause"] == "heartbeats" and details["orphaned"] == 3
    assert details["orphaned_tasks"] == "2 t.short (reserved), 1 t.long (running)"
    assert details["running"] == 1 and details["reserved"] == 2 and details["redelivered"] == 0
    (view,) = observer.workers_snapshot()
    assert view["state"] == "lost" and view["last_loss"]["orphaned"] == 3
    # Judged once: a later evaluation orphans nothing more and counts nothing twice.
    clock.advance(30)
    observer.gauges(clock.now())
    assert observer.stats()["tasks_orphaned"] == 3 and observer.stats()["workers_lost"] == 1


def test_a_redelivered_task_rejoins_the_table_on_the_worker_that_got_it(
    observer: Observer, series: SeriesStore, clock: VirtualClock, events: Events
) -> None:
    beat(observer, events)
    beat(observer, events, OTHER, pid=555)
    running, _ = feed_held(observer, events)
    clock.advance(11)
    beat(observer, events, OTHER, pid=555)
    observer.gauges(clock.now())  # W is lost
    # acks_late: the broker redelivers; the task-received carries only name, not the queue
    observer.on_events([{**events.received(running, "t.long", OTHER), "pid": 555}, events.started(running, OTHER)])
    clock.advance(2)
    g = observer.gauges(clock.now())
    assert g["task_oldest_started_seconds"] == {("t.long", "q"): 2.0}  # the queue is remembered
    assert observer.stats()["tasks_redelivered"] == 1
    assert observer.details("worker_lost", {"worker": W})["redelivered"] == 1
    observer.on_events([events.succeeded(running, OTHER)])
    assert series.sums("tasks_succeeded", 60, clock.now()) == {("t.long", "q", OTHER): 1}
    assert observer.stats()["tasks_tracked"] == 0


def test_late_news_from_a_worker_judged_lost_is_counted_under_its_labels(
    observer: Observer, series: SeriesStore, clock: VirtualClock, events: Events
) -> None:
    beat(observer, events)
    running, _ = feed_held(observer, events)
    clock.advance(11)
    observer.gauges(clock.now())  # lost (a network partition, say)
    beat(observer, events)  # it was alive after all; same process
    observer.on_events([events.succeeded(running, W)])
    assert series.sums("tasks_succeeded", 60, clock.now()) == {("t.long", "q", W): 1}
    assert observer.stats()["tasks_tracked"] == 0 and observer.stats()["tasks_redelivered"] == 0


def test_a_goodbye_orphans_what_is_left_without_a_loss(
    observer: Observer, series: SeriesStore, clock: VirtualClock, events: Events
) -> None:
    beat(observer, events)
    feed_held(observer, events)
    beat(observer, events, type="worker-offline")
    g = observer.gauges(clock.now())
    assert g["task_oldest_started_seconds"] == {} and g["task_oldest_reserved_seconds"] == {}
    assert g["worker_lost"] == {(W,): 0.0}
    assert observer.stats()["tasks_orphaned"] == 3 and observer.stats()["workers_lost"] == 0
    assert observer.details("worker_offline", {"worker": W})["cause"] == "offline"


def test_a_new_process_under_the_same_hostname_is_a_loss_shown_for_a_minute(
    observer: Observer, series: SeriesStore, clock: VirtualClock, events: Events
) -> None:
    beat(observer, events, pid=100)
    feed_held(observer, events, pid=100)
    clock.advance(3)
    # The restarted process gets a task (maybe before its worker-online reaches us): it stays.
    fresh = events.uuid()
    observer.on_events([events.sent(fresh, "t.short", "q"), {**events.received(fresh, "t.short", W), "pid": 200}])
    beat(observer, events, pid=200, type="worker-online")
    g = observer.gauges(clock.now())
    assert g["worker_up"] == {(W,): 1.0} and g["worker_lost"] == {(W,): 1.0}
    assert g["task_oldest_started_seconds"] == {}
    assert g["task_oldest_reserved_seconds"] == {("t.short", "q"): 0.0}  # the new process's task
    details = observer.details("worker_lost", {"worker": W})
    assert details["cause"] == "restart" and details["pid"] == 100 and details["orphaned"] == 3
    for _ in range(30):
        clock.advance(2)
        beat(observer, events, pid=200)
    assert observer.gauges(clock.now())["worker_lost"] == {(W,): 0.0}  # shown for a minute, then resolved
    assert observer.stats()["workers_lost"] == 1


def test_a_worker_known_only_from_task_events_is_not_judged(
    observer: Observer, clock: VirtualClock, events: Events
) -> None:
    # Without heartbeats (`--without-heartbeat`, or none received yet) silence says nothing.
    feed_held(observer, events)
    clock.advance(600)
    g = observer.gauges(clock.now())
    assert g["worker_lost"] == {} and g["task_oldest_started_seconds"] == {("t.long", "q"): 600.0}


def test_orphaned_tasks_on_metrics(
    observer: Observer, series: SeriesStore, clock: VirtualClock, events: Events
) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from alertd.observe.exposition import ObserverCollector

    beat(observer, events)
    feed_held(observer, events)
    clock.advance(11)
    registry = CollectorRegistry()
    registry.register(ObserverCollector(observer, series, clock, None))
    text = generate_latest(registry).decode()
    assert 'celery_task_orphaned_total{hostname="celery@w1",name="t.long",queue_name="q"} 1.0' in text
    assert 'celery_task_orphaned_total{hostname="celery@w1",name="t.short",queue_name="q"} 2.0' in text
    assert "alertd_workers_lost_total 1.0" in text
