"""Where observations come from: the broker's event stream and periodic broker/worker samples."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from alertd.clock import Clock
from alertd.sources.health import StreamHealth

REDIS_SCHEMES = ("redis", "rediss", "unix")


class EventSource(Protocol):
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
) -> EventSource:
    """The Redis fast path for redis:// brokers (unless a durable queue is asked for), else kombu."""
    scheme = broker_url.split("://", 1)[0]
    if scheme in REDIS_SCHEMES:
        from alertd.sources.redis_events import RedisEventSource

        return RedisEventSource(
            broker_url, handler, clock, health, transport_options=transport_options, reconnect_max=reconnect_max
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
    )
