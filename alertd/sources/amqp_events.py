"""The RabbitMQ fast path: Celery events off the `celeryev` topic exchange, in the event loop.

Celery's EventReceiver is blocking, so on AMQP it needs a thread that fights the event loop for the
GIL; and each receiver's queue drops messages older than 5 s (`event_queue_ttl`), so a consumer
that falls behind loses events. This path reads the broker in the loop over a lean AMQP reader
(alertd.sources.amqp_wire), decodes each body with orjson and hands the observer whole batches.

The queue is declared as Celery 5.6+ declares a receiver's on RabbitMQ 4: `celeryev.<uuid>`,
exclusive and auto-delete, `x-message-ttl` from event_queue_ttl and `x-expires` from
event_queue_expires, bound with '#'. Deliveries are not acknowledged (Celery's receiver does not
either). With `events.durable_queue` the queue is named, durable and outlives alertd, with its own
TTL so an abandoned queue does not grow forever; there every batch is acknowledged with one
multiple-ack once the observer has it, so a crash loses nothing the broker still holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from alertd.clock import Clock
from alertd.redact import redact_text, redact_url
from alertd.sources.amqp_frames import AmqpError, Delivery
from alertd.sources.amqp_wire import AmqpConsumer, Endpoint, QueueSpec
from alertd.sources.health import StreamHealth

log = logging.getLogger(__name__)

Handler = Callable[[list[dict[str, Any]]], None]

FIRST_BACKOFF = 0.5
# While backing off from an unreachable broker, a bare TCP connect this often notices its return,
# so a long backoff does not keep alertd blind for up to reconnect_max after the broker is back.
PROBE_INTERVAL = 0.5
PREFETCH = 10_000  # durable queue: deliveries in flight before the first multiple-ack
JSON_TYPES = frozenset({"application/json", ""})


def decode_body(body: bytes, content_type: str | None) -> list[dict[str, Any]]:
    """One AMQP message → Celery event dicts (task.multi bodies hold a list). Raises ValueError.

    On AMQP kombu sends the serialized body as it is (no base64 envelope, unlike its Redis
    transport), with the serializer in content_type.
    """
    if content_type not in JSON_TYPES and content_type is not None:
        raise ValueError(f"events must be JSON (Celery's default event_serializer), got {content_type}")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise ValueError(f"not a JSON event body: {e}") from None
    if isinstance(payload, dict):
        return [payload]
    if isinstance(payload, list) and all(isinstance(e, dict) for e in payload):
        return payload
    raise ValueError("event body is neither an object nor a list of objects")


def broker_endpoints(broker_url: str) -> list[Endpoint]:
    """Every broker of a Celery failover URL ('amqp://a//;amqp://b//'), tried in turn."""
    return [Endpoint.from_url(u.strip()) for u in broker_url.split(";") if u.strip()]


def event_queue(
    durable_queue: str | None,
    durable_queue_ttl: float | None,
    queue_ttl: float | None,
    queue_expires: float | None,
) -> QueueSpec:
    """The queue to consume: Celery's per-receiver queue, or the named durable one."""
    if durable_queue:
        ttl = durable_queue_ttl
        return QueueSpec(durable_queue, durable=True, arguments=_ttl_arguments(ttl, ttl * 4 if ttl else None))
    # Exclusive, as Celery 5.6+ declares it: RabbitMQ 4 deprecates transient non-exclusive queues.
    return QueueSpec(
        f"celeryev.{uuid.uuid4()}",
        exclusive=True,
        auto_delete=True,
        arguments=_ttl_arguments(queue_ttl, queue_expires),
    )


def _ttl_arguments(message_ttl: float | None, expires: float | None) -> dict[str, Any]:
    # kombu's Queue(message_ttl=, expires=) in seconds become these arguments in milliseconds.
    args: dict[str, Any] = {}
    if message_ttl:
        args["x-message-ttl"] = int(message_ttl * 1000)
    if expires:
        args["x-expires"] = int(expires * 1000)
    return args


class AmqpEventSource:
    """Consume Celery's event exchange in the loop; reconnect with backoff; keep StreamHealth current."""

    def __init__(
        self,
        broker_url: str,
        handler: Handler,
        clock: Clock,
        health: StreamHealth,
        *,
        exchange: str = "celeryev",
        queue_ttl: float | None = 5.0,
        queue_expires: float | None = 60.0,
        durable_queue: str | None = None,
        durable_queue_ttl: float | None = None,
        reconnect_max: float = 30.0,
        prefetch: int = PREFETCH,
        connection_name: str | None = None,
    ) -> None:
        self.handler = handler
        self.clock = clock
        self.health = health
        self.endpoints = broker_endpoints(broker_url)
        if not self.endpoints:
            raise ValueError("no broker in the URL")
        self._secrets = [e.password for e in self.endpoints if e.password != "guest"]
        self.exchange = exchange
        self.queue_ttl = queue_ttl
        self.queue_expires = queue_expires
        self.durable_queue = durable_queue
        self.durable_queue_ttl = durable_queue_ttl
        self.reconnect_max = reconnect_max
        self.prefetch = prefetch
        # Shown by RabbitMQ (management UI, rabbitmqctl list_connections): which alertd this is.
        self.connection_name = connection_name or f"alertd events ({socket.gethostname()}, pid {os.getpid()})"
        self.queue = ""  # the queue being consumed, once connected
        self.health.transport = "amqp-fast"
        self.health.decoder = "loop"
        self.health.broker = ";".join(redact_url(u.strip()) for u in broker_url.split(";") if u.strip())
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="amqp-events")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def wait_connected(self, timeout: float = 10.0) -> None:
        """For tests and startup: returns once the queue is bound and consumed."""
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def _run(self) -> None:
        backoff = FIRST_BACKOFF
        attempt = 0
        while True:
            endpoint = self.endpoints[attempt % len(self.endpoints)]
            conn: AmqpConsumer | None = None
            reachable = True
            try:
                conn = await AmqpConsumer.open(endpoint, self.connection_name)
                queue = event_queue(self.durable_queue, self.durable_queue_ttl, self.queue_ttl, self.queue_expires)
                acks = bool(self.durable_queue)
                self.queue = await conn.consume(queue, self.exchange, no_ack=not acks, prefetch=self.prefetch)
                # "Connected" once bound and consumed: from now on the broker keeps events for us.
                self.health.mark_connected(self.clock.now())
                self._connected.set()
                log.info("consuming events from %s (queue %s)", self._where(endpoint), self.queue)
                backoff = FIRST_BACKOFF
                await self._consume(conn, acks)
            except asyncio.CancelledError:
                raise
            except (OSError, ConnectionError, TimeoutError, ValueError) as e:
                # AmqpError: the broker answered and refused or closed us; anything else is the
                # network or a broker that is not (yet) there, worth probing for its return.
                reachable = isinstance(e, AmqpError)
                error = redact_text(str(e) or type(e).__name__, self._secrets)
                if self.health.connected:
                    log.warning("event stream lost (%s); reconnecting", error)
                elif not self.health.gaps or self.health.last_error != error:
                    log.warning("cannot consume events from %s: %s", self._where(endpoint), error)
                self._connected.clear()
                self.health.mark_disconnected(self.clock.now(), error)
            finally:
                if conn is not None:
                    await conn.close()
            attempt += 1
            await self._back_off(backoff, None if reachable else endpoint)
            backoff = min(backoff * 2, self.reconnect_max)

    async def _back_off(self, seconds: float, probe: Endpoint | None) -> None:
        """Sleep `seconds`; when the broker was unreachable, stop early once its port answers again."""
        if probe is None or seconds <= PROBE_INTERVAL:
            await self.clock.sleep(seconds)
            return
        deadline = self.clock.now() + seconds
        while (left := deadline - self.clock.now()) > 0:
            await self.clock.sleep(min(PROBE_INTERVAL, left))
            if await _port_open(probe):
                return

    async def _consume(self, conn: AmqpConsumer, acks: bool) -> None:
        health = self.health
        while True:
            deliveries = await conn.read()
            batch: list[dict[str, Any]] = []
            for d in deliveries:
                self._decode_into(d, batch)
            health.messages += len(deliveries)
            if batch:
                health.received(batch, self.clock.now())
                self.handler(batch)
            if acks:
                conn.ack(deliveries[-1].delivery_tag)

    def _decode_into(self, d: Delivery, batch: list[dict[str, Any]]) -> None:
        try:
            batch.extend(decode_body(d.body, d.content_type))
        except ValueError as e:
            self.health.malformed += 1
            if self.health.malformed <= 10 or self.health.malformed % 1000 == 0:
                log.warning(
                    "malformed message with routing key %r skipped (%d so far): %s",
                    d.routing_key,
                    self.health.malformed,
                    e,
                )

    def _where(self, endpoint: Endpoint) -> str:
        scheme = "amqps" if endpoint.tls else "amqp"
        return f"{scheme}://{endpoint.host}:{endpoint.port}/{endpoint.vhost}"


async def _port_open(endpoint: Endpoint) -> bool:
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(endpoint.host, endpoint.port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), 1.0)
    return True
