"""`alertd notify test RECEIVER`: send a sample notification through a real receiver."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from alertd.cli.run import load

if TYPE_CHECKING:
    from alertd.config import Config


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("notify", help="try receivers")
    nsub = p.add_subparsers(dest="notify_command", required=True)
    t = nsub.add_parser(
        "test",
        help="send a sample notification through a receiver",
        description="Renders a sample alert with the receiver's template and sends it to its real URLs; "
        "exit code 0 when delivered, 1 when not, 2 when the receiver is unknown or cannot load.",
    )
    t.add_argument("receiver")
    t.add_argument(
        "--retries", type=int, default=0, help="retries after a failed attempt (default 0: report the first answer)"
    )
    t.set_defaults(func=notify_test)


def notify_test(args: argparse.Namespace) -> int:
    config = load(args)
    if config is None:
        return 2
    return asyncio.run(_test(config, args.receiver, args.retries))


async def _test(config: Config, receiver: str, retries: int) -> int:
    # Apprise and the notify pipeline load only for this command, not for every `alertd ...`.
    from alertd.clock import WallClock
    from alertd.notify.delivery import ReceiverError
    from alertd.notify.service import Notifier
    from alertd.store.sqlite import SqliteStore

    store = SqliteStore(":memory:")  # a trial leaves no trace in the daemon's state
    await store.open()
    try:
        try:
            notifier = Notifier(config, store, WallClock())
        except ReceiverError as e:
            print(f"receiver problem: {e}", file=sys.stderr)
            return 2
        if receiver not in notifier.receivers:
            names = ", ".join(notifier.receiver_names())
            print(f"no receiver named {receiver!r}; configured: {names}", file=sys.stderr)
            return 2
        (result,) = await notifier.test_send(receiver, retries=retries)
    finally:
        await store.close()
    if result.ok:
        print(f"sent to {receiver} ({', '.join(result.targets)}) in {result.attempts} attempt(s)")
        return 0
    print(f"failed to send to {receiver} after {result.attempts} attempt(s): {result.error}", file=sys.stderr)
    return 1
