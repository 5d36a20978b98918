"""Events from any kombu broker (SQS, ...) through Celery's own EventReceiver.

RabbitMQ has its own fast path (alertd.sources.amqp_events); this one serves it only when
`events.transport: kombu` asks for it.

The receiver is blocking, so it runs in a thread and hands batches to the event loop: events
accumulate in a list and one flush is scheduled when the list goes from empty to non-empty, so a
burst costs one loop wake-up, not one per event.

On AMQP each receiver normally gets an auto-delete `celeryev.<uuid>` queue with a 5 s message TTL:
events sent while alertd restarts are lost. With `durable_queue` the queue is named, durable and
survives alertd (as Leek does), with its own TTL so an abandoned queue does not grow forever.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

from celery import Celery
from kombu.entity import Queue

from alertd.clock import Clock
from alertd.redact import redact_text, redact_url
from alertd.sources.health import StreamHealth

log = logging.getLogger(__name__)

Handler = Callable[[list[dict[str, Any]]], None]


class KombuEventSource:
    """Celery's EventReceiver in a thread, reconnecting with backoff."""

    def __init__(
        self,
        broker_url: str,
        handler: Handler,
        clock: Clock,
        health: StreamHealth,
        *,
        transport_options: dict[str, Any] | None = None,
        durable_queue: str | None = None,
        durable_queue_ttl: float | None = None,
        reconnect_max: float = 30.0,
        exchange: str = "celeryev",
        queue_ttl: float | None = 5.0,
        queue_expires: float | None = 60.0,
    ) -> None:
        self.url = broker_url
        self.handler = handler
        self.clock = clock
        self.health = health
        self.transport_options = transport_options or {}
        self.durable_queue = durable_queue
        self.durable_queue_ttl = durable_queue_ttl
        self.reconnect_max = reconnect_max
        self.exchange = exchange
        self.queue_ttl = queue_ttl
        self.queue_expires = queue_expires
        self.health.transport = "kombu"
        self.health.decoder = "thread"
        self.health.broker = redact_url(broker_url)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._receiver: Any = None
        self._connected = asyncio.Event()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name=f"kombu-events-{id(self):x}", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        if self._receiver is not None:
            self._receiver.should_stop = True
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10.0)
            if self._thread.is_alive():
                log.warning("event receiver thread did not stop within 10s; abandoning it")
            self._thread = None
        self._flush()

    async def wait_connected(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        app = Celery(broker=self.url, set_as_current=False)
        app.conf.broker_transport_options = self.transport_options
        app.conf.broker_connection_retry_on_startup = False
        app.conf.event_exchange = self.exchange
        app.conf.event_queue_ttl = self.queue_ttl
        app.conf.event_queue_expires = self.queue_expires
        backoff = 0.5
        while not self._stop.is_set():
            try:
                with app.connection_for_read() as conn:
                    conn.ensure_connection(max_retries=1)
                    receiver = app.events.Receiver(conn, handlers={"*": self._on_event})
                    # Celery's receiver "localizes" timestamps, shifting each by the difference of
                    # the sender's UTC offset and ours: a producer in another time zone then looks
                    # hours off, and waits across zones come out wrong. Keep the senders' own
                    # timestamps (epoch seconds, as the fast paths do); skew is the observer's business.
                    receiver.event_from_message = functools.partial(receiver.event_from_message, localize=False)
                    if self.durable_queue:
                        receiver.queue = Queue(  # type: ignore[no-untyped-call]
                            self.durable_queue,
                            exchange=receiver.exchange,
                            routing_key="#",
                            durable=True,
                            auto_delete=False,
                            message_ttl=self.durable_queue_ttl,
                            expires=self.durable_queue_ttl * 4 if self.durable_queue_ttl else None,
                        )
                    self._receiver = receiver
                    # "Connected" only once the queue is declared and bound: from then on the
                    # broker keeps events for us (a durable queue even across a stop).
                    ready = receiver.on_consume_ready

                    def on_consume_ready(*args: Any, _ready: Any = ready, **kwargs: Any) -> None:
                        _ready(*args, **kwargs)
                        self._call(self._mark_connected)

                    receiver.on_consume_ready = on_consume_ready
                    backoff = 0.5
                    receiver.capture(limit=None, timeout=None, wakeup=False)
                    if self._stop.is_set():
                        return
            except Exception as e:  # kombu raises many connection error types, transport-specific
                if self._stop.is_set():
                    return
                error = redact_text(str(e) or type(e).__name__)
                self._call(functools.partial(self._mark_disconnected, error))
            finally:
                self._receiver = None
            self._stop.wait(backoff)
            backoff = min(backoff * 2, self.reconnect_max)

    def _on_event(self, event: dict[str, Any]) -> None:
        with self._lock:
            first = not self._pending
            self._pending.append(event)
        if first:
            self._call(self._flush)

    def _call(self, fn: Callable[[], None]) -> None:
        if self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(fn)
            except RuntimeError:  # loop closing during shutdown
                pass

    # -- on the loop -----------------------------------------------------------------------

    def _flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return
        self.health.messages += len(batch)
        self.health.received(batch, self.clock.now())  # our clock, not the one EventReceiver set
        self.handler(batch)

    def _mark_connected(self) -> None:
        self.health.mark_connected(self.clock.now())
        self._connected.set()
        log.info("consuming events from %s", self.health.broker)

    def _mark_disconnected(self, error: str) -> None:
        if self.health.connected:
            log.warning("event stream lost (%s); reconnecting", error)
        self._connected.clear()
        self.health.mark_disconnected(self.clock.now(), error)
