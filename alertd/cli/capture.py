"""`alertd capture`: record the normalized event stream, the sampler's samples and the stream's
connectivity to a JSONL file, for replay and rule tests (the format: alertd/sources/jsonl.py)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("capture", help="record Celery events (and broker samples) to a JSONL file")
    p.add_argument("--broker", help="broker URL (default: the config's broker)")
    p.add_argument("-o", "--output", required=True, type=Path, help="file to write, e.g. events.jsonl")
    p.add_argument("--duration", help="stop after this long, e.g. 60s or 10m (default: until Ctrl-C)")
    p.add_argument("--count", type=int, help="stop after this many events")
    p.add_argument(
        "--no-samples",
        dest="samples",
        action="store_false",
        help="record events only: no queue, worker and broker samples",
    )
    p.add_argument("--sample-interval", help="how often to sample (default: the config's sampler.interval)")
    p.add_argument(
        "--queue",
        action="append",
        default=[],
        help="a queue to sample (repeatable; default: the config's sampler.queues plus the workers' queues)",
    )
    p.set_defaults(func=capture)


def capture(args: argparse.Namespace) -> int:
    # Imported here, not at the top: each command module is imported to build the parser.
    from alertd.config import find_config, load_config
    from alertd.durations import parse_duration
    from alertd.yamlfile import FileError

    try:
        config = load_config(find_config(args.config))
    except FileError as e:
        print("\n".join(str(p) for p in e.problems), file=sys.stderr)
        return 2
    broker = args.broker or config.broker
    duration = parse_duration(args.duration) if args.duration else None
    options = config.broker_transport_options if not args.broker else {}
    sampling: dict[str, Any] | None = None
    if args.samples:
        sampling = {
            "queues": list(args.queue or config.sampler.queues),
            "interval": parse_duration(args.sample_interval) if args.sample_interval else config.sampler.interval,
            "inspect": config.sampler.inspect,
            "inspect_timeout": config.sampler.inspect_timeout,
        }
    return asyncio.run(_capture(broker, args.output, duration, args.count, options, sampling))


async def _capture(
    broker: str,
    output: Path,
    duration: float | None,
    count: int | None,
    options: dict[str, Any],
    sampling: dict[str, Any] | None = None,
) -> int:
    from alertd.clock import WallClock
    from alertd.redact import redact_url
    from alertd.sources import open_event_source
    from alertd.sources.jsonl import CaptureWriter, RecordingHealth
    from alertd.sources.sampler import Sampler

    writer = CaptureWriter(output)
    # Connects and disconnects are written as the source reports them: a replay is blind where
    # the capture was.
    health = RecordingHealth(writer)
    done = asyncio.Event()
    clock = WallClock()

    def on_events(events: list[dict[str, Any]]) -> None:
        if count is not None:
            events = events[: max(0, count - writer.events)]
        writer.write(events)
        if count is not None and writer.events >= count:
            done.set()

    source = open_event_source(broker, on_events, clock, health, transport_options=options or None)
    # The daemon's own sampler, its samples written as they come (the same handlers on replay).
    sampler = (
        Sampler(
            broker,
            clock,
            on_queue=writer.write_record,
            on_worker=writer.write_record,
            on_broker=writer.write_record,
            transport_options=options or None,
            **sampling,
        )
        if sampling is not None
        else None
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    what = "events and samples" if sampler else "events"
    print(f"capturing {what} from {redact_url(broker)} to {output} (Ctrl-C to stop)", file=sys.stderr)
    await source.start()
    if sampler is not None:
        await sampler.start()
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), duration)
    finally:
        if sampler is not None:
            await sampler.stop()
        await source.stop()
        writer.close()
    print(
        f"{writer.events} events written to {output}, with {writer.records} samples and stream marks; "
        f"{health.malformed} malformed skipped",
        file=sys.stderr,
    )
    return 0
