"""The `alertd` command: one entry point, a subcommand per module in this package.

Each module exposes `register(sub)` that adds its subcommand and sets `func`, a callable taking
the parsed arguments and returning the exit code. Adding a command is adding a module here.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from alertd import __version__

# Order is the order `alertd --help` lists them: the three user moments first.
COMMANDS = ("run", "check", "test", "silence", "ack", "alert", "periodic", "routes", "notify", "capture", "token")


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="alertd",
        description="Alerting for Celery: events and broker samples in, routed pages out.",
    )
    parser.add_argument("--version", action="version", version=f"alertd {__version__}")
    parser.add_argument(
        "--config",
        "-c",
        default=None,
        help="alertd.yaml (default: $ALERTD_CONFIG, ./alertd.yaml, /etc/alertd/alertd.yaml, else built-in defaults)",
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("ALERTD_LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
        help="log verbosity (default: info, or $ALERTD_LOG_LEVEL)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"alertd.cli.{name}").register(sub)
    for child in _subparsers(parser):
        _accept_global_options(child)
    return parser


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every subcommand's parser, nested ones (`silence add`) included."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                out += [child, *_subparsers(child)]
    return out


def _accept_global_options(parser: argparse.ArgumentParser) -> None:
    """promtool / amtool habit: `alertd run --config FILE` works as `alertd --config FILE run` does.

    SUPPRESS keeps a subcommand from resetting what was given before it. Where a subcommand uses
    `-c` itself (`silence add -c COMMENT`), only the long form is added there.
    """
    try:
        parser.add_argument("--config", "-c", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    except argparse.ArgumentError:
        parser.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    parser.add_argument(
        "--log-level", default=argparse.SUPPRESS, choices=["debug", "info", "warning", "error"], help=argparse.SUPPRESS
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run the chosen subcommand; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args))
    except KeyboardInterrupt:
        return 130
