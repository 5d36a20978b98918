"""The Redis fast path against a real Redis and a real worker: events, task.multi, keyprefix, garbage, faults."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from celery import Celery

from alertd.clock import VirtualClock, WallClock
from alertd.sources import open_event_source
from alertd.sources.health import StreamHealth
from alertd.sources.redis_events import Decode, RedisEventSource, decode_message, event_channel_pattern
from tests.conftest import free_port
from tests.sources_fixtures import Batches, envelope, heartbeat, wait_for


@pytest.fixture(params=["process", "inline"])
def decode(request: pytest.FixtureRequest) -> Decode:
    """Every test here runs on both decoders: the child process (the default with two CPUs) and the loop."""
    decode: Decode = request.param
    return decode


def test_channel_pattern_follows_kombu_naming() -> None:
    assert event_channel_pattern("redis://127.0.0.1:6379/13", None) == "/13.celeryev/*"
    assert event_channel_pattern("redis://h/", {"global_keyprefix": "app:"}) == "app:/0.celeryev/*"
    assert event_channel_pattern("unix:///run/redis.sock", {"db": 4}) == "/4.celeryev/*"


async def test_real_worker_events_including_task_multi_batches(
    redis_url: str, unique: str, celery_worker_factory: Any, decode: Decode
) -> None:
    got, health = Batches(), StreamHealth()
    source = open_event_source(redis_url, got, WallClock(), health, decode=decode)
    assert isinstance(source, RedisEventSource) and health.transport == "redis-fast"
    assert source.decode_process == (decode == "process")
    # A second, plain subscriber shows which events the worker sent as task.multi batches.
    spy = aioredis.Redis.from_url(redis_url).pubsub()
    await spy.psubscribe(source.pattern)
    await source.start()
    try:
        await source.wait_connected()
        queue = f"q-{unique}"
        worker = celery_worker_factory(redis_url, queues=[queue])
        app = Celery("producer", broker=redis_url, set_as_current=False)
        app.conf.task_send_sent_event = True
        ids = {app.send_task("t.add", (i, i), queue=queue).id for i in range(5)}
        app.close()
        wanted = {"task-sent", "task-received", "task-started", "task-succeeded"}
        await wait_for(
            lambda: {(t, i) for t in wanted for i in ids} <= {(e["type"], e.get("uuid")) for e in got.events},
            what="every task's sent/received/started/succeeded",
        )
        await wait_for(lambda: "worker-heartbeat" in got.types(), what="a heartbeat")
        assert "worker-online" in got.types()

        multi: list[dict[str, Any]] = []
        while (m := await spy.get_message(timeout=0.01)) is not None:
            if m["type"] == "pmessage" and m["channel"].endswith(b"task.multi"):
                multi.extend(decode_message(m["data"]))
        assert multi, "the worker sent no task.multi batch"
        received = {(e["type"], e["uuid"]) for e in got.events if "uuid" in e}
        assert {(e["type"], e["uuid"]) for e in multi} <= received
        assert all(e["hostname"] == worker.hostname for e in multi)
        assert all(isinstance(e["local_received"], float) for e in got.events)
        assert health.events == len(got.events) and health.malformed == 0
        assert health.messages <= health.events  # a task.multi message holds several events
    finally:
        await source.stop()
        await spy.aclose()  # type: ignore[no-untyped-call]


async def test_garbage_is_counted_and_skipped_while_good_events_flow(
    redis_url: str, caplog: pytest.LogCaptureFixture, decode: Decode
) -> None:
    got, health = Batches(), StreamHealth()
    clock = VirtualClock(start=1_800_000_000.0)
    source = open_event_source(redis_url, got, clock, health, decode=decode)
    await source.start()
    await source.wait_connected()
    r = redis.Redis.from_url(redis_url)
    channel = "/13.celeryev/worker.heartbeat"
    bad = [
        b"not json at all",
        b'{"body": "!!!notbase64", "properties": {"body_encoding": "base64"}}',
        b'{"properties": {}}',  # no body
        envelope([heartbeat(), 3]),  # a list with a non-event in it
        envelope("a string"),
        envelope(heartbeat(), **{"content-type": "application/x-python-serialize"}),
    ]
    try:
        for i in range(25):
            r.publish(channel, bad[i % len(bad)])
            r.publish(channel, envelope(heartbeat(seq=i)))
        r.publish("/13.celeryev/task.multi", envelope([heartbeat(seq=100), heartbeat(seq=101)], "task.multi"))
        await wait_for(lambda: health.events == 27, what="every good event")
        assert health.malformed == 25 and health.messages == 51
        assert [e["seq"] for e in got.events] == [*range(25), 100, 101]
        assert {e["local_received"] for e in got.events} == {clock.now()}
        assert health.last_event_at == clock.now()
        warnings = [rec for rec in caplog.records if "malformed" in rec.getMessage()]
        assert 1 <= len(warnings) <= 10, "malformed messages are logged, but not one line each"
    finally:
        await source.stop()
        r.close()


async def test_global_keyprefix_is_honoured(
    redis_url: str, unique: str, celery_worker_factory: Any, decode: Decode
) -> None:
    prefix = f"pfx-{unique}:"
    got = Batches()
    source = open_event_source(
        redis_url,
        got,
        WallClock(),
        StreamHealth(),
        transport_options={"global_keyprefix": prefix},
        decode=decode,
    )
    await source.start()
    try:
        await source.wait_connected()
        worker = celery_worker_factory(redis_url, queues=[f"q-{unique}"], extra_env={"ALERTD_TEST_KEYPREFIX": prefix})
        await wait_for(lambda: "worker-online" in got.types(), what="events on the prefixed channels")
        # an unprefixed publisher (another app on the same db) is not ours
        redis.Redis.from_url(redis_url).publish("/13.celeryev/worker.heartbeat", envelope(heartbeat("celery@other")))
        await wait_for(lambda: "worker-heartbeat" in got.types(), what="the worker's heartbeat")
        assert {e["hostname"] for e in got.events} == {worker.hostname}
    finally:
        await source.stop()


async def test_reconnects_by_itself_after_the_server_dies_mid_stream(redis_server: Any, decode: Decode) -> None:
    url = redis_server.url
    got, health = Batches(), StreamHealth()
    source = open_event_source(url, got, WallClock(), health, reconnect_max=0.5, decode=decode)
    assert isinstance(source, RedisEventSource)
    await source.start()
    publishing = True

    async def publish_forever() -> None:
        # A steady stream, as a busy worker sends; failures while the server is down are expected.
        seq = 0
        client = aioredis.Redis.from_url(url, socket_connect_timeout=0.5)
        while publishing:
            try:
                await client.publish(source.pattern.replace("*", "worker.heartbeat"), envelope(heartbeat(seq=seq)))
                seq += 1
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                pass
            await asyncio.sleep(0.01)
        await client.aclose()

    publisher = asyncio.create_task(publish_forever())
    try:
        await source.wait_connected()
        await wait_for(lambda: health.events >= 10, what="the stream to flow")
        redis_server.kill()
        await wait_for(lambda: not health.connected, what="the loss to be noticed")
        assert health.gaps[-1][1] is None and health.last_error
        before = health.events
        redis_server.restart()
        await wait_for(lambda: health.connected, what="the source to reconnect by itself")
        assert health.reconnects == 1
        down, up = health.gaps[-1]
        assert up is not None and up > down
        await wait_for(lambda: health.events >= before + 10, what="events after the restart")
        assert health.malformed == 0
    finally:
        publishing = False
        await publisher
        await source.stop()


async def test_an_unreachable_server_backs_off_and_never_shows_the_password(
    caplog: pytest.LogCaptureFixture, decode: Decode
) -> None:
    caplog.set_level(logging.DEBUG, logger="alertd")
    clock = VirtualClock()
    health = StreamHealth()
    url = f"redis://:hunter2-pw@127.0.0.1:{free_port()}/0"
    source = open_event_source(url, Batches(), clock, health, reconnect_max=4.0, decode=decode)
    await source.start()
    try:
        # Each failed attempt backs off on the (virtual) clock: 0.5, 1, 2, then capped at 4 s;
        # nothing listens, so it probes the port every 0.5 s meanwhile (and finds it closed).
        def attempts() -> list[str]:
            return [r.getMessage() for r in caplog.records if r.getMessage().startswith("next attempt")]

        for _ in range(25):  # 12 s of virtual time, in probe steps
            await wait_for(lambda: bool(clock._waiters), what="the source to back off")
            clock.advance(clock._waiters[0][0] - clock.now())
        await wait_for(lambda: len(attempts()) >= 5, what="five attempts")
        assert [a.split()[-2] for a in attempts()[:5]] == ["0.5s", "1s", "2s", "4s", "4s"]
        assert all(a.endswith("(probing)") for a in attempts())
        assert not health.connected and len(health.gaps) == 1 and health.reconnects == 0
    finally:
        await source.stop()
    assert health.broker == url.replace(":hunter2-pw@", "***@")
    assert "hunter2" not in str(health.to_dict()) and "hunter2" not in caplog.text
