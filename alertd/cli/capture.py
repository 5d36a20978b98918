"""`alertd capture`: record the normalized event stream to a JSONL file for replay and rule tests."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("capture", help="record Celery events to a JSONL file")
    p.add_argument("--broker", help="broker URL (default: the config's broker)")
    p.add_argument("-o", "--output", required=True, type=Path, help="file to write, e.g. events.jsonl")
    p.add_argument("--duration", help="stop after this long, e.g. 60s or 10m (default: until Ctrl-C)")
    p.add_argument("--count", type=int, help="stop after this many events")
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
    return asyncio.run(_capture(broker, args.output, duration, args.count, options))


async def _capture(
    broker: str, output: Path, duration: float | None, count: int | None, options: dict[str, Any]
) -> int:
    from alertd.clock import WallClock
    from alertd.redact import redact_url
    from alertd.sources import open_event_source
    from alertd.sources.health import StreamHealth
    from alertd.sources.jsonl import CaptureWriter

    writer = CaptureWriter(output)
    health = StreamHealth()
    done = asyncio.Event()

    def on_events(events: list[dict[str, Any]]) -> None:
        if count is not None:
            events = events[: max(0, count - writer.events)]
        writer.write(events)
        if count is not None and writer.events >= count:
            done.set()

    source = open_event_source(broker, on_events, WallClock(), health, transport_options=options or None)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    print(f"capturing events from {redact_url(broker)} to {output} (Ctrl-C to stop)", file=sys.stderr)
    await source.start()
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), duration)
    finally:
        await source.stop()
        writer.close()
    print(f"{writer.events} events written to {output}; {health.malformed} malformed skipped", file=sys.stderr)
    return 0
