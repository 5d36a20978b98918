"""The RabbitMQ fast path (alertd.sources.amqp_events) on the RabbitMQ service, with real workers.

Tests that publish by hand use an exchange of their own (events.exchange), so events other tests
send on the shared `celeryev` exchange cannot reach them; those with a real worker use celeryev
and pick their own events out by hostname and uuid.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from celery import Celery
from kombu import Connection, Exchange, Producer

from alertd.clock import VirtualClock, WallClock
from alertd.sources import open_event_source
from alertd.sources.amqp_events import AmqpEventSource
from alertd.sources.health import StreamHealth
from alertd.sources.kombu_events import KombuEventSource
from tests.conftest import free_port
from tests.sources_fixtures import Batches, heartbeat, wait_for


@pytest.fixture
def producer(amqp_url: str) -> Iterator[Celery]:
    app = Celery("producer", broker=amqp_url, set_as_current=False)
    app.conf.task_send_sent_event = True
    yield app
    app.close()


def publish(amqp_url: str, exchange: str, messages: list[tuple[str, bytes, str]]) -> None:
    """Publish (routing_key, body, content_type) as kombu's AMQP transport sends an event: body as is."""
    with Connection(amqp_url) as conn:
        producer = Producer(conn.default_channel)
        ex = Exchange(exchange, type="topic")
        for routing_key, body, content_type in messages:
            producer.publish(
                body,
                exchange=ex,
                routing_key=routing_key,
                content_type=content_type,
                content_encoding="utf-8",
                declare=[ex],
                delivery_mode=1,
            )


def send_events(app: Celery, n: int, hostname: str, exchange: str = "celeryev") -> None:
    """Publish n worker-heartbeat events with Celery's own dispatcher."""
    app.conf.event_exchange = exchange
    with app.connection_for_write() as conn:
        dispatcher = app.events.Dispatcher(conn, hostname=hostname, enabled=True)
        for i in range(n):
            dispatcher.send("worker-heartbeat", freq=2.0, seq=i)
        dispatcher.close()


def queue_depth(amqp_url: str, name: str) -> int:
    with Connection(amqp_url) as conn:
        return int(conn.default_channel.queue_declare(name, passive=True).message_count)


def drop_queue(amqp_url: str, name: str) -> None:
    with Connection(amqp_url) as conn:
        conn.default_channel.queue_delete(name)


def rabbitmqctl(*args: str) -> Any:
    out = subprocess.run(
        ["rabbitmqctl", *args, "-q", "--formatter", "json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        stdin=subprocess.DEVNULL,
    ).stdout
    return json.loads(out) if out.strip() else []


def close_connection_from_the_broker(connection_name: str) -> None:
    """Close one client connection from RabbitMQ's side (CONNECTION_FORCED), leaving other tests' alone."""
    listing = subprocess.run(
        ["rabbitmqctl", "list_connections", "pid", "client_properties", "-q"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        stdin=subprocess.DEVNULL,  # the Erlang CLI may wait on an inherited stdin
    ).stdout
    for line in listing.splitlines():
        pid, _, props = line.partition("\t")
        if f'{{"connection_name","{connection_name}"}}' in props:
            subprocess.run(
                ["rabbitmqctl", "close_connection", pid, "test kills it"],
                check=True,
                capture_output=True,
                stdin=subprocess.DEVNULL,
            )
            return
    raise AssertionError(f"no connection named {connection_name!r}")


async def test_real_worker_task_events_arrive_in_batches_on_the_loop(
    amqp_url: str, unique: str, celery_worker_factory: Any, producer: Celery
) -> None:
    got, health = Batches(), StreamHealth()
    source = open_event_source(amqp_url, got, WallClock(), health)
    assert isinstance(source, AmqpEventSource) and health.transport == "amqp-fast"
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
        assert got.threads == {threading.get_ident()}  # handed over on the loop, no thread involved
        assert all(isinstance(e["local_received"], float) for e in got.events)
        assert health.connected and health.events == len(got.events) and health.last_event_at
        assert health.malformed == 0
    finally:
        started = time.monotonic()
        await source.stop()
        assert time.monotonic() - started < 5, "stop() must not hang"


async def test_queue_is_declared_as_celery_declares_it(amqp_url: str, unique: str, producer: Celery) -> None:
    exchange = f"celeryev-{unique}"
    got = Batches()
    source = open_event_source(
        amqp_url, got, WallClock(), StreamHealth(), exchange=exchange, queue_ttl=7.0, queue_expires=90.0
    )
    assert isinstance(source, AmqpEventSource)
    await source.start()
    try:
        await source.wait_connected(15)
        queues = {
            q["name"]: q
            for q in await asyncio.to_thread(
                rabbitmqctl, "list_queues", "name", "durable", "auto_delete", "exclusive", "arguments"
            )
        }
        q = queues[source.queue]
        assert source.queue.startswith("celeryev.")
        assert (q["durable"], q["auto_delete"], q["exclusive"]) == (False, True, True)
        assert dict((k, v) for k, _t, v in q["arguments"]) == {"x-message-ttl": 7000, "x-expires": 90000}
        # Celery's dispatcher, told the same exchange, reaches us through the '#' binding
        await asyncio.to_thread(send_events, producer, 2, f"celery@{unique}", exchange)
        await wait_for(lambda: [e.get("seq") for e in got.events] == [0, 1], what="both events")
    finally:
        await source.stop()
    assert source.queue not in {q["name"] for q in await asyncio.to_thread(rabbitmqctl, "list_queues", "name")}


async def test_task_multi_bodies_are_unpacked_in_order(amqp_url: str, unique: str) -> None:
    exchange = f"celeryev-{unique}"
    got, health = Batches(), StreamHealth()
    source = open_event_source(amqp_url, got, WallClock(), health, exchange=exchange)
    await source.start()
    try:
        await source.wait_connected(15)
        app = Celery(broker=amqp_url, set_as_current=False)
        app.conf.event_exchange = exchange

        def send_buffered() -> None:
            # A worker's dispatcher buffers task events and flushes them as one task.multi message.
            with app.connection_for_write() as conn:
                d = app.events.Dispatcher(conn, hostname=f"celery@{unique}", enabled=True, buffer_group=["task"])
                for i in range(3):
                    d.send("task-started", uuid=f"u{i}")
                    d.send("task-succeeded", uuid=f"u{i}", runtime=0.1)
                d.flush()
                d.close()

        await asyncio.to_thread(send_buffered)
        await wait_for(lambda: len(got.events) >= 6, what="the six buffered events")
        assert [(e["type"], e["uuid"]) for e in got.events] == [
            (t, f"u{i}") for i in range(3) for t in ("task-started", "task-succeeded")
        ]
        assert health.events == 6 and health.messages < 6  # fewer messages than events: task.multi
    finally:
        await source.stop()


async def test_malformed_messages_are_counted_and_skipped(
    amqp_url: str, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    exchange = f"celeryev-{unique}"
    got, health = Batches(), StreamHealth()
    source = open_event_source(amqp_url, got, WallClock(), health, exchange=exchange)
    await source.start()
    try:
        await source.wait_connected(15)
        good = json.dumps(heartbeat(f"celery@{unique}")).encode()
        await asyncio.to_thread(
            publish,
            amqp_url,
            exchange,
            [
                ("worker.heartbeat", b"not json at all", "application/json"),
                ("worker.heartbeat", b"\x80\x04K*.", "application/x-python-serialize"),  # pickle: refused
                ("task.multi", b"[1, 2]", "application/json"),
                ("worker.heartbeat", b"42", "application/json"),
                ("worker.heartbeat", good, "application/json"),
            ],
        )
        await wait_for(lambda: health.events >= 1, what="the good event")
        assert health.malformed == 4 and health.messages == 5
        assert [e["hostname"] for e in got.events] == [f"celery@{unique}"]
        assert "x-python-serialize" in caplog.text
    finally:
        await source.stop()


async def test_durable_queue_keeps_events_sent_while_alertd_is_down(
    amqp_url: str, unique: str, producer: Celery
) -> None:
    durable = f"alertd-test-events-{unique}"
    hostname = f"celery@durable-{unique}"
    kw: dict[str, Any] = {"durable_queue": durable, "durable_queue_ttl": 60.0}
    first = open_event_source(amqp_url, Batches(), WallClock(), StreamHealth(), **kw)
    assert isinstance(first, AmqpEventSource)
    await first.start()
    await first.wait_connected(15)
    await first.stop()  # alertd restarts: the named queue stays bound and keeps what is sent
    try:
        await asyncio.to_thread(send_events, producer, 5, hostname)
        await wait_for(lambda: queue_depth(amqp_url, durable) >= 5, what="the events to wait in the queue")
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
        # acknowledged once handed over: nothing goes back to the queue when the consumer leaves
        assert queue_depth(amqp_url, durable) == 0
    finally:
        await asyncio.to_thread(drop_queue, amqp_url, durable)


async def test_without_a_durable_queue_a_restart_loses_events(amqp_url: str, unique: str, producer: Celery) -> None:
    # The control for the test above: Celery's default queue goes away with its consumer.
    hostname = f"celery@lossy-{unique}"
    first = open_event_source(amqp_url, Batches(), WallClock(), StreamHealth())
    await first.start()
    await first.wait_connected(15)
    await first.stop()
    await asyncio.to_thread(send_events, producer, 3, hostname)
    got = Batches()
    second = open_event_source(amqp_url, got, WallClock(), StreamHealth())
    await second.start()
    try:
        await second.wait_connected(15)
        await asyncio.to_thread(send_events, producer, 1, hostname)
        await wait_for(lambda: any(e.get("hostname") == hostname for e in got.events), what="the live event")
        assert [e["seq"] for e in got.events if e.get("hostname") == hostname] == [0]
    finally:
        await second.stop()


async def test_connection_closed_by_the_broker_reconnects_and_the_gap_shows(
    amqp_url: str, unique: str, producer: Celery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="alertd")
    exchange = f"celeryev-{unique}"
    hostname = f"celery@gap-{unique}"
    got, health = Batches(), StreamHealth()
    name = f"alertd-test-{unique}"
    source = AmqpEventSource(amqp_url, got, WallClock(), health, exchange=exchange, connection_name=name)
    await source.start()
    try:
        await source.wait_connected(15)
        first_queue = source.queue
        await asyncio.to_thread(send_events, producer, 1, hostname, exchange)
        await wait_for(lambda: len(got.events) == 1, what="the event before the kill")

        await asyncio.to_thread(close_connection_from_the_broker, name)
        await wait_for(lambda: health.reconnects == 1 and health.connected, what="the source to reconnect by itself")
        down, up = health.gaps[-1]
        assert up is not None and up >= down
        assert "CONNECTION_FORCED" in health.last_error and "event stream lost" in caplog.text
        assert source.queue != first_queue  # the exclusive queue died with the connection: a new one

        await asyncio.to_thread(send_events, producer, 1, hostname, exchange)
        await wait_for(lambda: len(got.events) == 2, what="events after the reconnect")
    finally:
        await source.stop()


class TcpProxy:
    """A TCP relay to RabbitMQ that a test can start late, freeze (a broker gone silent) or stop."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.target_port = target_port
        self.frozen = False
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for w in self.writers:
                w.close()
            await self.server.wait_closed()
            self.server = None

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    if not self.frozen:
                        dst.write(data)
            if not self.frozen:  # a frozen link passes on nothing, not even a close
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.fixture
async def proxy(amqp_url: str) -> AsyncIterator[TcpProxy]:
    p = TcpProxy(int(amqp_url.split(":")[-1].split("/")[0]))
    yield p
    await p.stop()


async def test_a_broker_back_after_a_long_backoff_is_found_within_a_probe(proxy: TcpProxy) -> None:
    clock, health = VirtualClock(), StreamHealth()
    source = open_event_source(
        f"amqp://guest:guest@127.0.0.1:{proxy.port}//", Batches(), clock, health, reconnect_max=30.0
    )
    await source.start()
    try:
        # Nobody listens: attempts back off 0.5, 1, 2, 4, 8 s, probing the port every 0.5 s in
        # the backoffs longer than that (1 + 2 + 4 + 8 sleeps); stop 1 s into the 8 s one.
        for _ in range(1 + 2 + 4 + 8 + 2):
            await wait_for(lambda: bool(clock._waiters), what="the source to back off")
            clock.advance(clock._waiters[0][0] - clock.now())
        assert not health.connected and len(health.gaps) == 1
        await wait_for(lambda: bool(clock._waiters), what="the source to back off")
        await proxy.start()  # the broker is back, 7 s before this backoff ends
        clock.advance(0.5)
        await wait_for(lambda: health.connected, what="a connection right after the next probe")
        assert health.reconnects == 1
    finally:
        await source.stop()


async def test_a_broker_gone_silent_is_noticed_by_its_missing_heartbeats(proxy: TcpProxy) -> None:
    await proxy.start()
    health = StreamHealth()
    url = f"amqp://guest:guest@127.0.0.1:{proxy.port}//?heartbeat=1"
    source = open_event_source(url, Batches(), WallClock(), health, reconnect_max=0.5)
    await source.start()
    try:
        await source.wait_connected(15)
        proxy.frozen = True  # TCP stays up, nothing gets through: a half-open connection
        await wait_for(lambda: not health.connected, timeout=10, what="the silence to be noticed")
        assert "heartbeats missed" in health.last_error
        proxy.frozen = False
        await wait_for(lambda: health.connected, timeout=15, what="the source to reconnect")
    finally:
        await source.stop()


async def test_unreachable_broker_keeps_retrying_without_leaking_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"amqp://alertd:s3cret-pw@127.0.0.1:{free_port()}//"
    health = StreamHealth()
    source = open_event_source(url, Batches(), WallClock(), health, reconnect_max=0.2)
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


async def test_a_refused_login_is_reported_without_the_password(
    amqp_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="alertd")
    url = amqp_url.replace("guest:guest@", "guest:wr0ng-pw@")
    health = StreamHealth()
    source = open_event_source(url, Batches(), WallClock(), health, reconnect_max=0.2)
    await source.start()
    try:
        await wait_for(lambda: "ACCESS_REFUSED" in health.last_error, what="the broker's refusal")
        assert not health.connected
    finally:
        await source.stop()
    assert "wr0ng-pw" not in str(health.to_dict()) and "wr0ng-pw" not in caplog.text


def test_the_kombu_path_stays_available_by_switch(amqp_url: str) -> None:
    source = open_event_source(amqp_url, Batches(), WallClock(), StreamHealth(), transport="kombu")
    assert isinstance(source, KombuEventSource)
    for scheme in ("amqp", "amqps", "pyamqp"):
        url = amqp_url.replace("amqp://", f"{scheme}://", 1)
        assert isinstance(open_event_source(url, Batches(), WallClock(), StreamHealth()), AmqpEventSource)
