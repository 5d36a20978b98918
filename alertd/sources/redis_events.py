"""The Redis fast path: Celery events straight off the PUB/SUB channels.

Redis keeps nothing for a pub/sub subscriber: a consumer that falls behind grows its output buffer
until Redis drops it (32 MB by default). So this path skips kombu's per-message machinery (and
redis-py's), subscribes to `{global_keyprefix}/{db}.celeryev/*` over a lean RESP reader
(alertd.sources.resp), decodes kombu's envelope with orjson, and hands the loop whole batches.
"""

from __future__ import annotations

import asyncio
import binascii
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import orjson

from alertd.clock import Clock
from alertd.redact import redact_text, redact_url
from alertd.sources.health import StreamHealth
from alertd.sources.probe import back_off
from alertd.sources.resp import Endpoint, PubSubConnection, RespError

log = logging.getLogger(__name__)

Handler = Callable[[list[dict[str, Any]]], None]

FIRST_BACKOFF = 0.5
HEALTH_CHECK_SECONDS = 5.0


def event_channel_pattern(broker_url: str, transport_options: dict[str, Any] | None, exchange: str = "celeryev") -> str:
    """The psubscribe pattern kombu's Redis transport publishes events on, e.g. '/0.celeryev/*'."""
    path = urlsplit(broker_url).path.strip("/")
    db = int(path) if path.isdigit() else int((transport_options or {}).get("db", 0) or 0)
    prefix = str((transport_options or {}).get("global_keyprefix", "") or "")
    return f"{prefix}/{db}.{exchange}/*"


def decode_message(data: bytes) -> list[dict[str, Any]]:
    """kombu envelope → Celery event dicts (task.multi bodies hold a list). Raises ValueError."""
    try:
        envelope = orjson.loads(data)
        body = envelope["body"]
        props = envelope.get("properties") or {}
        if props.get("body_encoding") == "base64":
            body = binascii.a2b_base64(body)  # base64.b64decode(body, validate=False) without its wrapper
        ctype = envelope.get("content-type", "application/json")
        if ctype != "application/json":
            raise ValueError(f"events must be JSON (Celery's default event_serializer), got {ctype}")
        payload = orjson.loads(body)
    except (orjson.JSONDecodeError, KeyError, TypeError, binascii.Error, AttributeError) as e:
        raise ValueError(f"not a kombu event message: {e}") from None
    if type(payload) is dict:  # what orjson makes: exactly dict and list
        return [payload]
    if type(payload) is list:
        for event in payload:
            if type(event) is not dict:
                break
        else:
            return payload
    raise ValueError("event body is neither an object nor a list of objects")


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
    ) -> None:
        self.url = broker_url
        self.handler = handler
        self.clock = clock
        self.health = health
        self.pattern = event_channel_pattern(broker_url, transport_options, exchange)
        self.reconnect_max = reconnect_max
        self.health.transport = "redis-fast"
        self.health.broker = redact_url(broker_url)
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
            conn: PubSubConnection | None = None
            reachable = True
            try:
                conn = await PubSubConnection.open(self.url)
                await conn.psubscribe(self.pattern)
                self.health.mark_connected(self.clock.now())
                self._connected.set()
                log.info("subscribed to %s on %s", self.pattern, self.health.broker)
                backoff = FIRST_BACKOFF
                await self._consume(conn)
            except asyncio.CancelledError:
                raise
            except (OSError, ConnectionError, TimeoutError, ValueError) as e:
                # RespError: the server answered and refused (AUTH, an unexpected reply); anything
                # else is the network or a server not (yet) there, worth probing for its return.
                reachable = isinstance(e, RespError | ValueError)
                error = redact_text(str(e) or type(e).__name__)
                if self.health.connected:
                    log.warning("event stream lost (%s); reconnecting", error)
                self._connected.clear()
                self.health.mark_disconnected(self.clock.now(), error)
            finally:
                if conn is not None:
                    await conn.close()
            log.debug("next attempt to subscribe in %gs%s", backoff, "" if reachable else " (probing)")
            await back_off(self.clock, backoff, None if reachable else where)
            backoff = min(backoff * 2, self.reconnect_max)

    async def _consume(self, conn: PubSubConnection) -> None:
        health = self.health
        pinged = False
        while True:
            try:
                # A pub/sub connection is idle whenever nothing happens; a PING after a quiet
                # spell tells an idle server from a dead one (whose TCP connection may linger).
                msgs = await conn.read(HEALTH_CHECK_SECONDS)
            except TimeoutError:
                if pinged:
                    raise ConnectionError(f"no answer to PING within {HEALTH_CHECK_SECONDS:g}s") from None
                conn.ping()
                pinged = True
                continue
            pinged = False
            if not msgs:
                continue
            batch: list[dict[str, Any]] = []
            for channel, data in msgs:
                try:
                    batch.extend(decode_message(data))
                except ValueError as e:
                    self._malformed(channel, e)
            health.messages += len(msgs)
            if batch:
                health.received(batch, self.clock.now())
                self.handler(batch)

    def _malformed(self, channel: bytes, e: ValueError) -> None:
        self.health.malformed += 1
        if self.health.malformed <= 10 or self.health.malformed % 1000 == 0:
            log.warning("malformed message on %r skipped (%d so far): %s", channel, self.health.malformed, e)
