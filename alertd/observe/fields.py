"""Event fields: typed reads of what a Celery event carries, checked before anything changes.

A field of the wrong type makes the whole event malformed (TypeError or ValueError), so the
tables never keep half of an event. Absent fields read as None or "".
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

FAR = 1e15  # seconds: beyond any real timestamp, and below the floats that are not finite
TRACEBACK_LINES = 20

_EXC_NAME = re.compile(r"^\s*([A-Za-z_][\w.]*)")

# billiard wraps exceptions raised outside the task (hard time limits, lost workers) in this; the
# real class is then only in the traceback's last line.
_WRAPPERS = frozenset({"", "ExceptionWithTraceback", "ExceptionInfo"})


def exception_class(text: Any, traceback: Any = None) -> str:
    """'ValueError('x')' -> 'ValueError'; 'celery.exceptions.TimeLimitExceeded(1,)' -> 'TimeLimitExceeded'."""
    m = _EXC_NAME.match(text) if isinstance(text, str) else None
    name = m.group(1).rsplit(".", 1)[-1] if m else ""
    if name in _WRAPPERS and isinstance(traceback, str):
        lines = [ln for ln in traceback.strip().splitlines() if ln and not ln[0].isspace()]
        if lines and not lines[-1].startswith("Traceback"):
            head = lines[-1].split(":", 1)[0].strip()
            if _EXC_NAME.fullmatch(head):
                return head.rsplit(".", 1)[-1]
    return name


def trim_traceback(tb: Any, lines: int = TRACEBACK_LINES) -> str:
    """The last lines of a traceback: where it failed matters, the framework frames above do not."""
    if not isinstance(tb, str):
        return ""
    parts = tb.rstrip().splitlines()
    if len(parts) <= lines:
        return "\n".join(parts)
    return "\n".join(["...", *parts[-lines:]])


def eta_seconds(value: Any) -> float | None:
    """Celery sends eta as an ISO 8601 string (or None); epoch seconds are accepted too."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return None
    raise TypeError(f"eta is {type(value).__name__}, not an ISO 8601 string")


def number(e: dict[str, Any], field: str) -> float | None:
    """A numeric field or None when absent; a wrong type makes the whole event malformed."""
    value = e.get(field)
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise TypeError(f"{field} is {value!r}, not a number")


def count(e: dict[str, Any], field: str) -> int | None:
    """A non-negative integer field or None when absent; a wrong type makes the event malformed."""
    value = e.get(field)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise TypeError(f"{field} is {value!r}, not a count")


def text(e: dict[str, Any], field: str) -> str:
    """A string field, "" when absent; a wrong type makes the whole event malformed."""
    value = e.get(field)
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    raise TypeError(f"{field} is {type(value).__name__}, not a string")
