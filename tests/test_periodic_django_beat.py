"""django-celery-beat on PostgreSQL and on MariaDB: a real Django project (tests/djangoproj, its
migrations run), beat's DatabaseScheduler, a worker, and alertd reading the tables read-only.
Entries added, edited and disabled through Django's ORM while alertd runs (as the admin does) are
picked up within one reload."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.beat_fixtures import Celery, celery_beat_fixture, entry_view, start_alertd, wait_for  # noqa: F401
from tests.conftest import ROOT

pytestmark = [pytest.mark.broker, pytest.mark.worker]

DSN = {"postgresql": "postgresql://postgres@127.0.0.1:5432/test", "mysql": "mysql://root@127.0.0.1:3306/test"}
MODELS = "from django_celery_beat.models import PeriodicTask, IntervalSchedule, CrontabSchedule\n"


def django_env(db: str) -> dict[str, str]:
    env = {**os.environ, "ALERTD_TEST_DJANGO_DB": db, "DJANGO_SETTINGS_MODULE": "tests.djangoproj.settings"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def manage(db: str, *args: str) -> None:
    """Before alertd runs: migrate, reset the tables (blocking is fine then)."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.djangoproj.manage", *args], cwd=ROOT, env=django_env(db), capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"{db} not usable here: {done.stderr.decode()[-500:]}")


async def shell(db: str, code: str) -> None:
    """Django's ORM in a subprocess, as the admin would change the tables; never blocks alertd's loop."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.djangoproj.manage", "shell", "-c", MODELS + code,
        cwd=ROOT, env=django_env(db), stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()


@pytest.mark.parametrize("db", ["postgresql", "mysql"])
async def test_django_celery_beat_entries_are_checked_and_admin_changes_picked_up(
    db: str, celery_beat: Callable[[dict[str, dict[str, Any]]], Celery], redis_url: str, tmp_path: Path
) -> None:
    pytest.importorskip("django_celery_beat")
    pytest.importorskip("psycopg" if db == "postgresql" else "pymysql")
    manage(db, "migrate", "-v0")
    reset = "; ".join(f"{m}.objects.all().delete()" for m in ("PeriodicTask", "IntervalSchedule", "CrontabSchedule"))
    manage(db, "shell", "-c", MODELS + reset)
    manage(
        db, "shell", "-c",
        MODELS + "every2 = IntervalSchedule.objects.create(every=2, period='seconds')\n"
        "PeriodicTask.objects.create(name='every-2s', task='p.ok', interval=every2, args='[5]')\n"
        "tokyo = CrontabSchedule.objects.create(minute='0', hour='3', timezone='Asia/Tokyo')\n"
        "PeriodicTask.objects.create(name='nightly-tokyo', task='p.ok', crontab=tokyo, args='[6]')\n",
    )  # fmt: skip
    celery = celery_beat({})
    celery.env.update(ALERTD_TEST_DJANGO_DB=db)
    celery.worker()
    celery.beat(scheduler="django_celery_beat.schedulers:DatabaseScheduler", app="tests.djangoproj.celeryconf")
    daemon = await start_alertd(tmp_path, redis_url, {}, periodic=f"django_celery_beat: {{dsn: '{DSN[db]}'}}")
    try:
        await wait_for(
            lambda: (entry_view(daemon, "every-2s")["last_run"] or {}).get("outcome") == "succeeded",
            timeout=20,
            what="a run of every-2s, matched by its args [5]",
        )
        view = entry_view(daemon, "every-2s")
        assert view["source"] == "django_celery_beat" and view["seen_from"] == "task-sent"
        assert entry_view(daemon, "nightly-tokyo")["schedule_text"] == "every day at 03:00 Asia/Tokyo"

        await shell(
            db,
            "every3 = IntervalSchedule.objects.create(every=3, period='seconds')\n"
            "PeriodicTask.objects.create(name='added', task='p.ok', interval=every3, args='[7]')",
        )
        added = time.monotonic()
        await wait_for(lambda: "added" in daemon.periodic.entries, timeout=5, what="the added entry")
        assert time.monotonic() - added < 1 + 1.5  # one reload, and the read
        await wait_for(
            lambda: (entry_view(daemon, "added")["last_run"] or {}).get("outcome") == "succeeded",
            timeout=15,
            what="a run of the added entry",
        )
        await shell(
            db,
            "t = PeriodicTask.objects.get(name='added')\n"
            "t.interval = IntervalSchedule.objects.create(every=4, period='seconds'); t.save()",
        )
        await wait_for(
            lambda: entry_view(daemon, "added")["schedule_text"] == "every 4 seconds", timeout=5, what="edit"
        )
        await shell(db, "t = PeriodicTask.objects.get(name='added'); t.enabled = False; t.save()")
        await wait_for(lambda: entry_view(daemon, "added")["state"] == "disabled", timeout=5, what="disabled")
        assert [a.labels for a in daemon.engine.alerts()] == []
        assert daemon.periodic.problems == []
    finally:
        await daemon.stop()
