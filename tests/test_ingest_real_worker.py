"""Events from a real Celery worker, on Redis and on RabbitMQ (both paths), through the sources into the observer.

These are the foundation's acceptance tests: tasks that succeed, fail, retry and time out give the
right per-task-name counts, runtimes and queue waits; a SIGKILLed worker is seen lost within its
heartbeat window; a dead Redis is reconnected to by itself, and the gap shows in stream health.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from celery import Celery

from alertd.clock import WallClock
from alertd.observe.observer import Observer
from alertd.observe.reorder import SENT_GRACE
from alertd.observe.series import SeriesStore
from alertd.sources import open_event_source
from alertd.sources.health import StreamHealth
from alertd.sources.redis_events import event_channel_pattern
from tests.conftest import CeleryWorker
from tests.waiting import wait_for


@pytest.fixture
def producer() -> Iterator[Callable[..., Celery]]:
    """A fresh producer app per broker (tests.celeryapp's shared pool is closed between tests)."""
    apps: list[Celery] = []

    def make(broker: str, **transport_options: Any) -> Celery:
        app = Celery("producer", broker=broker, set_as_current=False)
        app.conf.task_send_sent_event = True
        app.conf.broker_transport_options = transport_options
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


def make_pipeline(
    broker: str, sent_grace: float = SENT_GRACE, **source_kw: Any
) -> tuple[Observer, SeriesStore, StreamHealth, Any]:
    clock = WallClock()
    series = SeriesStore(bucket_seconds=1, retention_seconds=600)
    health = StreamHealth()
    # restart_grace 1 s: a worker that said goodbye reads offline after 1 s, not the default 2 min
    observer = Observer(
        series,
        clock,
        worker_lost_after=3.0,
        heartbeat_misses=1.5,
        restart_grace=1.0,
        health=health,
        sent_grace=sent_grace,
    )
    source = open_event_source(broker, observer.on_events, clock, health, **source_kw)
    return observer, series, health, source


def per_task(series: SeriesStore, metric: str, now: float, queue: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for labels, v in series.sums(metric, 600, now).items():
        if labels[1] == queue:
            out[labels[0]] = out.get(labels[0], 0) + v
    return out


async def run_task_mix(celery_app: Celery, queue: str, series: SeriesStore) -> None:
    now = WallClock().now
    # Once the stream has carried a task-sent, a task whose worker events overtake its own
    # task-sent waits for it (alertd.observe.reorder); before the first one nothing can tell
    # whether task-sent events are on. A first task, so that every task of the mix is covered.
    celery_app.send_task("t.sleep", (0,), queue=queue)
    await wait_for(lambda: per_task(series, "tasks_sent", now(), queue) == {"t.sleep": 1}, what="a first task-sent")
    for i in range(3):
        celery_app.send_task("t.add", (i, i), queue=queue)
    for _ in range(2):
        celery_app.send_task("t.fail", ("nope",), queue=queue)
    celery_app.send_task("t.retry_once", queue=queue)
    celery_app.send_task("t.timeout", (5.0,), queue=queue)

    def done() -> bool:
        ok = per_task(series, "tasks_succeeded", now(), queue)
        failed = per_task(series, "tasks_failed", now(), queue)
        return (
            ok.get("t.add") == 3 and ok.get("t.retry_once") == 1 and failed.get("t.fail") == 2 and "t.timeout" in failed
        )

    await wait_for(done, timeout=60, what="every task of the mix to finish")


def assert_task_mix(series: SeriesStore, queue: str, worker: CeleryWorker) -> None:
    now = WallClock().now()
    failed = series.sums("tasks_failed", 600, now)
    exceptions = {labels[0]: labels[3] for labels in failed if labels[1] == queue}
    assert exceptions == {"t.fail": "ValueError", "t.timeout": "TimeLimitExceeded"}
    assert all(labels[2] == worker.hostname for labels in failed)
    retried = {labels[0]: labels[3] for labels in series.sums("tasks_retried", 600, now) if labels[1] == queue}
    assert retried == {"t.retry_once": "ConnectionError"}
    sent = {"t.sleep": 1, "t.add": 3, "t.fail": 2, "t.retry_once": 2, "t.timeout": 1}
    assert per_task(series, "tasks_sent", now, queue) == sent
    runtimes = series.distributions("task_runtime_seconds", 600, now)
    add_runtime = runtimes[("t.add", queue, worker.hostname)]
    assert add_runtime.count == 3 and 0 <= add_runtime.max < 1.0
    # the hard time limit (1 s) kills the task: its runtime (failed - started) is about 1 s
    timeout_runtime = runtimes[("t.timeout", queue, worker.hostname)]
    assert 0.9 <= timeout_runtime.max < 4.0
    waits = series.distributions("task_queue_wait_seconds", 600, now)
    assert waits[("t.add", queue, worker.hostname)].count == 3
    assert 0 <= waits[("t.add", queue, worker.hostname)].max < 10


async def test_redis_worker_events_counts_runtimes_waits_and_loss(
    redis_url: str, unique: str, celery_worker_factory: Any, producer: Any
) -> None:
    observer, series, health, source = make_pipeline(redis_url)
    await source.start()
    try:
        await source.wait_connected()
        queue = f"q-{unique}"
        worker: CeleryWorker = celery_worker_factory(redis_url, queues=[queue])
        await wait_for(
            lambda: observer.gauges(WallClock().now())["worker_up"].get((worker.hostname,)) == 1.0,
            what="worker heartbeat",
        )
        await run_task_mix(producer(redis_url), queue, series)
        assert_task_mix(series, queue, worker)
        assert health.connected and health.events > 20 and health.malformed == 0

        worker.kill()  # SIGKILL: no worker-offline
        killed_at = WallClock().now()

        def lost() -> bool:
            g = observer.gauges(WallClock().now())
            return g["worker_lost"].get((worker.hostname,)) == 1.0

        await wait_for(lost, timeout=15, what="the killed worker to be reported lost")
        took = WallClock().now() - killed_at
        # window = max(worker_lost_after 3 s, freq 2 s x 1.5) = 3 s after the last heartbeat (<= 2 s before the kill)
        assert took <= 3.0 + 2.0 + 1.0, took
        g = observer.gauges(WallClock().now())
        assert g["worker_up"][(worker.hostname,)] == 0.0 and g["worker_offline"][(worker.hostname,)] == 0.0
    finally:
        await source.stop()


@pytest.mark.parametrize("transport", ["auto", "kombu"])
async def test_rabbitmq_worker_events(
    amqp_url: str, unique: str, celery_worker_factory: Any, producer: Any, transport: str
) -> None:
    # "auto" is the AMQP fast path (alertd's reader in the loop), "kombu" Celery's receiver.
    observer, series, health, source = make_pipeline(amqp_url, transport=transport)
    await source.start()
    try:
        await source.wait_connected(15)
        queue = f"q-{unique}"
        worker: CeleryWorker = celery_worker_factory(amqp_url, queues=[queue])
        await run_task_mix(producer(amqp_url), queue, series)
        assert_task_mix(series, queue, worker)
        assert health.transport == {"auto": "amqp-fast", "kombu": "kombu"}[transport] and health.connected
        assert health.malformed == 0

        worker.stop()  # warm shutdown: worker-offline, so "shut down", not "lost"
        await wait_for(
            lambda: observer.gauges(WallClock().now())["worker_offline"].get((worker.hostname,)) == 1.0,
            what="worker-offline",
        )
    finally:
        await source.stop()


@pytest.mark.parametrize("broker", ["redis", "amqp"])
async def test_a_task_sent_that_reaches_us_after_its_worker_events_labels_all_of_them(
    broker: str, request: pytest.FixtureRequest, unique: str, celery_worker_factory: Any, producer: Any
) -> None:
    # The producer publishes task-sent on its own connection after the task's message: a worker
    # may run the task before that event reaches us. Here it is made to come last on purpose.
    url = request.getfixturevalue(f"{broker}_url")
    observer, series, _health, source = make_pipeline(url, sent_grace=30.0)  # a slow machine's margin
    await source.start()
    try:
        await source.wait_connected(15)
        queue = f"q-{unique}"
        worker: CeleryWorker = celery_worker_factory(url, queues=[queue])
        now = WallClock().now
        app = producer(url)
        app.send_task("t.sleep", (0,), queue=queue)  # a first task: the stream carries task-sent events
        await wait_for(lambda: per_task(series, "tasks_sent", now(), queue) == {"t.sleep": 1}, what="a first task")
        quiet = producer(url)
        quiet.conf.task_send_sent_event = False
        sent_at = time.time()
        uid = quiet.send_task("t.add", (1, 1), queue=queue).id
        await wait_for(lambda: observer.stats()["tasks_held"] == 1, what="the task's worker events")
        await asyncio.sleep(0.5)  # it runs in ms: its task-succeeded has come too
        with quiet.events.default_dispatcher(hostname=f"producer@{unique}") as dispatcher:
            dispatcher.send(
                "task-sent",
                uuid=uid,
                root_id=uid,
                parent_id=None,
                name="t.add",
                args="(1, 1)",
                kwargs="{}",
                retries=0,
                eta=None,
                expires=None,
                queue=queue,
                exchange="",
                routing_key=queue,
                timestamp=sent_at,  # Celery stamps it before it publishes
            )
        await wait_for(
            lambda: per_task(series, "tasks_succeeded", now(), queue).get("t.add") == 1, what="the late task-sent"
        )
        assert observer.stats()["tasks_reordered"] == 1
        t = now()
        for metric in ("tasks_sent", "tasks_received", "tasks_started", "tasks_succeeded"):
            assert {k: v for k, v in series.sums(metric, 600, t).items() if k[0] == "t.add"} == {
                ("t.add", queue, "" if metric == "tasks_sent" else worker.hostname): 1
            }, metric
        waits = series.distributions("task_queue_wait_seconds", 600, t)
        assert {k: d.count for k, d in waits.items() if k[0] == "t.add"} == {("t.add", queue, worker.hostname): 1}
    finally:
        await source.stop()


async def test_malformed_messages_are_counted_and_skipped(redis_url: str, unique: str) -> None:
    observer, _series, health, source = make_pipeline(redis_url)
    await source.start()
    try:
        await source.wait_connected()
        r = redis.Redis.from_url(redis_url)
        channel = event_channel_pattern(redis_url, None).removesuffix("*")  # "/<db>.celeryev/"
        r.publish(channel + "task.succeeded", b"not json at all")
        r.publish(channel + "task.succeeded", b'{"body": "!!!notbase64", "properties": {"body_encoding": "base64"}}')
        good = (
            b'{"body": "eyJ0eXBlIjogIndvcmtlci1oZWFydGJlYXQiLCAiaG9zdG5hbWUiOiAiY2VsZXJ5QHgiLCAiZnJlcSI6IDJ9", '
            b'"content-type": "application/json", "properties": {"body_encoding": "base64"}}'
        )
        r.publish(channel + "worker.heartbeat", good)
        await wait_for(lambda: health.events >= 1, what="the good event")
        assert health.malformed == 2
        assert observer.gauges(WallClock().now())["worker_up"] == {("celery@x",): 1.0}
    finally:
        await source.stop()


async def test_global_keyprefix_is_honoured(redis_url: str, unique: str, celery_worker_factory: Any) -> None:
    prefix = f"pfx-{unique}:"
    observer, _series, _health, source = make_pipeline(redis_url, transport_options={"global_keyprefix": prefix})
    await source.start()
    try:
        await source.wait_connected()
        worker = celery_worker_factory(redis_url, queues=[f"q-{unique}"], extra_env={"ALERTD_TEST_KEYPREFIX": prefix})
        await wait_for(
            lambda: (worker.hostname,) in observer.gauges(WallClock().now())["worker_up"],
            what="events on the prefixed channels",
        )
    finally:
        await source.stop()


async def test_source_reconnects_after_the_redis_server_dies(redis_server: Any) -> None:
    url = redis_server.url
    observer, _series, health, source = make_pipeline(url, reconnect_max=0.5)
    await source.start()
    try:
        await source.wait_connected()
        good = (
            b'{"body": "eyJ0eXBlIjogIndvcmtlci1oZWFydGJlYXQiLCAiaG9zdG5hbWUiOiAiY2VsZXJ5QHgiLCAiZnJlcSI6IDJ9", '
            b'"content-type": "application/json", "properties": {"body_encoding": "base64"}}'
        )
        channel = source.pattern.replace("*", "worker.heartbeat")
        redis.Redis.from_url(url).publish(channel, good)
        await wait_for(lambda: health.events == 1, what="first event")

        redis_server.kill()
        await wait_for(lambda: not health.connected, timeout=15, what="the loss to be noticed")
        assert health.gaps and health.gaps[-1][1] is None and health.last_error
        redis_server.restart()
        await wait_for(lambda: health.connected, timeout=15, what="the source to reconnect by itself")
        assert health.reconnects == 1
        down, up = health.gaps[-1]
        assert up is not None and up > down

        redis.Redis.from_url(url).publish(channel, good)
        await wait_for(lambda: health.events == 2, what="events after the restart")
        assert not math.isnan(observer.gauges(WallClock().now())["events_silence_seconds"][()])
    finally:
        await source.stop()
