"""A lean AMQP 0-9-1 consumer: just enough of the protocol to follow Celery's event exchange.

Measured on the bench stream (bench/README.md), aiormq drains RabbitMQ slower than Celery's own
EventReceiver: it reads each frame with three awaits under a lock, passes it through two asyncio
queues and starts a task per message. Events on RabbitMQ expire after 5 s in Celery's queue, so
ingest speed is a reliability property. This reader keeps the Redis path's shape
(alertd.sources.resp): read up to 256 KiB, slice every complete frame out of the buffer in one
pass, hand back every delivery at once. The three frames of a delivery (Basic.Deliver, content
header, body) are parsed by hand (alertd.sources.amqp_frames); every other frame, and everything
sent, goes through pamqp, the maintained AMQP codec.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from pamqp import commands, frame, header
from pamqp.base import Frame
from pamqp.common import FieldTable

from alertd import __version__
from alertd.sources.amqp_frames import CHANNEL, AmqpError, Delivery, FrameParser

READ_SIZE = 1 << 18
CONNECT_TIMEOUT = 5.0
HANDSHAKE_TIMEOUT = 10.0
# Heartbeats tell a dead broker (or a half-open TCP connection) from a quiet one. RabbitMQ drops a
# client after two missed heartbeats, so this also bounds how long alertd's loop may stall.
DEFAULT_HEARTBEAT = 10
HEARTBEAT_FRAME = b"\x08\x00\x00\x00\x00\x00\x00\xce"


@dataclass(frozen=True)
class Endpoint:
    """One broker as kombu reads an amqp:// URL: default guest/guest, vhost '/', port 5672 (5671 TLS)."""

    host: str = "127.0.0.1"
    port: int = 5672
    tls: bool = False
    username: str = "guest"
    password: str = field(default="guest", repr=False)
    vhost: str = "/"
    heartbeat: int = DEFAULT_HEARTBEAT

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        tls = parts.scheme == "amqps"
        # kombu: the path less its first '/' is the vhost ('//' is '/'), empty means '/'.
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        query = parse_qs(parts.query)
        heartbeat = DEFAULT_HEARTBEAT
        if "heartbeat" in query:
            try:
                heartbeat = max(0, int(float(query["heartbeat"][0])))
            except ValueError:
                raise ValueError("the broker URL's heartbeat must be a number of seconds") from None
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (5671 if tls else 5672),
            tls=tls,
            username=unquote(parts.username) if parts.username else "guest",
            password=unquote(parts.password) if parts.password else "guest",
            vhost=unquote(path) or "/",
            heartbeat=heartbeat,
        )


@dataclass(frozen=True)
class QueueSpec:
    """The queue to declare and bind; `arguments` as RabbitMQ reads them (x-message-ttl in ms, ...)."""

    name: str
    durable: bool = False
    exclusive: bool = False
    auto_delete: bool = False
    arguments: dict[str, Any] = field(default_factory=dict)


def _closed(method: Frame) -> AmqpError | None:
    """The error a Close from the broker means, or None for any other method."""
    if isinstance(method, commands.Connection.Close):
        return AmqpError(f"broker closed the connection: {method.reply_code} {method.reply_text}")
    if isinstance(method, commands.Channel.Close):
        return AmqpError(f"broker closed the channel: {method.reply_code} {method.reply_text}")
    if isinstance(method, commands.Basic.Cancel):
        return AmqpError("broker cancelled the consumer (the queue was deleted?)")
    return None


class AmqpConsumer:
    """One connection, one channel, one consumer; read() returns every delivery available."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, heartbeat: int) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = FrameParser()
        self.heartbeat = heartbeat
        self.queue = ""
        self._pending: list[Delivery] = []
        self._beat: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, endpoint: Endpoint, connection_name: str = "alertd events") -> AmqpConsumer:
        """Connect, authenticate (PLAIN), tune and open a channel."""
        ctx = ssl.create_default_context() if endpoint.tls else None
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                endpoint.host,
                endpoint.port,
                ssl=ctx,
                server_hostname=endpoint.host if ctx else None,
                limit=READ_SIZE,
            ),
            CONNECT_TIMEOUT,
        )
        conn = cls(reader, writer, endpoint.heartbeat)
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                await conn._handshake(endpoint, connection_name)
        except BaseException:
            await conn.close(polite=False)
            raise
        return conn

    async def _handshake(self, ep: Endpoint, connection_name: str) -> None:
        self.writer.write(header.ProtocolHeader().marshal())
        start = await self._expect(commands.Connection.Start)
        mechanisms = start.mechanisms.split() if isinstance(start.mechanisms, str) else []
        if "PLAIN" not in mechanisms:
            raise AmqpError(f"the broker offers no PLAIN login (it offers {' '.join(mechanisms) or 'none'})")
        properties: FieldTable = {
            "product": "alertd",
            "version": __version__,
            "platform": "Python",
            "connection_name": connection_name,
            # consumer_cancel_notify: a deleted queue tells us so; authentication_failure_close: a
            # refused login gets a reason instead of a bare closed socket.
            "capabilities": {"consumer_cancel_notify": True, "authentication_failure_close": True},
        }
        self._send(
            commands.Connection.StartOk(
                client_properties=properties, mechanism="PLAIN", response=f"\0{ep.username}\0{ep.password}"
            ),
        )
        tune = await self._expect(commands.Connection.Tune)
        # The lower non-zero heartbeat of the two sides, as the spec and RabbitMQ negotiate it.
        offered = [h for h in (tune.heartbeat, ep.heartbeat) if h]
        self.heartbeat = min(offered) if offered and ep.heartbeat else 0
        self._send(
            commands.Connection.TuneOk(
                channel_max=tune.channel_max or 2047, frame_max=tune.frame_max or 131072, heartbeat=self.heartbeat
            ),
        )
        self._send(commands.Connection.Open(virtual_host=ep.vhost))
        await self._expect(commands.Connection.OpenOk)
        if self.heartbeat:
            self._beat = asyncio.create_task(self._send_heartbeats(), name="amqp-heartbeat")
        self._send(commands.Channel.Open())
        await self._expect(commands.Channel.OpenOk)

    async def consume(
        self, queue: QueueSpec, exchange: str, *, routing_key: str = "#", no_ack: bool = True, prefetch: int = 0
    ) -> str:
        """Declare the topic exchange as Celery does, declare and bind the queue, start consuming.

        Returns the queue's name. With no_ack the broker ignores prefetch and pushes as fast as
        TCP takes it; with acks, prefetch is how many deliveries may be unacknowledged at once.
        """
        if prefetch and not no_ack:
            self._send(commands.Basic.Qos(prefetch_count=min(prefetch, 65535)))
            await self._expect(commands.Basic.QosOk)
        # Celery's Exchange('celeryev', type='topic'): durable, not auto-delete. Declaring it with
        # other flags than the workers' would close the channel with PRECONDITION_FAILED.
        self._send(commands.Exchange.Declare(exchange=exchange, exchange_type="topic", durable=True))
        await self._expect(commands.Exchange.DeclareOk)
        self._send(
            commands.Queue.Declare(
                queue=queue.name,
                durable=queue.durable,
                exclusive=queue.exclusive,
                auto_delete=queue.auto_delete,
                arguments=queue.arguments,
            )
        )
        declared = await self._expect(commands.Queue.DeclareOk)
        self.queue = str(declared.queue)
        self._send(commands.Queue.Bind(queue=self.queue, exchange=exchange, routing_key=routing_key))
        await self._expect(commands.Queue.BindOk)
        self._send(commands.Basic.Consume(queue=self.queue, consumer_tag="alertd", no_ack=no_ack))
        await self._expect(commands.Basic.ConsumeOk)
        return self.queue

    async def read(self, timeout: float | None = None) -> list[Delivery]:
        """Every delivery available, waiting for at least one. AmqpError when the broker closes us."""
        if self._pending:
            out, self._pending = self._pending, []
            return out
        if timeout is None and self.heartbeat:
            timeout = self.heartbeat * 2.0  # two heartbeats missed: the broker is gone
        while True:
            data = await self._recv(timeout)
            deliveries, methods = self.parser.feed(data)
            for m in methods:
                self._check(m)
            if deliveries:
                return deliveries

    def ack(self, delivery_tag: int) -> None:
        """Acknowledge every delivery up to and including delivery_tag (one frame for a batch)."""
        self._send(commands.Basic.Ack(delivery_tag=delivery_tag, multiple=True))

    async def close(self, polite: bool = True) -> None:
        if self._beat is not None:
            self._beat.cancel()
            self._beat = None
        if polite and not self.writer.is_closing():
            # A Close lets RabbitMQ delete an exclusive queue at once, without logging an abrupt
            # disconnect; its CloseOk is not worth waiting long for.
            with contextlib.suppress(OSError, ConnectionError, TimeoutError, AmqpError, ValueError):
                self._send(
                    commands.Connection.Close(reply_code=200, reply_text="alertd stopping", class_id=0, method_id=0)
                )
                async with asyncio.timeout(1.0):
                    await self._expect(commands.Connection.CloseOk)
        self.writer.close()
        with contextlib.suppress(TimeoutError, OSError, ConnectionError, ssl.SSLError):
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)

    # -- internals --------------------------------------------------------------------------

    def _send(self, method: Frame) -> None:
        # Connection.* methods (class 10) travel on channel 0, everything else on ours.
        channel = 0 if method.index >> 16 == 10 else CHANNEL
        self.writer.write(frame.marshal(method, channel))

    async def _recv(self, timeout: float | None) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                data = await self.reader.read(READ_SIZE)
        except TimeoutError:
            raise TimeoutError(f"nothing from the broker in {timeout:g}s (heartbeats missed)") from None
        if not data:
            raise ConnectionError("connection closed by the broker")
        return data

    def _check(self, method: Frame) -> None:
        error = _closed(method)
        if error is None:
            return
        if isinstance(method, commands.Connection.Close):
            self._send(commands.Connection.CloseOk())
        elif isinstance(method, commands.Channel.Close):
            self._send(commands.Channel.CloseOk())
        raise error

    async def _expect(self, kind: type[Any], timeout: float = HANDSHAKE_TIMEOUT) -> Any:
        """The next method of this type; deliveries read meanwhile are kept for read()."""
        while True:
            data = await self._recv(timeout)
            deliveries, methods = self.parser.feed(data)
            self._pending.extend(deliveries)
            for i, m in enumerate(methods):
                if isinstance(m, kind):
                    if methods[i + 1 :]:
                        for rest in methods[i + 1 :]:
                            self._check(rest)
                    return m
                if isinstance(m, commands.Connection.Close | commands.Channel.Close):
                    self._check(m)

    async def _send_heartbeats(self) -> None:
        # Sent whatever the traffic: a consumer without acks writes nothing else, and RabbitMQ
        # judges a client by what it receives from it.
        while True:
            await asyncio.sleep(self.heartbeat / 2)
            if self.writer.is_closing():
                return
            self.writer.write(HEARTBEAT_FRAME)
