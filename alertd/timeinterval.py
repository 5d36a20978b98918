"""Alertmanager's time intervals: when a route is active or muted.

An interval matches when every field it gives matches (times AND weekdays AND days_of_month AND
months AND years), evaluated in its `location`; a named time interval matches when any of its
intervals does. Times are wall-clock in the zone, so 09:00-17:00 stays 09:00-17:00 across DST.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, model_validator

from alertd.schema import Strict

# -- as written in alertd.yaml ---------------------------------------------------------------


class TimeRange(Strict):
    start_time: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")
    end_time: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")


class TimeIntervalSpec(Strict):
    """Alertmanager's time interval: every given field must match (AND); omitted fields match all."""

    times: list[TimeRange] = []
    weekdays: list[str] = []  # "monday", "monday:friday"
    days_of_month: list[str] = []  # "1", "1:5", "-3:-1" (negative counts from the month's end)
    months: list[str] = []  # "january", "1:3", "december"
    years: list[str] = []  # "2026", "2026:2027"
    location: str = "UTC"  # IANA zone name, e.g. Asia/Tokyo

    @model_validator(mode="after")
    def _compiles(self) -> TimeIntervalSpec:
        compile_interval(self)  # raises ValueError with what is wrong
        return self


class TimeIntervalConfig(Strict):
    name: str = Field(min_length=1)
    time_intervals: list[TimeIntervalSpec]


# -- compiled and evaluated ------------------------------------------------------------------

WEEKDAYS = {name.lower(): i for i, name in enumerate(calendar.day_name)}  # monday = 0
MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}  # january = 1

Range = tuple[int, int]


@dataclass(frozen=True)
class CompiledInterval:
    times: tuple[Range, ...]  # minutes of the day, [start, end)
    weekdays: tuple[Range, ...]
    days_of_month: tuple[Range, ...]
    months: tuple[Range, ...]
    years: tuple[Range, ...]
    zone: ZoneInfo

    def contains(self, t: float) -> bool:
        local = datetime.fromtimestamp(t, self.zone)
        if self.times:
            minute = local.hour * 60 + local.minute
            if not any(a <= minute < b for a, b in self.times):
                return False
        if self.weekdays and not _in(local.weekday(), self.weekdays):
            return False
        if self.months and not _in(local.month, self.months):
            return False
        if self.years and not _in(local.year, self.years):
            return False
        if self.days_of_month:
            last = calendar.monthrange(local.year, local.month)[1]
            ok = False
            for a, b in self.days_of_month:
                a2 = a if a > 0 else last + 1 + a
                b2 = b if b > 0 else last + 1 + b
                if a2 <= local.day <= b2:
                    ok = True
                    break
            if not ok:
                return False
        return True


def _in(v: int, ranges: Sequence[Range]) -> bool:
    return any(a <= v <= b for a, b in ranges)


def _ranges(items: Sequence[str], what: str, names: dict[str, int] | None, lo: int, hi: int) -> tuple[Range, ...]:
    out = []
    for item in items:
        parts = item.split(":")
        if len(parts) > 2:
            raise ValueError(f"{what}: {item!r} is not a value or a range like a:b")
        vals = []
        for p in parts:
            p = p.strip().lower()
            if names is not None and p in names:
                vals.append(names[p])
                continue
            try:
                n = int(p)
            except ValueError:
                hint = f" (names: {', '.join(names)})" if names else ""
                raise ValueError(f"{what}: {p!r} is not valid{hint}") from None
            if not (lo <= n <= hi) or (n == 0 and what == "days_of_month"):
                raise ValueError(f"{what}: {n} is out of range {lo}..{hi}")
            vals.append(n)
        a, b = vals[0], vals[-1]
        if what == "days_of_month" and a < 0 < b:
            raise ValueError(f"days_of_month: {item!r} starts counting from the end but ends from the start")
        if what == "weekdays" and a > b:
            # the week wraps: Alertmanager's week starts on Sunday, so its `sunday:saturday` is
            # every day and `sunday:tuesday` three days, where alertd counts from Monday
            out += [(a, hi), (lo, b)]
            continue
        same_sign = (a > 0) == (b > 0)
        if a > b and same_sign:
            raise ValueError(f"{what}: range {item!r} ends before it starts")
        out.append((a, b))
    return tuple(out)


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


def compile_interval(spec: TimeIntervalSpec) -> CompiledInterval:
    """Validate and compile; ValueError says which field is wrong."""
    try:
        zone = ZoneInfo(spec.location)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"location: unknown time zone {spec.location!r} (use an IANA name like Europe/Berlin)"
        ) from None
    times = []
    for t in spec.times:
        a, b = _minutes(t.start_time), _minutes(t.end_time)
        if b <= a:
            raise ValueError(f"times: end_time {t.end_time} must be after start_time {t.start_time}")
        times.append((a, b))
    return CompiledInterval(
        times=tuple(times),
        weekdays=_ranges(spec.weekdays, "weekdays", WEEKDAYS, 0, 6),
        days_of_month=_ranges(spec.days_of_month, "days_of_month", None, -31, 31),
        months=_ranges(spec.months, "months", MONTHS, 1, 12),
        years=_ranges(spec.years, "years", None, 1, 9999),
        zone=zone,
    )


class TimeIntervals:
    """Named time intervals from the config."""

    def __init__(self, configs: Sequence[TimeIntervalConfig]) -> None:
        self.named = {c.name: [compile_interval(s) for s in c.time_intervals] for c in configs}

    def active(self, name: str, t: float) -> bool:
        return any(i.contains(t) for i in self.named.get(name, []))
