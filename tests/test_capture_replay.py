"""capture → replay: what `alertd capture` records, ReplaySource feeds back through the same handler."""

from __future__ import annotations

import argparse
import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from alertd.cli import capture as capture_cli
from alertd.clock import VirtualClock, WallClock
from alertd.sources.health import StreamHealth
from alertd.sources.jsonl import ReplaySource
from tests.conftest import wait_until
from tests.sources_fixtures import Batches, envelope, heartbeat


def capture_args(*argv: str, config: Path | None = None) -> argparse.Namespace:
    """Parsed as `alertd [--config PATH] capture ...` (the lead's main parser has the global --config)."""
    parser = argparse.ArgumentParser(prog="alertd")
    parser.add_argument("--config")
    capture_cli.register(parser.add_subparsers())
    return parser.parse_args([*(["--config", str(config)] if config else []), "capture", *argv])


def test_capture_then_replay_on_virtual_time(
    redis_url: str, unique: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The broker and its key prefix come from the config file (others publish on db 13 too).
    prefix = f"cap-{unique}:"
    config = tmp_path / "alertd.yaml"
    config.write_text(f"broker: {redis_url}\nbroker_transport_options: {{global_keyprefix: '{prefix}'}}\n")
    out = tmp_path / "events.jsonl"
    args = capture_args("-o", str(out), "--count", "5", "--duration", "20s", config=config)
    r = redis.Redis.from_url(redis_url)
    channel = f"{prefix}/{redis_url.rsplit('/', 1)[1]}.celeryev/"  # the database is in the channel name

    def publish() -> None:  # capture runs in the main thread, where Ctrl-C is handled
        # Garbage as the probe: it reaches capture (publish counts 1 receiver) but is no event.
        wait_until(lambda: r.publish(channel + "x", b"probe") == 1, timeout=10, what="capture to subscribe")
        r.publish(channel + "worker.heartbeat", envelope(heartbeat(seq=0)))
        time.sleep(0.3)  # two reads, two receive times
        r.publish(channel + "task.multi", envelope([heartbeat(seq=i) for i in range(1, 6)], "task.multi"))

    publisher = threading.Thread(target=publish)
    publisher.start()
    assert args.func(args) == 0
    publisher.join(5)
    summary = capsys.readouterr().err
    assert "5 events written" in summary and "malformed skipped" in summary
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    recorded = [x for x in lines if "alertd" not in x]  # the events; the rest are samples and stream marks
    assert lines[0]["alertd"] == "stream" and lines[0]["connected"] is True
    assert [e["seq"] for e in recorded] == [0, 1, 2, 3, 4]  # --count cuts the batch
    assert recorded[1]["local_received"] - recorded[0]["local_received"] >= 0.25

    async def replay() -> tuple[Batches, list[float], StreamHealth]:
        clock = VirtualClock(start=recorded[0]["local_received"] - 60)
        seen: list[float] = []
        got = Batches(on_batch=lambda batch: seen.append(clock.now()))
        health = StreamHealth()
        source = ReplaySource(out, got, clock, health)
        await source.start()
        await source.wait_done(5)
        await source.stop()
        return got, seen, health

    got, seen, health = asyncio.run(replay())
    assert got.events == recorded  # exactly as recorded, local_received included
    # one batch per receive time, delivered with the clock at that time
    assert [len(b) for b in got.batches] == [1, 4]
    assert seen == [recorded[0]["local_received"], recorded[1]["local_received"]]
    assert (health.events, health.malformed, health.transport) == (5, 0, "replay")


def write_capture(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"\n".join(lines) + b"\n")


def ev(at: float, seq: int) -> bytes:
    return orjson.dumps({"type": "worker-heartbeat", "hostname": "celery@a", "seq": seq, "local_received": at})


async def test_replay_is_deterministic_on_a_virtual_clock_and_skips_bad_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "c.jsonl"
    t0 = 1_800_000_000.0
    write_capture(
        path,
        [ev(t0, 0), b"{not json", ev(t0 + 5, 1), b"[1, 2]", b'{"type": "task-sent"}', ev(t0 + 30, 2), ev(t0 + 30, 3)],
    )
    clock = VirtualClock(start=t0)
    log: list[tuple[str, float]] = []
    got = Batches(on_batch=lambda batch: log.append(("events", clock.now())))

    async def timer() -> None:
        # A rule timer sleeping 10 s wakes between the events at +5 s and +30 s, every run.
        await clock.sleep(10)
        log.append(("timer", clock.now()))

    timer_task = asyncio.create_task(timer())
    await asyncio.sleep(0)
    health = StreamHealth()
    source = ReplaySource(path, got, clock, health)
    await source.start()
    await source.wait_done(5)
    await timer_task
    assert log == [("events", t0), ("events", t0 + 5), ("timer", t0 + 30), ("events", t0 + 30)]
    assert [e["seq"] for e in got.events] == [0, 1, 2, 3]
    assert clock.now() == t0 + 30 and health.last_event_at == t0 + 30
    assert (health.events, health.malformed, health.messages) == (4, 3, 7)
    skipped = [rec.getMessage() for rec in caplog.records if "not a captured event" in rec.getMessage()]
    assert skipped == [f"{path}:{n}: not a captured event, skipped" for n in (2, 4, 5)]


async def test_wall_clock_replay_is_paced_by_speed_or_as_fast_as_possible(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    t0 = 1_800_000_000.0
    write_capture(path, [ev(t0 + i * 0.1, i) for i in range(11)])  # 1 s of recording
    clock = WallClock()
    for speed, low, high in ((None, 0.0, 0.2), (4.0, 0.22, 0.6)):
        got = Batches()
        source = ReplaySource(path, got, clock, StreamHealth(), speed=speed)
        started = time.monotonic()
        await source.start()
        await source.wait_done(5)
        took = time.monotonic() - started
        assert low <= took <= high, (speed, took)
        assert [e["seq"] for e in got.events] == list(range(11))
    with pytest.raises(ValueError, match="speed"):
        ReplaySource(path, got, clock, StreamHealth(), speed=0)
    with pytest.raises(FileNotFoundError, match="no such capture"):
        await ReplaySource(tmp_path / "missing.jsonl", got, clock, StreamHealth()).start()


def test_capture_of_an_unreachable_broker_stops_at_duration(tmp_path: Path, caplog: Any) -> None:
    caplog.set_level(logging.INFO)
    out = tmp_path / "none.jsonl"
    args = capture_args("--broker", "redis://:pw-xyz-secret@127.0.0.1:1/0", "-o", str(out), "--duration", "1s")
    started = time.monotonic()
    assert args.func(args) == 0
    assert time.monotonic() - started < 5
    # no event: the stream's failure, said once however often it retried, and the sampler's
    # failed rounds (if one ended within the second), without the password
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert lines[0]["alertd"] == "stream" and lines[0]["connected"] is False, lines
    assert all(x["alertd"] == "broker" and x["ok"] is False for x in lines[1:]), lines
    assert "pw-xyz-secret" not in caplog.text and b"pw-xyz-secret" not in out.read_bytes()


async def test_samples_and_stream_marks_come_back_at_their_times_through_the_daemons_handlers(tmp_path: Path) -> None:
    from alertd.samples import BrokerSample, QueueSample, WorkerSample
    from alertd.sources.jsonl import CaptureWriter, RecordingHealth, StreamMark, read_capture

    t0 = 1_800_000_000.0
    path = tmp_path / "day.jsonl"
    writer = CaptureWriter(path)
    recording = RecordingHealth(writer)  # as `alertd capture` is told by its source
    recording.mark_connected(t0)
    writer.write([orjson.loads(ev(t0 + 1, 0))])
    q = QueueSample("reports", 7, 0, t0 + 2)
    w = WorkerSample("celery@a", t0 + 2, pool_size=4, memory_bytes=1 << 20, cpu_seconds=1.5, queues=("reports", "x"))
    b = BrokerSample(True, t0 + 2.5)
    for s in (q, w, b):
        writer.write_record(s)
    recording.mark_disconnected(t0 + 4, "connection closed")
    recording.mark_disconnected(t0 + 5, "connection refused")  # a retry in the same outage: no new mark
    writer.write_record(BrokerSample(False, t0 + 6, "refused"))
    recording.mark_connected(t0 + 9)
    writer.write([orjson.loads(ev(t0 + 9.5, 1)), orjson.loads(ev(t0 + 9.5, 2))])
    writer.close()
    assert (writer.events, writer.records) == (3, 7)

    # Readers of events only read the events of it, without complaint.
    assert [e["seq"] for _, e in read_capture(path) if e] == [0, 1, 2]
    assert all(e is not None for _, e in read_capture(path))

    clock = VirtualClock(start=t0)
    health = StreamHealth()
    seen: list[tuple[float, object]] = []
    got = Batches(on_batch=lambda batch: seen.append((clock.now(), [e["seq"] for e in batch])))
    steps: list[float] = []

    def record(x: object) -> None:
        seen.append((clock.now(), x))

    async def step() -> None:
        steps.append(clock.now())
        seen.append((clock.now(), ("connected", health.connected)))

    source = ReplaySource(
        path, got, clock, health, on_queue=record, on_worker=record, on_broker=record, step=step, tail=3
    )
    await source.start()
    await source.wait_done(5)
    samples = [(at, x) for at, x in seen if not isinstance(x, tuple)]
    assert samples == [
        (t0 + 1, [0]),
        (t0 + 2, q),
        (t0 + 2, w),
        (t0 + 2.5, b),
        (t0 + 6, BrokerSample(False, t0 + 6, "refused")),
        (t0 + 9.5, [1, 2]),
    ]
    # one step a virtual second, from the first line to three seconds after the last
    assert steps == [t0 + i for i in range(13)]
    connected = [at for at, x in seen if x == ("connected", True)]
    # a step runs before the lines of its second, as the live tick before a read: blind 5..9
    assert connected == [t0 + i for i in (0, 1, 2, 3, 4, 10, 11, 12)]
    assert list(health.gaps) == [(t0 + 4, t0 + 9)] and health.last_error == "connection closed"
    assert (health.events, health.malformed, source.samples) == (3, 0, 4)
    assert StreamMark(False, t0 + 4, "connection closed") != StreamMark(True, t0 + 4)
