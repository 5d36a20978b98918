"""Numbers as people read them in a page: 12.3%, 1m 30s, 1.5 GiB, 12.3k.

Shared by rule templates (labels, annotations) and notification templates.
"""

from __future__ import annotations

import math
from typing import Any


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def percent(v: Any, digits: int = 1) -> str:
    """0.1234 -> '12.3%'."""
    f = _num(v)
    return "n/a" if f is None else f"{f * 100:.{digits}f}%"


def duration(v: Any) -> str:
    """Seconds -> '850ms', '42s', '1m 30s', '2h 5m', '3d 4h'."""
    f = _num(v)
    if f is None:
        return "n/a"
    if math.isinf(f):
        return "forever"
    if abs(f) < 1:
        return f"{f * 1000:.0f}ms"
    s = round(f)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size:
            parts.append(f"{s // size}{unit}")
            s %= size
        if len(parts) == 2:
            break
    return " ".join(parts) or "0s"


def bytes_(v: Any) -> str:
    """1536 -> '1.5 KiB'."""
    f = _num(v)
    if f is None:
        return "n/a"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(f) < 1024 or unit == "TiB":
            return f"{f:.0f} {unit}" if unit == "B" else f"{f:.1f} {unit}"
        f /= 1024
    return f"{f:.1f} TiB"


def count(v: Any) -> str:
    """12345 -> '12.3k'; small numbers as they are."""
    f = _num(v)
    if f is None:
        return "n/a"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(f) >= size:
            return f"{f / size:.1f}{unit}"
    return f"{f:.0f}" if f == int(f) else f"{f:.2f}"


FILTERS = {"percent": percent, "duration": duration, "bytes": bytes_, "count": count, "humanize": count}
