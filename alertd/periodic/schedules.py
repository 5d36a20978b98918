"""When a periodic entry should run next: interval, crontab and solar schedules on alertd's side.

Each schedule answers `next_after(last)`: the instant (epoch seconds) at which Celery beat finds
the entry due again, given when it last ran. The rules are beat's own (celery.schedules), so the
two agree to the millisecond, across DST changes too (tests/test_periodic_schedules.py checks
that against Celery's `remaining_estimate` and `is_due`):

- an interval is elapsed time: `last + seconds`, whatever the wall clock does;
- a crontab is wall-clock time in the app's timezone: the next minute after last's wall-clock
  minute whose fields all match (day of month AND day of week, as Celery, not cron's OR). A
  wall time that a DST change skips or repeats is resolved as Python's zoneinfo does with the
  `fold` of the last run, as Celery's `ffwd` does (`datetime.replace` keeps it);
- a solar event is the sun's next event after the last run at the given place (ephem, with
  Celery's horizons), searched day by day past days the event does not happen (polar days).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
MONTHS = ("", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
SOLAR_DAYS_SEARCHED = 366  # as celery.schedules.solar.max_search_days


class Schedule(Protocol):
    @property
    def kind(self) -> str: ...

    def next_after(self, last: float) -> float:
        """When the entry is due again after a run at `last` (epoch seconds)."""
        ...

    def describe(self) -> str:
        """The schedule in words, for the page, the API and the CLI."""
        ...

    def as_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Interval:
    seconds: float
    kind: str = "interval"

    def next_after(self, last: float) -> float:
        # Celery adds elapsed seconds in UTC (add_seconds_to_datetime): DST does not stretch it.
        return last + max(self.seconds, 0.0)

    def describe(self) -> str:
        return f"every {_seconds_in_words(self.seconds)}"

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "seconds": self.seconds}


@dataclass(frozen=True)
class RelativeInterval:
    """`schedule(..., relative=True)`: beat rounds the next run to the interval's resolution on the
    app timezone's clock (a 1-hour interval runs on the hour). The rounding rules (DST folds,
    partial-hour zones) are Celery's own `remaining(relative=True)`, called here rather than copied."""

    seconds: float
    timezone: str = "UTC"
    kind: str = "interval"

    def next_after(self, last: float) -> float:
        from celery.utils.time import remaining

        start = datetime.fromtimestamp(last, ZoneInfo(self.timezone))
        ahead: timedelta = remaining(start, timedelta(seconds=self.seconds), start, relative=True)
        return last + ahead.total_seconds()

    def describe(self) -> str:
        return f"every {_seconds_in_words(self.seconds)}, on the {self.timezone} clock"

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "seconds": self.seconds, "relative": True, "timezone": self.timezone}


@dataclass(frozen=True)
class Crontab:
    minute: frozenset[int]
    hour: frozenset[int]
    day_of_week: frozenset[int]  # 0 = Sunday, as Celery
    day_of_month: frozenset[int]
    month_of_year: frozenset[int]
    timezone: str = "UTC"
    text: str = "* * * * *"  # as written: minute hour day-of-month month day-of-week
    kind: str = "crontab"
    _tz: ZoneInfo = field(init=False, repr=False, compare=False)
    _minutes: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _hours: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (self.minute and self.hour and self.day_of_week and self.day_of_month and self.month_of_year):
            raise ValueError(f"crontab {self.text!r} never matches")
        if not any(d <= _longest_month(m) for m in self.month_of_year for d in self.day_of_month):
            raise ValueError(f"crontab {self.text!r}: that day of month never occurs in those months")
        object.__setattr__(self, "_tz", ZoneInfo(self.timezone))
        object.__setattr__(self, "_minutes", tuple(sorted(self.minute)))
        object.__setattr__(self, "_hours", tuple(sorted(self.hour)))

    def next_after(self, last: float) -> float:
        local = datetime.fromtimestamp(last, self._tz)  # fold set for a repeated wall time
        day = local.date()
        if self._date_matches(day):
            if local.hour in self.hour:
                later = [m for m in self._minutes if m > local.minute]
                if later:
                    return self._at(day, local.hour, later[0], local.fold)
            later_hours = [h for h in self._hours if h > local.hour]
            if later_hours:
                return self._at(day, later_hours[0], self._minutes[0], local.fold)
        for _ in range(366 * 28):  # every weekday/date combination recurs within 28 years
            day += timedelta(days=1)
            if self._date_matches(day):
                return self._at(day, self._hours[0], self._minutes[0], local.fold)
        raise ValueError(f"crontab {self.text!r} never matches")  # pragma: no cover - checked at init

    def _date_matches(self, d: date) -> bool:
        return d.month in self.month_of_year and d.day in self.day_of_month and d.isoweekday() % 7 in self.day_of_week

    def _at(self, d: date, hour: int, minute: int, fold: int) -> float:
        return datetime(d.year, d.month, d.day, hour, minute, tzinfo=self._tz, fold=fold).timestamp()

    def describe(self) -> str:
        every_day = len(self.day_of_month) == 31 and len(self.month_of_year) == 12
        days = (
            "every day"
            if len(self.day_of_week) == 7
            else "every " + ", ".join(WEEKDAYS[d] for d in sorted(self.day_of_week))
        )
        if not every_day:
            days = f"cron {self.text!r}"
            return f"{days} {self.timezone}"
        if len(self.hour) == 24 and len(self.minute) == 60:
            what = "every minute" if days == "every day" else f"{days}, every minute"
        elif len(self.hour) == 24:
            mins = ", ".join(f":{m:02d}" for m in self._minutes)
            what = f"every hour at {mins}" if days == "every day" else f"{days}, every hour at {mins}"
        elif len(self.hour) * len(self.minute) <= 4:
            times = ", ".join(f"{h:02d}:{m:02d}" for h in self._hours for m in self._minutes)
            what = f"{days} at {times}"
        else:
            return f"cron {self.text!r} {self.timezone}"
        return f"{what} {self.timezone}"

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "crontab": self.text, "timezone": self.timezone}


# Celery's solar events: horizon, ephem method, and whether the sun's centre (not its upper limb) counts.
SOLAR_EVENTS: dict[str, tuple[str, str, bool]] = {
    "dawn_astronomical": ("-18", "next_rising", True),
    "dawn_nautical": ("-12", "next_rising", True),
    "dawn_civil": ("-6", "next_rising", True),
    "sunrise": ("-0:34", "next_rising", False),
    "solar_noon": ("0", "next_transit", False),
    "sunset": ("-0:34", "next_setting", False),
    "dusk_civil": ("-6", "next_setting", True),
    "dusk_nautical": ("-12", "next_setting", True),
    "dusk_astronomical": ("-18", "next_setting", True),
}


@dataclass(frozen=True)
class Solar:
    event: str
    lat: float
    lon: float
    kind: str = "solar"

    def __post_init__(self) -> None:
        if self.event not in SOLAR_EVENTS:
            raise ValueError(f"unknown solar event {self.event!r} (expected one of {', '.join(SOLAR_EVENTS)})")
        if not (-90 <= self.lat <= 90 and -180 <= self.lon <= 180):
            raise ValueError(f"solar: latitude {self.lat} / longitude {self.lon} out of range")

    def next_after(self, last: float) -> float:
        import ephem  # the `periodic` extra; imported here so interval and crontab need nothing

        horizon, method, centre = SOLAR_EVENTS[self.event]
        cal = ephem.Observer()
        cal.lat = str(self.lat)
        cal.lon = str(self.lon)
        cal.elev = 0
        cal.horizon = horizon
        cal.pressure = 0
        start = datetime.fromtimestamp(last, UTC).replace(tzinfo=None)
        cal.date = start
        sun = ephem.Sun()
        at = ephem.Date(start)
        kwargs = {"use_center": True} if centre else {}
        for _ in range(SOLAR_DAYS_SEARCHED):
            try:
                at = getattr(cal, method)(sun, start=at, **kwargs)
                break
            except ephem.CircumpolarError:  # no such event that day (polar day or night): try the next
                at = cal.next_antitransit(sun, start=at)
        return at.datetime().replace(tzinfo=UTC).timestamp()  # type: ignore[no-any-return]

    def describe(self) -> str:
        return f"every day at {self.event.replace('_', ' ')} at {self.lat:g}, {self.lon:g}"

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "event": self.event, "lat": self.lat, "lon": self.lon}


@dataclass(frozen=True)
class Clocked:
    """Once, at a set time (django-celery-beat's clocked schedule, usually one_off)."""

    at: float
    kind: str = "clocked"

    def next_after(self, last: float) -> float:
        return self.at if last < self.at else math.inf

    def describe(self) -> str:
        return "once at " + datetime.fromtimestamp(self.at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "at": self.at}


def crontab_from_text(text: str, timezone: str = "UTC") -> Crontab:
    """A crontab from "minute hour day-of-month month day-of-week", parsed as Celery parses it."""
    from celery.schedules import crontab

    fields = text.split()
    if len(fields) != 5:
        raise ValueError(f"crontab {text!r}: expected 5 fields (minute hour day-of-month month day-of-week)")
    minute, hour, dom, moy, dow = fields
    c = crontab(minute=minute, hour=hour, day_of_week=dow, day_of_month=dom, month_of_year=moy)
    return Crontab(
        frozenset(c.minute),
        frozenset(c.hour),
        frozenset(c.day_of_week),
        frozenset(c.day_of_month),
        frozenset(c.month_of_year),
        timezone,
        " ".join(fields),
    )


def from_celery(schedule: Any, timezone: str) -> Schedule:
    """alertd's schedule for a beat_schedule `schedule` value (timedelta, number or schedule object)."""
    from celery.schedules import crontab, solar
    from celery.schedules import schedule as interval

    if isinstance(schedule, bool):
        raise ValueError(f"unsupported schedule {schedule!r}")
    if isinstance(schedule, int | float):
        return Interval(float(schedule))
    if isinstance(schedule, timedelta):
        return Interval(schedule.total_seconds())
    if isinstance(schedule, crontab):
        text = " ".join(
            str(getattr(schedule, f"_orig_{f}"))
            for f in ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
        )
        return Crontab(
            frozenset(schedule.minute),
            frozenset(schedule.hour),
            frozenset(schedule.day_of_week),
            frozenset(schedule.day_of_month),
            frozenset(schedule.month_of_year),
            timezone,
            text,
        )
    if isinstance(schedule, solar):
        return Solar(schedule.event, float(schedule.lat), float(schedule.lon))
    if isinstance(schedule, interval):
        if schedule.relative:
            return RelativeInterval(float(schedule.seconds), timezone)
        return Interval(float(schedule.seconds))
    raise ValueError(f"unsupported schedule {type(schedule).__name__}")


def _longest_month(month: int) -> int:
    return 29 if month == 2 else 30 if month in (4, 6, 9, 11) else 31


def _seconds_in_words(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        n = seconds / size
        if n >= 1 and math.isclose(n, round(n)):
            n = round(n)
            return f"{unit}" if n == 1 else f"{n} {unit}s"
    return "second" if seconds == 1 else f"{seconds:g} seconds"
