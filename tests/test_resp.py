"""The RESP reader: messages split anywhere across reads come out whole and in order."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertd.sources.resp import Endpoint, PubSubConnection, RespError, parse_frames


def pmessage(pattern: bytes, channel: bytes, data: bytes) -> bytes:
    parts = [b"pmessage", pattern, channel, data]
    return b"*4\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


@settings(max_examples=200, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=300), min_size=1, max_size=20),
    cuts=st.lists(st.integers(min_value=1, max_value=40), max_size=30),
)
def test_frames_survive_arbitrary_read_boundaries(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"*3\r\n$10\r\npsubscribe\r\n$3\r\n/0*\r\n:1\r\n" + b"".join(
        pmessage(b"/0*", b"/0.celeryev/task.multi", p) for p in payloads
    )
    buf, got, i = bytearray(), [], 0
    for size in [*cuts, len(stream)]:
        buf += stream[i : i + size]
        i += size
        frames, pos = parse_frames(buf)
        del buf[:pos]
        got.extend(frames)
        if i >= len(stream):
            break
    assert got[0] == [b"psubscribe", b"/0*", 1]
    assert [f[3] for f in got[1:]] == payloads
    assert not buf


class Sent:
    """The connection's writer: what it sent is not the point here."""

    def write(self, data: bytes) -> None:
        pass


def feed_in_cuts(stream: bytes, cuts: list[int]) -> tuple[asyncio.StreamReader, asyncio.Task[None]]:
    reader = asyncio.StreamReader()

    async def feed() -> None:
        i = 0
        for size in [*cuts, len(stream)]:
            reader.feed_data(stream[i : i + size])
            i += size
            for _ in range(3):  # let the connection read what has come so far
                await asyncio.sleep(0)
            if i >= len(stream):
                break

    return reader, asyncio.create_task(feed())


@settings(max_examples=200, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=300), min_size=1, max_size=20),
    cuts=st.lists(st.integers(min_value=1, max_value=40), max_size=30),
)
def test_connection_reads_messages_split_anywhere_including_into_the_handshake(
    payloads: list[bytes], cuts: list[int]
) -> None:
    # The subscription's reply and the first messages may arrive in one read: those read with
    # the handshake's parser must reach the message stream's reader, and none twice.
    stream = b"*3\r\n$10\r\npsubscribe\r\n$3\r\n/0*\r\n:1\r\n" + b"".join(
        pmessage(b"/0*", b"/0.celeryev/task.multi", p) for p in payloads
    )

    async def main() -> list[tuple[bytes, bytes]]:
        reader, feeding = feed_in_cuts(stream, cuts)
        conn = PubSubConnection(reader, Sent())  # type: ignore[arg-type]
        await conn.psubscribe("/0*")
        got: list[tuple[bytes, bytes]] = []
        while len(got) < len(payloads):
            got.extend(await conn.read(1.0))
        await feeding
        return got

    got = asyncio.run(main())
    assert got == [(b"/0.celeryev/task.multi", p) for p in payloads]


@pytest.mark.parametrize("bad", [b"-ERR something broke\r\n", b"?what\r\n"])
async def test_an_error_or_garbage_in_the_message_stream_drops_the_connection(bad: bytes) -> None:
    stream = b"*3\r\n$10\r\npsubscribe\r\n$3\r\n/0*\r\n:1\r\n" + pmessage(b"/0*", b"/0.x", b"ok") + bad
    reader, feeding = feed_in_cuts(stream, [])
    conn = PubSubConnection(reader, Sent())  # type: ignore[arg-type]
    await conn.psubscribe("/0*")
    with pytest.raises(RespError, match="something broke" if bad.startswith(b"-") else None):
        while True:
            await conn.read(1.0)
    await feeding


def test_errors_and_garbage_drop_the_connection() -> None:
    with pytest.raises(RespError, match="NOAUTH"):
        parse_frames(bytearray(b"-NOAUTH Authentication required.\r\n"))
    with pytest.raises(RespError):
        parse_frames(bytearray(b"?what\r\n"))


def test_endpoints_from_urls() -> None:
    assert Endpoint.from_url("redis://:s3cret@h:6380/2") == Endpoint("h", 6380, None, False, None, "s3cret")
    assert Endpoint.from_url("rediss://u:p@h/0").tls
    assert Endpoint.from_url("unix:///run/redis.sock?db=1").path == "/run/redis.sock"
