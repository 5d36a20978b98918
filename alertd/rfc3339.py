"""Times as the API and the CLI write them: RFC 3339 in UTC, and the range that can be written.

RFC 3339 has four-digit years, so times from 0001-01-01 to 9999-12-31 (UTC) are the ones any
listing can write out. Every time that comes in (a silence's start and end, a history bound, the
CLI's --start) is held to that range, so nothing stored can later break a listing.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

ZERO_TIME = "0001-01-01T00:00:00.000Z"  # Go's zero time, which Alertmanager writes for "none"
EARLIEST = datetime(1, 1, 1, tzinfo=UTC).timestamp()
LATEST = datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC).timestamp()
RANGE = "0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z, the times RFC 3339 can write out"


class TimeError(ValueError):
    """A time that does not parse or cannot be written out; the message says which and why."""


def writable(t: float) -> bool:
    """Whether an epoch time is one `format_time` writes out as itself (False for NaN and infinities)."""
    return EARLIEST <= t <= LATEST


def format_time(t: float | None) -> str:
    """RFC 3339 with milliseconds in UTC; ZERO_TIME for none."""
    if not t:
        return ZERO_TIME
    # Clamped, not refused: a record stored before times were checked on the way in still lists.
    t = min(max(t, EARLIEST), LATEST)
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(value: str) -> float:
    """Epoch seconds of an RFC 3339 date-time with a zone; TimeError if it has none or is out of range."""
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise TimeError(f"{value!r} is not an RFC 3339 date-time such as 2026-11-24T10:00:00Z") from None
    if dt.tzinfo is None:
        raise TimeError(f"{value!r} has no time zone (add Z or an offset)")
    try:
        t = dt.timestamp()
    except (OverflowError, ValueError):  # 0001-01-01 with a positive offset is year 0 in UTC
        t = math.nan
    if not writable(t):
        raise TimeError(f"{value!r} is outside {RANGE}")
    return t
