"""alertd's schedule math against Celery's own (the oracle), on random schedules and instants.

Celery reads the clock through the schedule's `nowfun`, so each comparison pins "now" there and
asks Celery's `remaining_estimate` and `is_due` what beat would decide; alertd must agree on the
next expected run to the millisecond. Instants cluster around DST changes in several zones
(including Lord Howe's 30-minute one) so the wall-clock cases are exercised, not just sampled.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from celery import Celery
from celery.schedules import crontab, schedule, solar

from alertd.periodic.schedules import Crontab, Interval, RelativeInterval, Solar, crontab_from_text, from_celery

ZONES = ["Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Lord_Howe", "America/Sao_Paulo", "UTC"]
# DST changes (local wall clock jumps) in 2026 and 2027 for the zones above.
CHANGES = [
    datetime(2026, 3, 29, 1, 0, tzinfo=UTC),  # Europe spring forward
    datetime(2026, 10, 25, 1, 0, tzinfo=UTC),  # Europe fall back
    datetime(2026, 3, 8, 7, 0, tzinfo=UTC),  # US spring forward
    datetime(2026, 11, 1, 6, 0, tzinfo=UTC),  # US fall back
    datetime(2026, 4, 4, 15, 0, tzinfo=UTC),  # Lord Howe back (-30 min)
    datetime(2026, 10, 3, 15, 30, tzinfo=UTC),  # Lord Howe forward (+30 min)
    datetime(2027, 3, 28, 1, 0, tzinfo=UTC),
]
APPS: dict[str, Celery] = {}
TOLERANCE = 0.001  # seconds; solar: ephem's dates are float days, good to a few microseconds


def app_for(zone: str) -> Celery:
    if zone not in APPS:
        app = Celery(f"oracle-{zone}", set_as_current=False)
        app.conf.timezone = zone
        APPS[zone] = app
    return APPS[zone]


def _spec(rng: random.Random, lo: int, hi: int, star_weight: float) -> str:
    r = rng.random()
    if r < star_weight:
        return "*"
    if r < star_weight + 0.25:
        return f"*/{rng.choice([2, 3, 5, 7, 10, 15])}" if hi - lo > 10 else f"*/{rng.choice([2, 3])}"
    n = rng.randint(1, 3)
    values = sorted(rng.sample(range(lo, hi + 1), n))
    if rng.random() < 0.3 and values[-1] < hi:
        return f"{values[0]}-{values[-1]}"
    return ",".join(map(str, values))


def random_crontab(rng: random.Random) -> str:
    # Hours 0-3 are favoured: that is where DST changes move the wall clock.
    minute = _spec(rng, 0, 59, 0.15)
    hour = rng.choice(["*", "1", "2", "3", "1,2,3", "0-3", "*/2"]) if rng.random() < 0.6 else _spec(rng, 0, 23, 0.2)
    dom = _spec(rng, 1, 28, 0.7)
    moy = _spec(rng, 1, 12, 0.8)
    dow = _spec(rng, 0, 6, 0.7)
    return f"{minute} {hour} {dom} {moy} {dow}"


def random_instant(rng: random.Random) -> float:
    if rng.random() < 0.8:
        change = rng.choice(CHANGES).timestamp()
        return change + rng.uniform(-36 * 3600, 36 * 3600)
    return datetime(2026, 1, 1, tzinfo=UTC).timestamp() + rng.uniform(0, 2 * 365 * 86400)


def celery_next(sched: Any, last: float, zone: str, now: float) -> tuple[float, bool]:
    """Celery's next run (now + remaining_estimate) and is_due, with beat's last_run_at (app timezone)."""
    tz = ZoneInfo(zone)
    sched.nowfun = lambda: datetime.fromtimestamp(now, tz)
    last_dt = datetime.fromtimestamp(last, tz)  # beat's last_run_at is app.now(): aware, app timezone
    remaining = sched.remaining_estimate(last_dt).total_seconds()
    return now + remaining, bool(sched.is_due(last_dt)[0])


def compare(ours: float, celery_at: float, due: bool, now: float) -> None:
    assert abs(ours - celery_at) <= TOLERANCE, (ours, celery_at)
    if abs(now - ours) > TOLERANCE:  # an instant exactly at the boundary is either
        assert due == (now >= ours)


def test_crontab_agrees_with_celery_on_1000_random_schedules_and_instants() -> None:
    rng = random.Random(16)
    compared = due_seen = 0
    for _ in range(1000):
        text = random_crontab(rng)
        zone = rng.choice(ZONES)
        last = random_instant(rng)
        ours_sched = crontab_from_text(text, zone)
        ours = ours_sched.next_after(last)
        now = last + rng.uniform(0, 2) * (ours - last)
        m, h, dom, moy, dow = text.split()
        theirs = crontab(minute=m, hour=h, day_of_month=dom, month_of_year=moy, day_of_week=dow, app=app_for(zone))
        at, due = celery_next(theirs, last, zone, now)
        try:
            compare(ours, at, due, now)
        except AssertionError as e:
            raise AssertionError(f"{text} {zone} last={datetime.fromtimestamp(last, ZoneInfo(zone))}: {e}") from None
        compared += 1
        due_seen += due
    assert compared == 1000 and 300 < due_seen < 700  # both sides of the boundary are exercised


def test_interval_agrees_with_celery_across_dst() -> None:
    rng = random.Random(1616)
    for _ in range(500):
        seconds = rng.choice([1, 5, 30, 60, 90, 3600, 5400, 86400, 7 * 86400]) * rng.choice([1, 1, 2, 3])
        zone = rng.choice(ZONES)
        last = random_instant(rng)
        ours = Interval(float(seconds)).next_after(last)
        now = last + rng.uniform(0, 2) * seconds
        at, due = celery_next(schedule(timedelta(seconds=seconds), app=app_for(zone)), last, zone, now)
        compare(ours, at, due, now)


def test_relative_interval_agrees_with_celery_across_dst() -> None:
    rng = random.Random(7)
    for _ in range(200):
        seconds = rng.choice([60, 300, 900, 3600, 7200, 86400])
        zone = rng.choice(ZONES)
        last = random_instant(rng)
        ours = RelativeInterval(float(seconds), zone).next_after(last)
        now = last + rng.uniform(0, 2) * (ours - last)
        at, due = celery_next(schedule(timedelta(seconds=seconds), relative=True, app=app_for(zone)), last, zone, now)
        compare(ours, at, due, now)
    hourly = schedule(timedelta(hours=1), relative=True)
    assert from_celery(hourly, "Asia/Tokyo") == RelativeInterval(3600.0, "Asia/Tokyo")


def test_solar_agrees_with_celery() -> None:
    pytest.importorskip("ephem")
    rng = random.Random(161616)
    events = ["dawn_astronomical", "dawn_civil", "sunrise", "solar_noon", "sunset", "dusk_nautical"]
    for _ in range(300):
        event = rng.choice(events)
        # mostly temperate; some polar, where events skip days (the search goes on to the next)
        lat = rng.uniform(-60, 60) if rng.random() < 0.85 else rng.choice([-1, 1]) * rng.uniform(66, 80)
        lon = rng.uniform(-180, 180)
        zone = rng.choice(ZONES)
        last = random_instant(rng)
        ours = Solar(event, round(lat, 4), round(lon, 4)).next_after(last)
        now = last + rng.uniform(0, 2) * (ours - last)
        at, due = celery_next(solar(event, round(lat, 4), round(lon, 4), app=app_for(zone)), last, zone, now)
        compare(ours, at, due, now)


def test_from_celery_reads_each_kind_of_beat_schedule_value() -> None:
    assert from_celery(30, "UTC") == Interval(30.0)
    assert from_celery(timedelta(minutes=5), "UTC") == Interval(300.0)
    assert from_celery(schedule(timedelta(seconds=10)), "UTC") == Interval(10.0)
    c = from_celery(crontab(minute="0", hour="3"), "Asia/Tokyo")
    assert isinstance(c, Crontab) and c.timezone == "Asia/Tokyo" and c.text == "0 3 * * *"
    s = from_celery(solar("sunset", 35.68, 139.69), "UTC")
    assert s == Solar("sunset", 35.68, 139.69)
    with pytest.raises(ValueError, match="unsupported"):
        from_celery("daily", "UTC")


@pytest.mark.parametrize(
    ("schedule_", "words"),
    [
        (crontab_from_text("0 3 * * *", "Asia/Tokyo"), "every day at 03:00 Asia/Tokyo"),
        (crontab_from_text("30 9 * * 1-5", "UTC"), "every Monday, Tuesday, Wednesday, Thursday, Friday at 09:30 UTC"),
        (crontab_from_text("*/15 * * * *", "UTC"), "every hour at :00, :15, :30, :45 UTC"),
        (crontab_from_text("* * * * *", "UTC"), "every minute UTC"),
        (crontab_from_text("0 4 1 * *", "Europe/Berlin"), "cron '0 4 1 * *' Europe/Berlin"),
        (Interval(5.0), "every 5 seconds"),
        (Interval(3600.0), "every hour"),
        (Interval(90.0), "every 90 seconds"),
        (Solar("sunset", 35.68, 139.69), "every day at sunset at 35.68, 139.69"),
    ],
)
def test_schedules_in_words(schedule_: Any, words: str) -> None:
    assert schedule_.describe() == words


def test_a_crontab_across_the_spring_forward_gap_runs_when_the_wall_clock_resumes() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    c = crontab_from_text("30 2 * * *", "Europe/Berlin")
    last = datetime(2026, 3, 28, 2, 30, tzinfo=berlin).timestamp()
    # 02:30 does not exist on 29 March: zoneinfo (fold 0) puts it at 03:30 CEST, as Celery does
    assert datetime.fromtimestamp(c.next_after(last), berlin) == datetime(2026, 3, 29, 3, 30, tzinfo=berlin)
