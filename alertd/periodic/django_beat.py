"""Entries from django-celery-beat's tables, read-only, by a DSN (PostgreSQL or MySQL/MariaDB).

One query joins `django_celery_beat_periodictask` with its interval, crontab (each with its own
timezone), solar and clocked schedules. Beat (DatabaseScheduler) counts an entry never run from
`date_changed`; so does alertd. Blocking drivers (psycopg, PyMySQL: the `django-celery-beat`
extra): called in a thread. The session is read-only: alertd never writes these tables.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from alertd.periodic.entries import Entry, beat_args_repr, beat_kwargs_repr
from alertd.periodic.schedules import Clocked, Interval, Schedule, Solar, crontab_from_text

QUERY = """
SELECT t.name, t.task, t.args, t.kwargs, t.queue, t.enabled, t.one_off, t.total_run_count,
       t.last_run_at, t.date_changed,
       i.every, i.period,
       c.minute, c.hour, c.day_of_month, c.month_of_year, c.day_of_week, c.timezone,
       s.event, s.latitude, s.longitude,
       k.clocked_time
FROM django_celery_beat_periodictask t
LEFT JOIN django_celery_beat_intervalschedule i ON t.interval_id = i.id
LEFT JOIN django_celery_beat_crontabschedule c ON t.crontab_id = c.id
LEFT JOIN django_celery_beat_solarschedule s ON t.solar_id = s.id
LEFT JOIN django_celery_beat_clockedschedule k ON t.clocked_id = k.id
ORDER BY t.name
"""
PERIOD_SECONDS = {"days": 86400.0, "hours": 3600.0, "minutes": 60.0, "seconds": 1.0, "microseconds": 1e-6}


def django_beat_entries(dsn: str) -> tuple[list[Entry], list[str]]:
    """Every periodic task in the tables, and a problem line for each one alertd cannot read."""
    rows = _query(dsn)
    entries: list[Entry] = []
    problems: list[str] = []
    for row in rows:
        try:
            entries.append(_entry(row))
        except (ValueError, TypeError, KeyError) as e:
            problems.append(f"django_celery_beat {row.get('name')!r}: {e}")
    return entries, problems


def _query(dsn: str) -> list[dict[str, Any]]:
    scheme = dsn.split("://", 1)[0]
    if scheme in ("postgresql", "postgres"):
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(dsn, row_factory=dict_row, connect_timeout=10) as conn:
            conn.read_only = True
            return list(conn.execute(QUERY).fetchall())
    if scheme in ("mysql", "mariadb"):
        import pymysql
        import pymysql.cursors

        u = urlsplit(dsn)
        conn = pymysql.connect(
            host=u.hostname or "localhost",
            port=u.port or 3306,
            user=unquote(u.username or "root"),
            password=unquote(u.password or ""),
            database=u.path.lstrip("/"),
            cursorclass=pymysql.cursors.DictCursor,
            connect_timeout=10,
        )
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION TRANSACTION READ ONLY")
                cur.execute(QUERY)
                return list(cur.fetchall())
        finally:
            conn.close()
    raise ValueError(f"periodic.django_celery_beat.dsn: expected postgresql://... or mysql://..., got {scheme}://")


def _entry(row: dict[str, Any]) -> Entry:
    last = row["last_run_at"] or row["date_changed"]  # beat's own fallback for a task never run
    enabled = bool(row["enabled"]) and not (row["one_off"] and (row["total_run_count"] or 0) > 0)
    return Entry(
        name=str(row["name"]),
        task=str(row["task"]),
        schedule=_schedule(row),
        args_repr=beat_args_repr(json.loads(row["args"] or "[]")),
        kwargs_repr=beat_kwargs_repr(json.loads(row["kwargs"] or "{}")),
        queue=str(row["queue"] or ""),
        enabled=enabled,
        source="django_celery_beat",
        last_run_at=_timestamp(last),
    )


def _schedule(row: dict[str, Any]) -> Schedule:
    if row["every"] is not None:
        return Interval(float(row["every"]) * PERIOD_SECONDS[str(row["period"])])
    if row["minute"] is not None:
        text = " ".join(str(row[f]) for f in ("minute", "hour", "day_of_month", "month_of_year", "day_of_week"))
        return crontab_from_text(text, str(row["timezone"] or "UTC"))
    if row["event"] is not None:
        return Solar(str(row["event"]), float(row["latitude"]), float(row["longitude"]))
    if row["clocked_time"] is not None:
        at = _timestamp(row["clocked_time"])
        assert at is not None
        return Clocked(at)
    raise ValueError("no schedule (interval, crontab, solar or clocked) is set")


def _timestamp(value: Any) -> float | None:
    """A DATETIME column: aware from PostgreSQL, naive UTC from MySQL (Django stores UTC)."""
    if not isinstance(value, datetime):
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
