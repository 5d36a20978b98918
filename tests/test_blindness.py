"""Blindness is not loss, on a virtual clock: while alertd's own event stream is down, and for a
heartbeat window (plus the workers' own reconnect) after it is back, missing heartbeats judge
nobody; a worker already lost before the gap stays lost."""

from __future__ import annotations

from typing import Any

from alertd.clock import VirtualClock
from alertd.observe.observer import Observer
from alertd.observe.series import SeriesStore
from alertd.sources.health import StreamHealth
from tests.observe_fixtures import Events, clock_fixture, events_fixture, series_fixture  # noqa: F401

W = "celery@w1"


def watching(series: SeriesStore, clock: VirtualClock) -> tuple[Observer, StreamHealth]:
    health = StreamHealth()
    health.mark_connected(clock.now())
    return Observer(series, clock, worker_lost_after=10.0, heartbeat_misses=2.5, health=health), health


def beat(observer: Observer, events: Events, worker: str = W, **fields: Any) -> None:
    observer.on_events([{**events.worker("worker-heartbeat", worker), **fields}])


def lost(observer: Observer, clock: VirtualClock) -> dict[tuple[str, ...], float]:
    return observer.gauges(clock.now())["worker_lost"]


def test_no_worker_is_judged_while_the_stream_is_down(series: SeriesStore, clock: VirtualClock, events: Events) -> None:
    observer, health = watching(series, clock)
    beat(observer, events)
    clock.advance(2)
    health.mark_disconnected(clock.now(), "connection refused")
    clock.advance(300)  # five minutes blind: the worker's silence is ours
    assert lost(observer, clock) == {(W,): 0.0}
    health.mark_connected(clock.now())
    # back after a 300 s gap: its worker reconnects on kombu's backoff, up to 30 s after us,
    # then one heartbeat window (10 s)
    clock.advance(39)
    assert lost(observer, clock) == {(W,): 0.0}
    clock.advance(2)
    assert lost(observer, clock) == {(W,): 1.0}  # it really is gone


def test_a_short_gap_then_heartbeats_again_is_nothing(series: SeriesStore, clock: VirtualClock, events: Events) -> None:
    observer, health = watching(series, clock)
    beat(observer, events)
    health.mark_disconnected(clock.now(), "connection refused")
    clock.advance(10)
    health.mark_connected(clock.now())
    clock.advance(2)  # the worker reconnects to the broker 2 s after us
    beat(observer, events)
    for _ in range(10):
        clock.advance(2)
        beat(observer, events)
        assert lost(observer, clock) == {(W,): 0.0}
    assert observer.stats()["workers_lost"] == 0


def test_a_worker_lost_before_the_gap_stays_lost(series: SeriesStore, clock: VirtualClock, events: Events) -> None:
    observer, health = watching(series, clock)
    beat(observer, events)
    clock.advance(15)
    assert lost(observer, clock) == {(W,): 1.0}
    health.mark_disconnected(clock.now(), "connection refused")
    clock.advance(60)
    assert lost(observer, clock) == {(W,): 1.0}


def test_alertd_starting_judges_restored_workers_only_after_a_window(
    series: SeriesStore, clock: VirtualClock, events: Events
) -> None:
    health = StreamHealth()
    observer = Observer(series, clock, worker_lost_after=10.0, health=health)
    observer.import_state({"workers": {W: {"last_heartbeat": clock.now() - 600, "freq": 2.0}}})
    assert lost(observer, clock) == {(W,): 0.0}  # not connected yet: blind
    health.mark_connected(clock.now())
    clock.advance(9)
    assert lost(observer, clock) == {(W,): 0.0}
    clock.advance(2)
    assert lost(observer, clock) == {(W,): 1.0}


def test_a_restart_seen_across_a_gap_orphans_but_does_not_page(
    series: SeriesStore, clock: VirtualClock, events: Events
) -> None:
    observer, health = watching(series, clock)
    beat(observer, events, pid=100)
    u = events.uuid()
    observer.on_events([events.sent(u, "t.a", "q"), {**events.received(u, "t.a", W), "pid": 100}])
    health.mark_disconnected(clock.now(), "connection refused")
    clock.advance(5)
    health.mark_connected(clock.now())
    beat(observer, events, pid=200)  # a new process: its goodbye may have been in the gap
    g = observer.gauges(clock.now())
    assert g["worker_lost"] == {(W,): 0.0} and g["task_oldest_reserved_seconds"] == {}
    assert observer.stats()["tasks_orphaned"] == 1 and observer.stats()["workers_lost"] == 0
    assert observer.details("worker_lost", {"worker": W})["cause"] == "restart"
