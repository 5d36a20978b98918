"""`alertd run`: the daemon, live against a broker or replaying a capture."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alertd.config import Config

log = logging.getLogger("alertd")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run the daemon", description="Consume Celery events, evaluate rules, send alerts.")
    p.add_argument("--listen", help="override api.listen, e.g. 127.0.0.1:9093")
    p.add_argument("--broker", help="override the broker URL")
    p.add_argument(
        "--replay",
        type=Path,
        metavar="EVENTS.jsonl",
        help="feed a capture (alertd capture) through the pipeline on virtual time, then exit; "
        "notifications go to the console, never to configured receivers",
    )
    p.add_argument("--replay-tail", default="0s", help="keep evaluating this long after the last replayed event")
    p.set_defaults(func=run)


def load(args: argparse.Namespace) -> Config | None:
    """The config with command-line overrides, or None after printing why it is invalid."""
    # Imported here: every command module is imported to build the parser, so module-level
    # imports cost every command, `alertd --version` included (pydantic, the models: ~0.15 s).
    from alertd.config import find_config, load_config
    from alertd.yamlfile import FileError

    path = find_config(args.config)
    try:
        config = load_config(path)
    except FileError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        return None
    except OSError as e:
        print(f"{path}: {e.strerror}", file=sys.stderr)
        return None
    updates: dict[str, object] = {}
    if getattr(args, "broker", None):
        updates["broker"] = args.broker
    if getattr(args, "listen", None):
        updates["api"] = config.api.model_copy(update={"listen": args.listen})
    return config.model_copy(update=updates) if updates else config


def run(args: argparse.Namespace) -> int:
    from alertd.durations import parse_duration
    from alertd.yamlfile import FileError

    config = load(args)
    if config is None:
        return 2
    try:
        if args.replay:
            return asyncio.run(_replay(config, args.replay, parse_duration(args.replay_tail)))
        return asyncio.run(_live(config))
    except FileError as e:  # rule files: a daemon with broken rules refuses to start
        for problem in e.problems:
            print(problem, file=sys.stderr)
        print("alertd: not started; fix the rule files above (alertd check shows the same)", file=sys.stderr)
        return 2
    except ValueError as e:  # a receiver that cannot load, a malformed tokens file: already redacted
        print(f"{config.source}: {e}", file=sys.stderr)
        print("alertd: not started", file=sys.stderr)
        return 2


async def _live(config: Config) -> int:
    from alertd.daemon import Daemon

    daemon = Daemon(config)
    try:
        await daemon.start()
        await daemon.run_until_signalled()
    finally:
        await daemon.stop()
    return 0


async def _replay(config: Config, path: Path, tail: float) -> int:
    from alertd.clock import VirtualClock
    from alertd.daemon import Daemon

    if not path.is_file():
        print(f"{path}: no such capture file", file=sys.stderr)
        return 2
    # Old events must never page anyone: a replay delivers to the console only.
    quiet = config.model_copy(update={"receivers": [], "route": None, "store": "sqlite:///:memory:"})
    daemon = Daemon(quiet, VirtualClock(start=_first_event_time(path)))
    await daemon.open_state()
    try:
        summary = await daemon.replay(path, tail=tail)
    finally:
        await daemon.stop()
    print(
        f"replayed {summary.events} events ({summary.malformed} malformed); "
        f"{sum(1 for a in summary.transitions if a.state == 'firing')} alerts fired, "
        f"{sum(1 for a in summary.transitions if a.state == 'resolved')} resolved"
    )
    return 0


def _first_event_time(path: Path) -> float:
    """When the capture starts, so the virtual clock (and 'seconds since start' gauges) begin there."""
    from alertd.sources.jsonl import event_time, read_capture

    for _, event in read_capture(path):
        at = event_time(event) if event is not None else None
        if at is not None:
            return at
    return 0.0
