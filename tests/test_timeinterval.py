"""Time intervals as Alertmanager defines them, across a time zone and a DST change."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from alertd.timeinterval import TimeIntervalSpec, compile_interval


def at(text: str, zone: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()


def test_business_hours_in_tokyo() -> None:
    spec = TimeIntervalSpec(
        times=[{"start_time": "09:00", "end_time": "18:00"}], weekdays=["monday:friday"], location="Asia/Tokyo"
    )
    iv = compile_interval(spec)
    assert iv.contains(at("2026-11-24T09:00", "Asia/Tokyo"))  # a Tuesday
    assert not iv.contains(at("2026-11-24T08:59", "Asia/Tokyo"))
    assert not iv.contains(at("2026-11-24T18:00", "Asia/Tokyo"))  # end is exclusive
    assert not iv.contains(at("2026-11-28T10:00", "Asia/Tokyo"))  # Saturday
    # 09:30 in Tokyo is 00:30 UTC: the zone decides, not the server
    assert iv.contains(at("2026-11-24T00:30", "UTC"))


def test_wall_clock_hours_hold_across_dst() -> None:
    iv = compile_interval(
        TimeIntervalSpec(times=[{"start_time": "09:00", "end_time": "10:00"}], location="Europe/Berlin")
    )
    # the day before and the day after Berlin's spring-forward (2026-03-29): 09:30 local both days,
    # an hour apart in UTC
    before, after = at("2026-03-28T09:30", "Europe/Berlin"), at("2026-03-30T09:30", "Europe/Berlin")
    assert iv.contains(before) and iv.contains(after)
    assert (after - before) == 2 * 86400 - 3600
    assert not iv.contains(at("2026-03-30T08:30", "UTC") + 3600 * 1.5)  # 12:00 local


def test_negative_days_of_month_count_from_the_end() -> None:
    iv = compile_interval(TimeIntervalSpec(days_of_month=["-3:-1"], months=["february"], years=["2028"]))
    assert iv.contains(at("2028-02-27T12:00", "UTC"))  # leap year: the 27th is the 3rd last day
    assert iv.contains(at("2028-02-29T23:59", "UTC"))
    assert not iv.contains(at("2028-02-26T12:00", "UTC"))
    assert not iv.contains(at("2027-02-27T12:00", "UTC"))


def test_weekday_ranges_from_alertmanager_configs_wrap_past_sunday() -> None:
    """Alertmanager's week starts on Sunday: its `sunday:saturday` (every day) and `sunday:tuesday`
    were refused here ("ends before it starts"), alertd counting from Monday. A range whose end
    comes before its start in alertd's week wraps past Sunday, so both mean what they say, and
    alertd's own `saturday:sunday` stays the weekend."""
    days = [at(f"2026-11-{d}T12:00", "UTC") for d in range(22, 29)]  # Sunday 22nd .. Saturday 28th

    def covered(weekdays: list[str]) -> list[int]:
        iv = compile_interval(TimeIntervalSpec(weekdays=weekdays))
        return [i for i, t in enumerate(days) if iv.contains(t)]  # 0 = Sunday, as in Alertmanager

    assert covered(["sunday:saturday"]) == [0, 1, 2, 3, 4, 5, 6]
    assert covered(["sunday:tuesday"]) == [0, 1, 2]
    assert covered(["saturday:sunday"]) == [0, 6]
    assert covered(["friday:monday"]) == [0, 1, 5, 6]
    assert covered(["monday:friday"]) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"weekdays": ["funday"]}, "weekdays: 'funday' is not valid"),
        ({"location": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"times": [{"start_time": "18:00", "end_time": "09:00"}]}, "must be after start_time"),
        ({"months": ["13"]}, "months: 13 is out of range"),
        ({"days_of_month": ["-3:5"]}, "starts counting from the end"),
    ],
)
def test_bad_intervals_say_what_is_wrong(spec: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValidationError) as e:
        TimeIntervalSpec(**spec)
    assert message in str(e.value)
