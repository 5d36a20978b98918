"""Clock skew: liveness and ages on alertd's receive clock; a queue wait, which spans the producer's
clock and the worker's, corrected when they are clearly apart; a skewed worker shown, never
dropped; and on the kombu path, the senders' own timestamps rather than Celery's "localized" ones."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from celery import Celery

from alertd.clock import VirtualClock, WallClock
from alertd.observe.observer import Observer
from alertd.observe.series import SeriesStore
from alertd.sources import open_event_source
from alertd.sources.health import StreamHealth
from tests.conftest import CeleryWorker, RedisServer
from tests.observe_fixtures import Events, clock_fixture, producer_fixture, series_fixture, wait_for  # noqa: F401

W = "celery@w1"


def waits(series: SeriesStore, clock: VirtualClock) -> list[float]:
    d = series.distributions("task_queue_wait_seconds", 600, clock.now())[("t.a", "q", W)]
    return [d.min, d.max]


def run_task(observer: Observer, clock: VirtualClock, producer: Events, worker: Events, wait: float) -> str:
    u = producer.uuid()
    observer.on_events([producer.sent(u, "t.a", "q"), worker.received(u, "t.a", W)])
    clock.advance(wait)
    observer.on_events([worker.started(u, W)])
    return u


def test_a_wait_across_skewed_clocks_is_measured_on_ours(series: SeriesStore, clock: VirtualClock) -> None:
    observer = Observer(series, clock, max_clock_skew=2.0)
    producer = Events(clock, skew=-600.0)  # the web server's clock is ten minutes behind
    worker = Events(clock, skew=30.0)  # the worker's half a minute ahead
    observer.on_events([worker.worker("worker-heartbeat", W)])
    run_task(observer, clock, producer, worker, wait=3.0)
    assert waits(series, clock) == [pytest.approx(3.0, rel=0.03)] * 2  # not 633 s
    # liveness and ages on our clock: online, and the running task 10 s old, whatever it says
    clock.advance(10)
    observer.on_events([worker.worker("worker-heartbeat", W)])
    g = observer.gauges(clock.now())
    assert g["worker_up"] == {(W,): 1.0}
    assert g["task_oldest_started_seconds"] == {("t.a", "q"): 10.0}
    (view,) = observer.workers_snapshot()
    assert view["clock_offset"] == pytest.approx(30.0) and view["clock_skewed"] is True


def test_clocks_close_together_keep_celerys_own_timings(series: SeriesStore, clock: VirtualClock) -> None:
    observer = Observer(series, clock, max_clock_skew=2.0)
    producer, worker = Events(clock, skew=0.4), Events(clock)  # transit and NTP noise
    observer.on_events([worker.worker("worker-heartbeat", W)])
    run_task(observer, clock, producer, worker, wait=3.0)
    assert waits(series, clock) == [pytest.approx(2.6, rel=0.03)] * 2  # the timestamps, as they are
    (view,) = observer.workers_snapshot()
    assert view["clock_offset"] == 0.0 and view["clock_skewed"] is False


def test_a_worker_a_day_off_is_shown_and_counted_never_dropped(series: SeriesStore, clock: VirtualClock) -> None:
    observer = Observer(series, clock)
    worker = Events(clock, skew=-86400.0)
    observer.on_events([worker.worker("worker-online", W), worker.worker("worker-heartbeat", W)])
    u = worker.uuid()
    observer.on_events([worker.received(u, "t.a", W), worker.started(u, W), worker.succeeded(u, W)])
    assert series.sums("tasks_succeeded", 60, clock.now()) == {("t.a", "", W): 1}
    assert observer.stats()["malformed"] == 0
    (view,) = observer.workers_snapshot()
    assert view["state"] == "online" and view["clock_skewed"] is True
    assert view["clock_offset"] == pytest.approx(-86400.0)


SENDER = """
import sys
from celery import Celery
app = Celery("tokyo", broker=sys.argv[1])
with app.connection_for_write() as conn:
    dispatcher = app.events.Dispatcher(conn, hostname="celery@tokyo")
    dispatcher.send("worker-heartbeat", freq=2.0)
    dispatcher.close()
"""


async def test_the_kombu_path_keeps_the_senders_own_timestamps(redis_server: RedisServer) -> None:
    # A real Celery event dispatcher in UTC+9 (TZ=JST-9): Celery's receiver would shift its
    # timestamps by 9 hours (its utcoffset minus ours); alertd wants the sender's epoch seconds.
    got: list[dict[str, Any]] = []
    source = open_event_source(redis_server.url, got.extend, WallClock(), StreamHealth(), transport="kombu")
    await source.start()
    try:
        await source.wait_connected()
        env = {**os.environ, "TZ": "JST-9"}
        sender = await asyncio.create_subprocess_exec(sys.executable, "-c", SENDER, redis_server.url, env=env)
        assert await asyncio.wait_for(sender.wait(), 20) == 0
        await wait_for(lambda: got, what="the heartbeat")
        (event,) = got
        assert event["utcoffset"] == -9.0  # Celery's sign: hours west of UTC
        assert abs(event["timestamp"] - time.time()) < 5.0  # not 9 h ahead
    finally:
        await source.stop()


async def test_a_worker_in_another_time_zone_on_the_kombu_path(
    redis_server: RedisServer, celery_worker_factory: Callable[..., CeleryWorker], producer: Callable[..., Celery]
) -> None:
    # A real worker in UTC+9, a producer here (UTC), Celery's own receiver: its task's queue wait
    # must be its wait, not nine hours, and its clock is not "skewed".
    clock = WallClock()
    series = SeriesStore(bucket_seconds=1, retention_seconds=600)
    observer = Observer(series, clock)
    source = open_event_source(redis_server.url, observer.on_events, clock, StreamHealth(), transport="kombu")
    await source.start()
    try:
        await source.wait_connected()
        worker = celery_worker_factory(redis_server.url, extra_env={"TZ": "JST-9"})
        producer(redis_server.url).send_task("t.add", (1, 2), queue="celery")
        key = ("t.add", "celery", worker.hostname)
        await wait_for(lambda: key in series.sums("tasks_succeeded", 600, clock.now()), what="the task to run")
        wait = series.distributions("task_queue_wait_seconds", 600, clock.now())[key]
        assert wait.count == 1 and wait.max < 2.0, wait.max
        (view,) = observer.workers_snapshot()
        assert view["state"] == "online" and view["clock_skewed"] is False
    finally:
        await source.stop()
