"""The kombu path (Celery's EventReceiver in a thread) on the RabbitMQ service, with a real worker.

RabbitMQ has its own fast path now (tests/test_sources_amqp.py); `events.transport: kombu` still
selects this one, which is also what brokers other than Redis and RabbitMQ use.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery

from alertd.clock import WallClock
from alertd.sources import open_event_source
from alertd.sources.health import StreamHealth
from alertd.sources.kombu_events import KombuEventSource
from tests.conftest import free_port
from tests.sources_fixtures import Batches, wait_for


@pytest.fixture
def producer(amqp_url: str) -> Iterator[Celery]:
    """A producer app that sends task-sent events (the tests' shared app pool is closed between tests)."""
    app = Celery("producer", broker=amqp_url, set_as_current=False)
    app.conf.task_send_sent_event = True
    yield app
    app.close()


def send_events(app: Celery, n: int, hostname: str) -> None:
    """Publish n worker-heartbeat events on the celeryev exchange, as a worker's dispatcher does."""
    with app.connection_for_write() as conn:
        dispatcher = app.events.Dispatcher(conn, hostname=hostname, enabled=True)
        for i in range(n):
            dispatcher.send("worker-heartbeat", freq=2.0, seq=i)
        dispatcher.close()


def drop_queue(app: Celery, name: str) -> None:
    with app.connection_for_write() as conn:
        conn.default_channel.queue_delete(name)


async def test_real_worker_task_events_arrive_in_batches_on_the_loop(
    amqp_url: str, unique: str, celery_worker_factory: Any, producer: Celery
) -> None:
    got, health = Batches(), StreamHealth()
    source = open_event_source(amqp_url, got, WallClock(), health, transport="kombu")
    assert isinstance(source, KombuEventSource) and health.transport == "kombu"
    await source.start()
    try:
        await source.wait_connected(15)
        queue = f"q-{unique}"
        worker = celery_worker_factory(amqp_url, queues=[queue])
        results = [producer.send_task("t.add", (i, i), queue=queue) for i in range(3)]
        ids = {r.id for r in results}
        wanted = {"task-sent", "task-received", "task-started", "task-succeeded"}

        def all_done() -> bool:
            seen = {(e["type"], e.get("uuid")) for e in got.events}
            return all((t, i) in seen for t in wanted for i in ids)

        await wait_for(all_done, what="sent/received/started/succeeded for every task")
        await wait_for(lambda: "worker-heartbeat" in got.types(), what="a heartbeat (every 2 s)")
        assert "worker-online" in got.types()
        assert all(e["hostname"] == worker.hostname for e in got.events if e["type"] == "task-succeeded")
        # handed over on the event loop's thread, stamped with alertd's clock
        assert got.threads == {threading.get_ident()}
        assert all(isinstance(e["local_received"], float) for e in got.events)
        assert health.connected and health.events == len(got.events) and health.last_event_at
    finally:
        started = time.monotonic()
        await source.stop()
        assert time.monotonic() - started < 5, "stop() must not hang"


async def test_durable_queue_keeps_events_sent_while_alertd_is_down(
    amqp_url: str, unique: str, producer: Celery
) -> None:
    durable = f"alertd-test-events-{unique}"
    hostname = f"celery@durable-{unique}"
    kw: dict[str, Any] = {"durable_queue": durable, "durable_queue_ttl": 60.0, "transport": "kombu"}
    first = open_event_source(amqp_url, Batches(), WallClock(), StreamHealth(), **kw)
    await first.start()
    await first.wait_connected(15)
    await first.stop()  # alertd restarts: the named queue stays bound and keeps what is sent
    try:
        await asyncio.to_thread(send_events, producer, 5, hostname)
        got = Batches()
        second = open_event_source(amqp_url, got, WallClock(), StreamHealth(), **kw)
        await second.start()
        try:
            await wait_for(
                lambda: sum(1 for e in got.events if e.get("hostname") == hostname) == 5,
                what="the events sent while no source was running",
            )
            assert [e["seq"] for e in got.events if e.get("hostname") == hostname] == [0, 1, 2, 3, 4]
        finally:
            await second.stop()
    finally:
        await asyncio.to_thread(drop_queue, producer, durable)


async def test_without_a_durable_queue_a_restart_loses_events(amqp_url: str, unique: str, producer: Celery) -> None:
    # The control for the test above: Celery's default queue goes away with its consumer.
    hostname = f"celery@lossy-{unique}"
    first = open_event_source(amqp_url, Batches(), WallClock(), StreamHealth(), transport="kombu")
    await first.start()
    await first.wait_connected(15)
    await first.stop()
    await asyncio.to_thread(send_events, producer, 3, hostname)
    got = Batches()
    second = open_event_source(amqp_url, got, WallClock(), StreamHealth(), transport="kombu")
    await second.start()
    try:
        await second.wait_connected(15)
        await asyncio.to_thread(send_events, producer, 1, hostname)
        await wait_for(lambda: any(e.get("hostname") == hostname for e in got.events), what="the live event")
        assert [e["seq"] for e in got.events if e.get("hostname") == hostname] == [0]
    finally:
        await second.stop()


async def test_unreachable_broker_keeps_retrying_without_leaking_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"amqp://alertd:s3cret-pw@127.0.0.1:{free_port()}//"
    health = StreamHealth()
    source = open_event_source(url, Batches(), WallClock(), health, reconnect_max=0.2, transport="kombu")
    caplog.set_level(logging.DEBUG, logger="alertd")
    await source.start()
    try:
        await wait_for(lambda: len(health.gaps) >= 1 and health.last_error, what="the failure to be recorded")
        assert not health.connected and health.reconnects == 0
        assert health.broker == f"amqp://***@127.0.0.1:{url.split(':')[-1].split('/')[0]}//"
    finally:
        started = time.monotonic()
        await source.stop()
        assert time.monotonic() - started < 5
    assert "s3cret-pw" not in str(health.to_dict()) and "s3cret-pw" not in caplog.text
