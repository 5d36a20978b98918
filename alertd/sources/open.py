"""Pick the event source for a broker URL: the Redis or RabbitMQ fast path, or Celery's receiver for any other."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal, Protocol

from alertd.clock import Clock
from alertd.sources.health import StreamHealth

log = logging.getLogger(__name__)

REDIS_SCHEMES = ("redis", "rediss", "unix")
AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")


class EventSource(Protocol):
    """A stream of Celery events handed to a handler in batches, on the event loop."""

    health: StreamHealth

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def wait_connected(self, timeout: float = 10.0) -> None: ...


def open_event_source(
    broker_url: str,
    handler: Callable[[list[dict[str, Any]]], None],
    clock: Clock,
    health: StreamHealth,
    *,
    transport_options: dict[str, Any] | None = None,
    durable_queue: str | None = None,
    durable_queue_ttl: float | None = None,
    reconnect_max: float = 30.0,
    transport: str = "auto",
    exchange: str = "celeryev",
    queue_ttl: float | None = 5.0,
    queue_expires: float | None = 60.0,
    decode: Literal["auto", "process", "inline"] = "auto",
) -> EventSource:
    """The Redis fast path for redis://, rediss:// and unix://, the AMQP one for amqp://, amqps:// and
    pyamqp://; Celery's receiver for any other broker, or for any broker when transport is "kombu"."""
    scheme = broker_url.split("://", 1)[0]
    fast = transport != "kombu"
    if fast and scheme in REDIS_SCHEMES:
        if durable_queue:
            # Events on Redis are PUB/SUB: there is no queue to keep them in while alertd is down.
            log.warning("events.durable_queue applies to AMQP brokers only; ignored for %s", scheme)
        from alertd.sources.redis_events import RedisEventSource

        return RedisEventSource(
            broker_url,
            handler,
            clock,
            health,
            transport_options=transport_options,
            reconnect_max=reconnect_max,
            exchange=exchange,
            decode=decode,
        )
    if fast and scheme in AMQP_SCHEMES:
        from alertd.sources.amqp_events import AmqpEventSource

        return AmqpEventSource(
            broker_url,
            handler,
            clock,
            health,
            exchange=exchange,
            queue_ttl=queue_ttl,
            queue_expires=queue_expires,
            durable_queue=durable_queue,
            durable_queue_ttl=durable_queue_ttl,
            reconnect_max=reconnect_max,
        )
    from alertd.sources.kombu_events import KombuEventSource

    return KombuEventSource(
        broker_url,
        handler,
        clock,
        health,
        transport_options=transport_options,
        durable_queue=durable_queue,
        durable_queue_ttl=durable_queue_ttl,
        reconnect_max=reconnect_max,
        exchange=exchange,
        queue_ttl=queue_ttl,
        queue_expires=queue_expires,
    )
