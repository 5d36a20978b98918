"""AMQP 0-9-1 frames in: cutting complete frames out of the byte stream, deliveries by hand.

The three frames of a delivery (Basic.Deliver, content header, body) are parsed here without
pamqp, in one pass over the buffer (see alertd.sources.amqp_wire for why); every other frame is
decoded by pamqp. What is sent, and the connection itself, are alertd.sources.amqp_wire's.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from pamqp import frame
from pamqp.base import Frame
from pamqp.exceptions import PAMQPException

CHANNEL = 1
FRAME_END = 0xCE
_FRAME_HEAD = struct.Struct(">BHI")
_CLASS_METHOD = struct.Struct(">HH")
_U64 = struct.Struct(">Q")
_U16 = struct.Struct(">H")
_DELIVER = (60, 60)  # Basic.Deliver


class AmqpError(ConnectionError):
    """The broker closed the connection or the channel, refused us, or sent bytes that are not AMQP."""


class Delivery(NamedTuple):
    routing_key: str
    body: bytes
    content_type: str | None
    delivery_tag: int


class FrameParser:
    """Cuts complete frames out of a byte stream: deliveries for channel 1, and every other frame.

    A delivery spans three frames (or more, for a body larger than frame_max) that may arrive in
    separate reads, so the parser keeps the half-assembled one between calls.
    """

    def __init__(self) -> None:
        self.buf = bytearray()
        self._routing_key = ""
        self._tag = 0
        self._in_delivery = False
        self._content_type: str | None = None
        self._size = -1  # body size from the content header; -1 while waiting for the header
        self._chunks: list[bytes] = []
        self._received = 0

    def feed(self, data: bytes) -> tuple[list[Delivery], list[Frame]]:
        """Append data; return the deliveries completed and the other method frames, in order."""
        buf = self.buf
        buf += data
        deliveries: list[Delivery] = []
        methods: list[Frame] = []
        n = len(buf)
        pos = 0
        unpack_head = _FRAME_HEAD.unpack_from
        while pos + 8 <= n:
            ftype, channel, size = unpack_head(buf, pos)
            start = pos + 7
            end = start + size
            if end >= n:
                break  # the frame (or its end octet) is still on its way
            if buf[end] != FRAME_END:
                raise AmqpError("the broker sent a frame without its end octet: not AMQP 0-9-1")
            if ftype == 1:
                if _CLASS_METHOD.unpack_from(buf, start) == _DELIVER and channel == CHANNEL:
                    self._start_delivery(buf, start + 4)
                else:
                    methods.append(self._method(bytes(buf[pos : end + 1])))
            elif ftype == 2:
                if not self._in_delivery:
                    raise AmqpError("content header outside a delivery")
                self._header(buf, start)
                if self._size == 0:
                    deliveries.append(self._finish(b""))
            elif ftype == 3:
                if not self._in_delivery or self._size < 0:
                    raise AmqpError("content body outside a delivery")
                if not self._chunks and size == self._size:
                    deliveries.append(self._finish(bytes(buf[start:end])))  # the common case: one body frame
                else:
                    self._chunks.append(bytes(buf[start:end]))
                    self._received += size
                    if self._received >= self._size:
                        deliveries.append(self._finish(b"".join(self._chunks)))
            elif ftype != 8:  # 8: heartbeat, nothing to do but having received it
                raise AmqpError(f"unknown frame type {ftype}")
            pos = end + 1
        if pos:
            del buf[:pos]
        return deliveries, methods

    def _start_delivery(self, buf: bytearray, p: int) -> None:
        p += 1 + buf[p]  # consumer tag
        (self._tag,) = _U64.unpack_from(buf, p)
        p += 9  # delivery tag, redelivered
        p += 1 + buf[p]  # exchange
        length = buf[p]
        self._routing_key = buf[p + 1 : p + 1 + length].decode(errors="replace")
        self._in_delivery = True
        self._size = -1
        self._chunks = []
        self._received = 0

    def _header(self, buf: bytearray, p: int) -> None:
        (self._size,) = _U64.unpack_from(buf, p + 4)  # after class id and weight
        (flags,) = _U16.unpack_from(buf, p + 12)
        self._content_type = None
        if flags & 0x8000:  # content-type is the first property when present
            length = buf[p + 14]
            self._content_type = buf[p + 15 : p + 15 + length].decode(errors="replace")

    def _finish(self, body: bytes) -> Delivery:
        self._in_delivery = False
        self._size = -1
        self._chunks = []
        return Delivery(self._routing_key, body, self._content_type, self._tag)

    @staticmethod
    def _method(raw: bytes) -> Frame:
        try:
            _, _, value = frame.unmarshal(raw)
        except PAMQPException as e:
            raise AmqpError(f"undecodable frame from the broker: {e}") from None
        if not isinstance(value, Frame):
            raise AmqpError(f"unexpected frame {type(value).__name__}")
        return value
