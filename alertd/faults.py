"""Crash points: named places in the send path where a test can make alertd die as `kill -9` would.

At-least-once delivery is only as good as its worst instant, and the worst instants (between a
claim and a request, between a delivered request and the log write) are too short to hit with a
signal from outside. `ALERTD_CRASH_AT=point[:kind]` makes the process SIGKILL itself the first time
it reaches `point` for a notification of `kind` (firing | resolved; any when omitted). Unset, a
crash point costs one string comparison.

Points, in the order a send passes them: before-claim, after-claim, before-request (the attempt is
logged as in flight), after-request (delivered, not yet in the notification log).
"""

from __future__ import annotations

import os
import signal

POINTS = ("before-claim", "after-claim", "before-request", "after-request")

_SPEC = os.environ.get("ALERTD_CRASH_AT", "")
_POINT, _, _KIND = _SPEC.partition(":")


def crash_point(point: str, kind: str) -> None:
    """Die here, without cleanup, if ALERTD_CRASH_AT names this point (and this kind)."""
    if _POINT and point == _POINT and (not _KIND or kind == _KIND):
        os.kill(os.getpid(), signal.SIGKILL)
