"""The Redis fast path: Celery events straight off the PUB/SUB channels.

Redis keeps nothing for a pub/sub subscriber: a consumer that falls behind grows its output buffer
until Redis drops it (32 MB by default). So this path skips kombu's per-message machinery (and
redis-py's), subscribes to `{global_keyprefix}/{db}.celeryev/*` over a lean RESP reader
(alertd.sources.resp), decodes kombu's envelope with orjson (alertd.sources.redis_decode), and
hands the loop whole batches. With two CPUs the connection and the decoding run in a child
process (alertd.sources.decode_process), and the loop only parses each read's batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal
from urllib.parse import urlsplit

from alertd.clock import Clock
from alertd.redact import redact_text, redact_url
from alertd.sources.decode_process import DecoderChild, DecoderFailed, cpus
from alertd.sources.health import StreamHealth
from alertd.sources.probe import back_off
from alertd.sources.redis_decode import Batch, decode_message, read_batches, server_answered
from alertd.sources.resp import Endpoint, PubSubConnection

__all__ = ["RedisEventSource", "decode_message", "event_channel_pattern"]

log = logging.getLogger(__name__)

Handler = Callable[[list[dict[str, Any]]], None]

FIRST_BACKOFF = 0.5
Decode = Literal["auto", "process", "inline"]


def event_channel_pattern(broker_url: str, transport_options: dict[str, Any] | None, exchange: str = "celeryev") -> str:
    """The psubscribe pattern kombu's Redis transport publishes events on, e.g. '/0.celeryev/*'."""
    path = urlsplit(broker_url).path.strip("/")
    db = int(path) if path.isdigit() else int((transport_options or {}).get("db", 0) or 0)
    prefix = str((transport_options or {}).get("global_keyprefix", "") or "")
    return f"{prefix}/{db}.{exchange}/*"


class RedisEventSource:
    """psubscribe to the event channels; reconnect with backoff; keep StreamHealth current."""

    def __init__(
        self,
        broker_url: str,
        handler: Handler,
        clock: Clock,
        health: StreamHealth,
        *,
        transport_options: dict[str, Any] | None = None,
        reconnect_max: float = 30.0,
        exchange: str = "celeryev",
        decode: Decode = "auto",
    ) -> None:
        """decode: where messages are decoded - "process", a child process (alertd.sources.decode_process),
        "inline", on the event loop, "auto", the child when this process may use two CPUs or more."""
        self.url = broker_url
        self.handler = handler
        self.clock = clock
        self.health = health
        self.pattern = event_channel_pattern(broker_url, transport_options, exchange)
        self.reconnect_max = reconnect_max
        self.health.transport = "redis-fast"
        self.health.broker = redact_url(broker_url)
        self.decode_process = decode == "process" or (decode == "auto" and cpus() >= 2)
        self.health.decoder = "process" if self.decode_process else "loop"
        self.decoder_pid: int | None = None  # the child process decoding now, if one does
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="redis-events")

    async def stop(self) -> None:
        task, self._task = self._task, None
        # Python 3.11's wait_for swallows a cancellation that lands as its read completes, and the
        # reader then loops on: cancel again until it is really done, rather than wait for ever.
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)

    async def wait_connected(self, timeout: float = 10.0) -> None:
        """For tests and startup: returns once subscribed."""
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def _run(self) -> None:
        backoff = FIRST_BACKOFF
        ep = Endpoint.from_url(self.url)
        where = (ep.host, ep.port, ep.path)
        while True:
            sub: DecoderChild | _Inline | None = None
            reachable = True
            try:
                sub = await self._subscribe()
                self.health.mark_connected(self.clock.now())
                self._connected.set()
                self.decoder_pid = sub.proc.pid if isinstance(sub, DecoderChild) else None
                self.health.decoder = "process" if self.decoder_pid else "loop"
                decoded = f" (decoded by process {self.decoder_pid})" if self.decoder_pid else ""
                log.info("subscribed to %s on %s%s", self.pattern, self.health.broker, decoded)
                backoff = FIRST_BACKOFF
                await self._consume(sub.batches())
            except asyncio.CancelledError:
                raise
            except (OSError, ConnectionError, TimeoutError, ValueError) as e:
                # DecoderFailed is our own child, not the server: retried without probing.
                reachable = server_answered(e) or isinstance(e, DecoderFailed)
                error = redact_text(str(e) or type(e).__name__)
                if isinstance(e, DecoderFailed):
                    # Slower on the loop, but never blind for want of a second process.
                    self.decode_process = False
                    self.health.decoder = "loop"
                    log.warning("%s; decoding events on the event loop from now on", error)
                if self.health.connected:
                    log.warning("event stream lost (%s); reconnecting", error)
                self._connected.clear()
                self.health.mark_disconnected(self.clock.now(), error)
            finally:
                self.decoder_pid = None
                if sub is not None:
                    await sub.close()
            log.debug("next attempt to subscribe in %gs%s", backoff, "" if reachable else " (probing)")
            await back_off(self.clock, backoff, None if reachable else where)
            backoff = min(backoff * 2, self.reconnect_max)

    async def _subscribe(self) -> DecoderChild | _Inline:
        if self.decode_process:
            return await DecoderChild.spawn(self.url, self.pattern)
        conn = await PubSubConnection.open(self.url)
        try:
            await conn.psubscribe(self.pattern)
        except BaseException:
            await conn.close()
            raise
        return _Inline(conn)

    async def _consume(self, batches: AsyncIterator[Batch]) -> None:
        health = self.health
        async for messages, batch, bad in batches:
            for channel, error in bad:
                self._malformed(channel, error)
            health.messages += messages
            if batch:
                health.received(batch, self.clock.now())
                self.handler(batch)

    def _malformed(self, channel: bytes, error: str) -> None:
        self.health.malformed += 1
        if self.health.malformed <= 10 or self.health.malformed % 1000 == 0:
            log.warning("malformed message on %r skipped (%d so far): %s", channel, self.health.malformed, error)


class _Inline:
    """The connection read and decoded on the event loop itself."""

    def __init__(self, conn: PubSubConnection) -> None:
        self.conn = conn

    def batches(self) -> AsyncIterator[Batch]:
        return read_batches(self.conn)

    async def close(self) -> None:
        await self.conn.close()
