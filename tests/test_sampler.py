"""The sampler against real brokers: queue lengths over priority keys, consumers, worker stats, a dead broker."""

from __future__ import annotations

import asyncio
from typing import Any

import redis
from kombu import Connection

from alertd.clock import WallClock
from alertd.samples import BrokerSample, QueueSample, WorkerSample
from alertd.sources.sampler import Sampler, redis_priority_keys
from tests.conftest import free_port


class Collected:
    def __init__(self) -> None:
        self.queues: dict[str, QueueSample] = {}
        self.workers: dict[str, WorkerSample] = {}
        self.broker: list[BrokerSample] = []

    def sampler(self, url: str, queues: list[str], **kw: Any) -> Sampler:
        return Sampler(
            url,
            WallClock(),
            on_queue=lambda s: self.queues.__setitem__(s.queue, s),
            on_worker=lambda s: self.workers.__setitem__(s.worker, s),
            on_broker=self.broker.append,
            queues=queues,
            **kw,
        )


async def test_redis_length_sums_priority_lists_and_no_consumer_is_zero(redis_url: str, unique: str) -> None:
    queue, missing = f"q-{unique}", f"missing-{unique}"
    r = redis.Redis.from_url(redis_url)
    for key, n in zip(redis_priority_keys(queue, {}), (3, 2, 0, 1), strict=True):
        for _ in range(n):
            r.lpush(key, b"{}")
    got = Collected()
    s = got.sampler(redis_url, [queue, missing], inspect=True, inspect_timeout=0.5)
    await s.sample_once()
    assert got.broker[-1].ok
    assert got.queues[queue].messages == 6
    assert got.queues[missing].messages == 0
    # inspect answered by nobody: no worker consumes anything; consumers unknown rather than 0
    # only when the broadcast itself could not run
    assert got.queues[queue].consumers in (0, None)
    await s.stop()


async def test_redis_keyprefix_and_custom_sep_are_honoured(redis_url: str, unique: str) -> None:
    opts = {"global_keyprefix": f"p{unique}:", "sep": ":", "priority_steps": [0, 5]}
    queue = f"q-{unique}"
    keys = redis_priority_keys(queue, opts)
    assert keys == [f"p{unique}:{queue}", f"p{unique}:{queue}:5"]
    r = redis.Redis.from_url(redis_url)
    r.lpush(keys[0], b"a")
    r.lpush(keys[1], b"b", b"c")
    got = Collected()
    s = got.sampler(redis_url, [queue], inspect=False, transport_options=opts)
    await s.sample_once()
    assert got.queues[queue].messages == 3 and got.queues[queue].consumers is None
    await s.stop()


async def test_rabbitmq_passive_declare_gives_messages_and_zero_consumers(amqp_url: str, unique: str) -> None:
    queue, missing = f"q-{unique}", f"missing-{unique}"
    with Connection(amqp_url) as conn:
        ch = conn.channel()
        ch.queue_declare(queue=queue, durable=False, auto_delete=False)
        for i in range(5):
            ch.basic_publish(ch.prepare_message(f"m{i}".encode()), exchange="", routing_key=queue)
        got = Collected()
        s = got.sampler(amqp_url, [queue, missing], inspect=False)
        try:
            await s.sample_once()
            assert got.broker[-1].ok
            assert (got.queues[queue].messages, got.queues[queue].consumers) == (5, 0)
            assert (got.queues[missing].messages, got.queues[missing].consumers) == (0, 0)
        finally:
            ch.queue_delete(queue)
            await s.stop()


async def test_worker_stats_and_consumers_from_a_real_worker(
    redis_url: str, unique: str, celery_worker_factory: Any
) -> None:
    queue = f"q-{unique}"
    worker = celery_worker_factory(redis_url, queues=[queue], concurrency=3)
    got = Collected()
    s = got.sampler(redis_url, [], inspect=True, inspect_timeout=2.0)
    await s.sample_once()
    w = got.workers[worker.hostname]
    assert w.pool_size == 3
    assert w.memory_bytes is not None and w.memory_bytes > 10 * 1024 * 1024
    assert w.cpu_seconds is not None and w.cpu_seconds > 0
    assert queue in w.queues
    # the queue was discovered from the worker, and it has one consumer
    assert got.queues[queue].consumers == 1 and got.queues[queue].messages == 0
    await s.stop()


async def test_dead_broker_gives_a_failed_sample_quickly() -> None:
    got = Collected()
    s = got.sampler(f"redis://127.0.0.1:{free_port()}/0", ["celery"], inspect=True, inspect_timeout=0.5)
    clock = WallClock()
    started = clock.now()
    await s.sample_once()
    assert clock.now() - started < 3  # the broker is probed first: no broadcast retries its publish for seconds
    assert got.broker and not got.broker[-1].ok and got.broker[-1].error
    assert got.queues == {}
    await s.stop()


async def test_a_hanging_broker_never_blocks_the_loop_and_rounds_never_overlap() -> None:
    # A listener that completes the TCP handshake and then never answers: the worst broker.
    import socket

    from alertd.clock import VirtualClock

    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)
    port = hole.getsockname()[1]
    clock = VirtualClock()
    got = Collected()
    s = Sampler(
        f"redis://127.0.0.1:{port}/0",
        clock,
        on_queue=lambda q: None,
        on_worker=lambda w: None,
        on_broker=got.broker.append,
        queues=["celery"],
        interval=1.0,
        inspect=True,
        inspect_timeout=0.3,
    )
    await s.start()
    loop = asyncio.get_running_loop()
    worst = 0.0
    try:
        for _ in range(5):
            before = loop.time()
            await asyncio.sleep(0.05)
            worst = max(worst, loop.time() - before - 0.05)
            clock.advance(1.0)  # the next round is due while the first still waits on the broker
        assert worst < 0.1, f"the event loop stalled for {worst:.2f}s"
        assert s.skipped >= 3 and s.rounds == 0
    finally:
        started = loop.time()
        await s.stop()
        assert loop.time() - started < 5
        hole.close()


async def test_queue_names_past_max_queues_are_not_sampled_and_are_counted(redis_url: str, unique: str) -> None:
    """Workers choose the queue names the sampler polls: a round never grows past max_queues
    LLENs, the configured queues first."""
    names = [f"q{i}-{unique}" for i in range(30)]
    got = Collected()
    s = got.sampler(redis_url, names, inspect=False, max_queues=10)
    await s.sample_once()
    await s.sample_once()
    assert got.broker[-1].ok
    assert sorted(got.queues) == sorted(names[:10])
    assert s.queues_skipped == 2 * 20
    await s.stop()
