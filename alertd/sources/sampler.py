"""Periodic samples of the broker and the workers: queue lengths and consumers, pool sizes, memory, CPU.

Everything here blocks (kombu channels, broadcast replies), so each round runs in a thread with
timeouts, and a round still running when the next is due is skipped rather than stacked: a slow
broadcast never delays event ingestion and never piles up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from celery import Celery

from alertd.clock import Clock
from alertd.offloop import in_daemon_thread
from alertd.redact import redact_text
from alertd.samples import BrokerSample, QueueSample, WorkerSample

log = logging.getLogger(__name__)

# kombu's Redis transport: priority queues live in extra lists named queue + sep + step.
DEFAULT_PRIORITY_STEPS = (0, 3, 6, 9)
DEFAULT_SEP = "\x06\x16"


def redis_priority_keys(queue: str, transport_options: dict[str, Any] | None) -> list[str]:
    """The Redis lists holding a queue's messages, honouring sep, priority_steps and global_keyprefix."""
    opts = transport_options or {}
    sep = str(opts.get("sep", DEFAULT_SEP))
    steps = opts.get("priority_steps", DEFAULT_PRIORITY_STEPS)
    prefix = str(opts.get("global_keyprefix", "") or "")
    keys = []
    for step in steps:
        keys.append(f"{prefix}{queue}" if step == 0 else f"{prefix}{queue}{sep}{step}")
    return keys


class Sampler:
    """Every `interval` seconds: one BrokerSample, a QueueSample per queue, a WorkerSample per worker."""

    def __init__(
        self,
        broker_url: str,
        clock: Clock,
        *,
        on_queue: Callable[[QueueSample], None],
        on_worker: Callable[[WorkerSample], None],
        on_broker: Callable[[BrokerSample], None],
        queues: list[str],
        interval: float = 15.0,
        inspect: bool = True,
        inspect_timeout: float = 1.0,
        transport_options: dict[str, Any] | None = None,
        max_queues: int = 1_000,
    ) -> None:
        self.broker_url = broker_url
        self.max_queues = max_queues
        self.queues_skipped = 0  # queue names past max_queues left out, summed over rounds
        self.clock = clock
        self.on_queue = on_queue
        self.on_worker = on_worker
        self.on_broker = on_broker
        self.queues = list(queues)
        self.interval = interval
        self.inspect = inspect
        self.inspect_timeout = inspect_timeout
        self.transport_options = transport_options or {}
        self.is_redis = broker_url.split("://", 1)[0] in ("redis", "rediss", "unix")
        self.app = Celery("alertd-sampler", broker=broker_url, set_as_current=False)
        self.app.conf.broker_transport_options = self.transport_options
        self.app.conf.broker_connection_retry_on_startup = False
        self.app.conf.broker_connection_timeout = max(1.0, inspect_timeout)
        self._task: asyncio.Task[None] | None = None
        self._round: asyncio.Task[None] | None = None
        self.rounds = 0
        self.skipped = 0
        self.last_round_seconds = 0.0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sampler")

    async def stop(self) -> None:
        for t in (self._task, self._round):
            if t is not None:
                t.cancel()
        for t in (self._task, self._round):
            if t is not None:
                try:
                    await t
                except (asyncio.CancelledError, Exception):
                    pass
        await asyncio.to_thread(self.app.close)

    async def _run(self) -> None:
        while True:
            if self._round is not None and not self._round.done():
                self.skipped += 1
                log.warning("broker sample still running after %.0fs; skipping a round", self.interval)
            else:
                self._round = asyncio.create_task(self.sample_once())
            await self.clock.sleep(self.interval)

    async def sample_once(self) -> None:
        """One round; never raises (a failed round is a BrokerSample with ok=False)."""
        started = self.clock.now()
        try:
            # a daemon thread: a stop mid-round (the broadcasts wait a second each) is not held
            queue_samples, worker_samples = await in_daemon_thread(self._sample_blocking, name="alertd-sampler")
        except Exception as e:  # any transport error: the broker is down or refusing us
            error = redact_text(str(e) or type(e).__name__)
            log.warning("broker sample failed: %s", error)
            self.on_broker(BrokerSample(ok=False, at=self.clock.now(), error=error))
            return
        now = self.clock.now()
        for ws in worker_samples:
            self.on_worker(ws)
        for qs in queue_samples:
            self.on_queue(qs)
        self.on_broker(BrokerSample(ok=True, at=now))
        self.rounds += 1
        self.last_round_seconds = now - started

    # -- in a thread -----------------------------------------------------------------------

    def _sample_blocking(self) -> tuple[list[QueueSample], list[WorkerSample]]:
        at = self.clock.now()
        stats: dict[str, Any] = {}
        active_queues: dict[str, Any] = {}
        # The broker first: a dead one fails the round at once (one quick retry for a blip),
        # where the two broadcasts below would each retry their publish for seconds before the
        # queue lengths found it dead too.
        with self.app.connection_for_read() as probe:
            probe.ensure_connection(max_retries=1, interval_start=0.2, timeout=self.inspect_timeout)
        if self.inspect:
            inspector = self.app.control.inspect(timeout=self.inspect_timeout)
            try:
                stats = inspector.stats() or {}
                active_queues = inspector.active_queues() or {}
            except Exception as e:  # a failed broadcast leaves queue lengths still worth reporting
                log.info("inspect broadcast failed: %s", redact_text(str(e)))
        workers = [self._worker_sample(name, st, active_queues.get(name), at) for name, st in stats.items()]
        for name, qs in active_queues.items():
            if name not in stats:
                workers.append(WorkerSample(worker=name, at=at, queues=_queue_names(qs)))
        names = list(dict.fromkeys([*self.queues, *(q for w in workers for q in w.queues)]))
        if len(names) > self.max_queues:
            # Workers choose their queue names: a round stays as long as max_queues LLENs, the
            # configured queues first. (A counter bumped off the loop: only this thread writes it.)
            self.queues_skipped += len(names) - self.max_queues
            names = names[: self.max_queues]
        consumers: dict[str, int] | None = None
        if self.inspect and active_queues:
            consumers = {}
            for w in workers:
                for q in w.queues:
                    consumers[q] = consumers.get(q, 0) + 1
        with self.app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, timeout=self.inspect_timeout)
            if self.is_redis:
                samples = self._redis_lengths(conn, names, consumers, at)
            else:
                samples = self._amqp_lengths(conn, names, at)
        return samples, workers

    def _redis_lengths(
        self, conn: Any, names: list[str], consumers: dict[str, int] | None, at: float
    ) -> list[QueueSample]:
        client = conn.default_channel.client
        pipe = client.pipeline(transaction=False)
        # The transport's own client adds global_keyprefix itself; so strip it from our keys.
        opts = {k: v for k, v in self.transport_options.items() if k != "global_keyprefix"}
        spans = []
        for name in names:
            keys = redis_priority_keys(name, opts)
            spans.append(len(keys))
            for key in keys:
                pipe.llen(key)
        lengths = pipe.execute()
        out, i = [], 0
        for name, n in zip(names, spans, strict=True):
            total = sum(int(x or 0) for x in lengths[i : i + n])
            i += n
            out.append(
                QueueSample(
                    queue=name, messages=total, consumers=None if consumers is None else consumers.get(name, 0), at=at
                )
            )
        return out

    def _amqp_lengths(self, conn: Any, names: list[str], at: float) -> list[QueueSample]:
        out = []
        channel = conn.channel()
        try:
            for name in names:
                try:
                    _, messages, consumers = channel.queue_declare(queue=name, passive=True)
                except Exception as e:
                    if getattr(e, "code", None) != 404 and "NOT_FOUND" not in str(e):
                        raise
                    # NOT_FOUND closes the channel: a queue nobody declared holds nothing.
                    messages, consumers = 0, 0
                    channel = conn.channel()
                out.append(QueueSample(queue=name, messages=int(messages), consumers=int(consumers), at=at))
        finally:
            try:
                channel.close()
            except Exception:
                pass
        return out

    @staticmethod
    def _worker_sample(name: str, st: dict[str, Any], queues: Any, at: float) -> WorkerSample:
        pool = st.get("pool") or {}
        rusage = st.get("rusage") or {}
        total = st.get("total") or {}
        maxrss = rusage.get("maxrss")
        cpu = None
        if isinstance(rusage.get("utime"), int | float) and isinstance(rusage.get("stime"), int | float):
            cpu = float(rusage["utime"]) + float(rusage["stime"])
        return WorkerSample(
            worker=name,
            at=at,
            pool_size=pool.get("max-concurrency") if isinstance(pool.get("max-concurrency"), int) else None,
            memory_bytes=int(maxrss) * 1024 if isinstance(maxrss, int | float) else None,  # KiB on Linux
            cpu_seconds=cpu,
            processed=sum(v for v in total.values() if isinstance(v, int)) if isinstance(total, dict) else None,
            queues=_queue_names(queues),
        )


def _queue_names(queues: Any) -> tuple[str, ...]:
    if not isinstance(queues, list):
        return ()
    return tuple(str(q["name"]) for q in queues if isinstance(q, dict) and q.get("name"))
