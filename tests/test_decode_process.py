"""The Redis stream decoded in a child process (alertd.sources.decode_process), against a real Redis.

What the loop gets from the child must be exactly what its own reader would have made; the child
must never outlive alertd, never see the password on its command line, and its death must be a
visible gap after which alertd goes on reading, never blindness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from alertd.clock import WallClock
from alertd.sources import decode_process, open_event_source
from alertd.sources.decode_process import _encode
from alertd.sources.health import StreamHealth
from alertd.sources.redis_events import RedisEventSource, event_channel_pattern
from tests.sources_fixtures import Batches, envelope, heartbeat, wait_for

ROOT = Path(__file__).resolve().parent.parent

# JSON as orjson reads it: what a body may hold, the integers within 64 bits.
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
_json = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4)
)
_events = st.lists(st.dictionaries(st.text(), _json, max_size=6), max_size=5)


@settings(max_examples=120, deadline=None)
@given(events=_events, channels=st.lists(st.binary(max_size=20), max_size=3))
def test_what_the_child_writes_the_loop_reads_back_unchanged(
    events: list[dict[str, Any]], channels: list[bytes]
) -> None:
    # Whatever orjson parsed from a body, the child's frame carries it exactly (the channel of a
    # malformed message too, byte for byte); nothing is lost in the hand-over.
    events = orjson.loads(orjson.dumps(events))  # as decode_message would have made them
    bad = [(c, f"why {i}") for i, c in enumerate(channels)]
    messages, got, malformed = orjson.loads(_encode((7, events, bad)))
    assert messages == 7 and got == events
    assert [(c.encode("latin-1"), why) for c, why in malformed] == bad


@pytest.mark.parametrize(
    ("files", "want"),
    [
        ({}, 2),  # no cgroup files: the affinity
        ({"cpu.max": "max 100000\n"}, 2),
        ({"cpu.max": "150000 100000\n"}, 2),  # docker --cpus 1.5: the child pays
        ({"cpu.max": "120000 100000\n"}, 1),  # --cpus 1.2: not worth a second process
        ({"cpu.max": "50000 100000\n"}, 1),
        ({"cpu.max": "garbage\n"}, 2),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2),  # cgroup v1, no limit
        ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),
    ],
)
def test_the_cpus_counted_are_those_alertd_may_use(tmp_path: Path, files: dict[str, str], want: int) -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs to tell a quota from the affinity")
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert decode_process.cpus(str(tmp_path)) == want


def _channel(url: str, routing_key: str = "worker.heartbeat") -> str:
    return event_channel_pattern(url, None).replace("*", routing_key)


def _stream() -> list[tuple[str, bytes]]:
    """Good events of every shape, task.multi batches, and garbage, on their channels."""
    odd = heartbeat(
        "célery@wörker ☃",
        seq=0,
        big=2**63 - 1,
        small=-(2**63),
        ratio=0.1 + 0.2,
        tiny=5e-324,
        nested={"a": [1, {"b": None}], "": True},
        text='line\nbreak "quoted" \\ \u2028 \U0001f600',
    )
    good = [
        ("worker.heartbeat", envelope(odd)),
        ("task.multi", envelope([heartbeat(seq=i) for i in range(1, 9)], "task.multi")),
        ("worker.heartbeat", b"not json at all"),
        ("worker.heartbeat", envelope([heartbeat(seq=9), 3])),
        ("worker.heartbeat", envelope(heartbeat(seq=10), **{"content-type": "application/x-python-serialize"})),
    ]
    return [*good, *((rk, envelope(heartbeat(seq=100 + i))) for i, (rk, _) in enumerate(good * 20))]


async def test_the_child_hands_the_loop_exactly_what_its_own_reader_makes(redis_url: str) -> None:
    sources: dict[str, tuple[RedisEventSource, Batches, StreamHealth]] = {}
    for decode in ("process", "inline"):
        got, health = Batches(), StreamHealth()
        source = open_event_source(redis_url, got, WallClock(), health, decode=decode)  # type: ignore[arg-type]
        assert isinstance(source, RedisEventSource)
        sources[decode] = (source, got, health)
        await source.start()
    r = redis.Redis.from_url(redis_url)
    try:
        for source, _, _ in sources.values():
            await source.wait_connected()
        assert sources["process"][0].decoder_pid and sources["inline"][0].decoder_pid is None
        stream = _stream()
        for rk, raw in stream:
            r.publish(_channel(redis_url, rk), raw)
        for _, _, health in sources.values():
            await wait_for(lambda h=health: h.messages == len(stream), what="every message")  # type: ignore[misc]

        def seen(decode: str) -> list[dict[str, Any]]:
            return [{k: v for k, v in e.items() if k != "local_received"} for e in sources[decode][1].events]

        assert seen("process") == seen("inline") and len(seen("process")) == 1 + 8 + 100
        assert seen("process")[0]["hostname"] == "célery@wörker ☃" and seen("process")[0]["big"] == 2**63 - 1
        p, i = sources["process"][2], sources["inline"][2]
        assert (p.events, p.messages, p.malformed) == (i.events, i.messages, i.malformed) == (109, 105, 3)
        assert all(type(e["local_received"]) is float for e in sources["process"][1].events)
    finally:
        for source, _, _ in sources.values():
            await source.stop()
        r.close()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"  # a zombie is dead, only not yet reaped
    except OSError:
        return False


@contextlib.asynccontextmanager
async def _source(redis_url: str) -> AsyncIterator[tuple[RedisEventSource, Batches, StreamHealth, redis.Redis]]:
    """A source asked to decode in a child, connected; and a client to publish with."""
    got, health = Batches(), StreamHealth()
    source = open_event_source(redis_url, got, WallClock(), health, decode="process", reconnect_max=0.5)
    assert isinstance(source, RedisEventSource)
    await source.start()
    r = redis.Redis.from_url(redis_url)
    try:
        await source.wait_connected()
        yield source, got, health, r
    finally:
        await source.stop()
        r.close()


async def test_a_decoder_killed_is_a_gap_then_the_loop_reads_on(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with _source(redis_url) as (source, got, health, r):
        pid = source.decoder_pid
        assert pid and _alive(pid) and health.to_dict()["decoder"] == "process"
        # A service manager's SIGTERM to the whole group is for alertd to act on, not the child.
        os.kill(pid, signal.SIGTERM)
        r.publish(_channel(redis_url), envelope(heartbeat(seq=1)))
        await wait_for(lambda: health.events == 1, what="an event through the child after a SIGTERM")
        assert health.connected and health.reconnects == 0 and source.decoder_pid == pid

        os.kill(pid, signal.SIGKILL)  # the OOM killer, say
        await wait_for(lambda: health.reconnects == 1 and health.connected, what="the source to read on")
        down, up = health.gaps[-1]
        assert up is not None and up >= down and "decoder process exited" in health.last_error
        assert source.decoder_pid is None and not source.decode_process  # the loop decodes now
        assert health.to_dict()["decoder"] == "loop"
        assert any("decoding events on the event loop from now on" in m for m in caplog.messages)
        r.publish(_channel(redis_url), envelope(heartbeat(seq=2)))
        await wait_for(lambda: health.events == 2, what="events after the child's death")
        assert [e["seq"] for e in got.events] == [1, 2]
    assert not _alive(pid)


async def test_stopping_the_source_ends_its_child(redis_url: str) -> None:
    source = open_event_source(redis_url, Batches(), WallClock(), StreamHealth(), decode="process")
    assert isinstance(source, RedisEventSource)
    await source.start()
    await source.wait_connected()
    pid = source.decoder_pid
    assert pid and _alive(pid)
    await source.stop()
    assert not _alive(pid)


CHILD_OF = textwrap.dedent(
    """
    import asyncio, sys
    from alertd.clock import WallClock
    from alertd.sources import open_event_source
    from alertd.sources.health import StreamHealth

    async def main():
        url = sys.stdin.readline().strip()
        source = open_event_source(url, lambda b: None, WallClock(), StreamHealth(), decode="process")
        await source.start()
        await source.wait_connected()
        print(source.decoder_pid, flush=True)
        await asyncio.sleep(600)

    asyncio.run(main())
    """
)


def test_the_child_dies_with_alertd_and_never_shows_the_password(redis_server: Any) -> None:
    client = redis.Redis(port=redis_server.port)
    client.config_set("requirepass", "hunter2-pw")
    client.close()
    url = f"redis://:hunter2-pw@127.0.0.1:{redis_server.port}/0"
    # alertd in a process of its own, given the URL on stdin as an operator's config would be
    # (not on its command line), so that kill -9 hits it and not this test.
    alertd = subprocess.Popen(
        [sys.executable, "-c", CHILD_OF], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert alertd.stdin is not None and alertd.stdout is not None
    try:
        alertd.stdin.write(url + "\n")
        alertd.stdin.flush()
        pid = int(alertd.stdout.readline())
        assert _alive(pid)
        with open(f"/proc/{pid}/comm") as f:
            assert f.read().strip() == "alertd-decoder"  # as top and pgrep name it
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            assert b"hunter2" not in f.read()
        with open(f"/proc/{pid}/environ", "rb") as f:
            assert b"hunter2" not in f.read()
        alertd.kill()  # kill -9: no chance to stop its child
        alertd.wait(10)
        # At once (Linux's parent-death signal), not at its next write to the pipe, 5 s on.
        deadline = time.monotonic() + 2
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid), "the decoder process outlived alertd"
    finally:
        alertd.kill()
        alertd.wait(10)


async def test_a_child_that_cannot_start_leaves_the_loop_decoding(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    monkeypatch.setattr(sys, "executable", "/nonexistent/python3")
    async with _source(redis_url) as (source, _, health, r):
        assert not source.decode_process and source.decoder_pid is None
        assert any("decoder process could not start" in m for m in caplog.messages)
        r.publish(_channel(redis_url), envelope(heartbeat(seq=1)))
        await wait_for(lambda: health.events == 1, what="events decoded on the loop")


async def test_a_decoder_that_stops_writing_is_replaced_by_the_loop(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A child that is alive but writes nothing (here stopped; in life a hang) would leave alertd
    # blind with a connected-looking stream: twice its silence limit and the loop takes over.
    monkeypatch.setattr(decode_process, "SILENT_AFTER", 0.5)  # once subscribed: its start has its own limit
    async with _source(redis_url) as (source, _, health, r):
        pid = source.decoder_pid
        assert pid
        os.kill(pid, signal.SIGSTOP)
        await wait_for(lambda: health.reconnects == 1 and health.connected, what="the loop to take over")
        assert "wrote nothing for 1s" in health.last_error and not source.decode_process
        assert not _alive(pid)
        r.publish(_channel(redis_url), envelope(heartbeat(seq=1)))
        await wait_for(lambda: health.events == 1, what="events decoded on the loop")


@pytest.mark.parametrize(
    ("written", "why"),
    [
        (b"B\x03\x00\x00\x00abc", "a batch that does not parse"),
        (b"B\x0b\x00\x00\x00[1, 2, 3, 4]", "a batch that does not parse"),
        (b"E\x02\x00\x00\x00{}", "an error frame that does not parse"),
        (b"X\x00\x00\x00\x00", "a frame of kind b'X'"),
        (b"B\xff\xff\xff\xff", "a frame of 4294967295 bytes"),
        (b"B\x10\x00\x00\x00[0, [], []", "exited"),  # cut short: the child died mid-frame
    ],
)
async def test_a_child_that_writes_nonsense_is_a_decoder_failure(written: bytes, why: str) -> None:
    # Whatever our own child writes that is not a frame of ours is its failure (the loop then
    # takes over), never an error that would stop the source or pass for the broker's.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", f"import sys; sys.stdout.buffer.write({written!r})", stdout=asyncio.subprocess.PIPE
    )
    child = decode_process.DecoderChild(proc)
    try:
        with pytest.raises(decode_process.DecoderFailed, match=re.escape(why)):
            async for _ in child.batches():
                pass
    finally:
        await child.close()
