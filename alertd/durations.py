"""Durations as users write them: `15s`, `2m`, `1h30m`, `7d`, `500ms` (Prometheus / Go style)."""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")


# Go's time.Duration (so Alertmanager's and Prometheus') stops at 2^63 ns. A longer one would push
# the times computed from it (a silence's end, an alert's resolve time) past year 9999, which no
# RFC 3339 listing can write out.
MAX_SECONDS = 2**63 / 1e9  # 292 years


class DurationError(ValueError):
    """A duration string that does not parse; the message says what is expected."""


def _bounded(total: float, text: object) -> float:
    if not math.isfinite(total) or total > MAX_SECONDS:
        raise DurationError(f"a duration must be at most 292y (Alertmanager's longest), got {text!r}")
    return total


def parse_duration(text: str | int | float) -> float:
    """Parse a duration into seconds. Bare numbers are seconds."""
    if isinstance(text, bool):
        raise DurationError(f"expected a duration like 30s, 5m or 1h30m, got {text!r}")
    if isinstance(text, int | float):
        if text < 0:
            raise DurationError(f"a duration cannot be negative, got {text!r}")
        return _bounded(float(text), text)
    s = str(text).strip()
    if s in ("0", ""):
        if s == "":
            raise DurationError("expected a duration like 30s, 5m or 1h30m, got an empty string")
        return 0.0
    pos = 0
    total = 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or pos == 0:
        raise DurationError(f"expected a duration like 30s, 5m or 1h30m (units ms, s, m, h, d, w, y), got {s!r}")
    return _bounded(total, s)


def format_duration(seconds: float) -> str:
    """Render seconds the way a user would write them: 90 -> 1m30s, 0.25 -> 250ms."""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds < 1:
        ms = round(seconds * 1000)
        return f"{ms}ms" if ms else "0s"
    # whole milliseconds, as Prometheus writes durations (5.5 -> 5s500ms, never a rounded 6s)
    rest = round(seconds * 1000)
    out = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        if rest >= size:
            out.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(out) or "0s"
