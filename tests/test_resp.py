"""The RESP reader: messages split anywhere across reads come out whole and in order."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertd.sources.resp import Endpoint, RespError, parse_frames


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


def test_errors_and_garbage_drop_the_connection() -> None:
    with pytest.raises(RespError, match="NOAUTH"):
        parse_frames(bytearray(b"-NOAUTH Authentication required.\r\n"))
    with pytest.raises(RespError):
        parse_frames(bytearray(b"?what\r\n"))


def test_endpoints_from_urls() -> None:
    assert Endpoint.from_url("redis://:s3cret@h:6380/2") == Endpoint("h", 6380, None, False, None, "s3cret")
    assert Endpoint.from_url("rediss://u:p@h/0").tls
    assert Endpoint.from_url("unix:///run/redis.sock?db=1").path == "/run/redis.sock"
