"""Periodic checks against a real `celery beat` and worker on Redis, alertd reading beat's schedule.

Seconds-scale schedules and graces (tests/beat_fixtures.py FAST_RULES: missed after 3 s of grace),
so each test runs in about the time its processes take to boot.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from alertd.daemon import Daemon
from tests.beat_fixtures import Celery, celery_beat_fixture, entry_view, firing, start_alertd, wait_for  # noqa: F401

pytestmark = [pytest.mark.broker, pytest.mark.worker]

OPENAPI = yaml.safe_load(resources.files("alertd.api").joinpath("openapi-alertd.yaml").read_text())

Make = Callable[[dict[str, dict[str, Any]]], Celery]


async def test_entries_that_run_raise_nothing_and_a_stopped_beat_is_missed_then_resolved(
    celery_beat: Make, redis_url: str, tmp_path: Path
) -> None:
    # two entries of one task, told apart by their args
    schedule = {"two": {"task": "p.ok", "every": 2, "args": [2]}, "three": {"task": "p.ok", "every": 3, "args": [3]}}
    celery = celery_beat(schedule)
    celery.worker()
    beat = celery.beat()
    daemon = await start_alertd(tmp_path, redis_url, schedule)
    try:

        def ran_twice() -> bool:
            return all(len(daemon.periodic.entries[n].runs) >= 2 for n in schedule)

        await wait_for(ran_twice, timeout=20, what="two runs of each entry")
        started = time.monotonic()
        while time.monotonic() - started < 6:  # on time: nothing fires
            assert [a.labels for a in daemon.engine.alerts()] == []
            await asyncio.sleep(0.5)
        for name in schedule:
            view = entry_view(daemon, name)
            assert view["last_run"]["outcome"] in ("succeeded", "started", "sent", "received")
            assert view["seen_from"] == "task-sent" and view["state"] in ("ok", "running", "queued")
            assert view["queue"] == "celery"
        assert daemon.periodic.snapshot(daemon.clock.now())["task_sent_events"] is True
        assert entry_view(daemon, "two")["schedule_text"] == "every 2 seconds"
        await api_and_cli_list_the_entries(daemon)

        beat.signal(signal.SIGTERM)
        stopped = time.monotonic()
        await wait_for(lambda: len(firing(daemon, "CeleryPeriodicTaskMissed")) == 2, timeout=15, what="missed x2")
        waited = time.monotonic() - stopped
        assert waited < 3 + 3 + 2.5, waited  # every + grace + evaluation
        assert {a["entry"] for a in firing(daemon, "CeleryPeriodicTaskMissed")} == {"two", "three"}

        celery.beat()  # its schedule file says both are overdue: it sends them at once
        await wait_for(lambda: not firing(daemon, "CeleryPeriodicTaskMissed"), timeout=20, what="resolved")
    finally:
        await daemon.stop()


async def test_a_task_that_starts_failing_pages_and_the_next_success_resolves(
    celery_beat: Make, redis_url: str, tmp_path: Path
) -> None:
    flag = tmp_path / "fail"
    schedule = {"flaky": {"task": "p.unless_flag", "every": 2, "args": [str(flag)]}}
    celery = celery_beat(schedule)
    celery.worker()
    celery.beat()
    daemon = await start_alertd(tmp_path, redis_url, schedule)
    try:
        await wait_for(
            lambda: (entry_view(daemon, "flaky")["last_run"] or {}).get("outcome") == "succeeded", what="a success"
        )
        assert not firing(daemon, "CeleryPeriodicTaskFailed")
        flag.touch()
        await wait_for(lambda: firing(daemon, "CeleryPeriodicTaskFailed"), timeout=10, what="the failed page")
        assert entry_view(daemon, "flaky")["last_run"]["exception"] == "RuntimeError"
        flag.unlink()
        await wait_for(lambda: not firing(daemon, "CeleryPeriodicTaskFailed"), timeout=10, what="resolved")
        assert entry_view(daemon, "flaky")["state"] in ("ok", "running", "queued")
    finally:
        await daemon.stop()


async def test_a_run_longer_than_the_interval_overran(celery_beat: Make, redis_url: str, tmp_path: Path) -> None:
    schedule = {"slow": {"task": "p.sleep", "every": 2, "args": [5]}}
    celery = celery_beat(schedule)
    celery.worker(concurrency=2)
    celery.beat()
    daemon = await start_alertd(tmp_path, redis_url, schedule)
    try:
        (page,) = await wait_for(lambda: firing(daemon, "CeleryPeriodicTaskOverran"), timeout=15, what="overran")
        assert page["entry"] == "slow" and page["task"] == "p.sleep"
        assert not firing(daemon, "CeleryPeriodicTaskMissed")
    finally:
        await daemon.stop()


async def test_a_worker_sigkilled_mid_run_never_finished(celery_beat: Make, redis_url: str, tmp_path: Path) -> None:
    schedule = {"long": {"task": "p.sleep", "every": 3, "args": [60]}}
    celery = celery_beat(schedule)
    worker = celery.worker(concurrency=1)
    celery.beat()
    daemon = await start_alertd(tmp_path, redis_url, schedule)
    try:
        await wait_for(
            lambda: any(r.state == "started" for r in daemon.periodic.entries["long"].runs), what="a run to start"
        )
        assert not firing(daemon, "CeleryPeriodicTaskNeverFinished")
        worker.signal(signal.SIGKILL)
        (page,) = await wait_for(
            lambda: firing(daemon, "CeleryPeriodicTaskNeverFinished"), timeout=15, what="never finished"
        )
        assert page["entry"] == "long"
        assert entry_view(daemon, "long")["state"] == "never_finished"
    finally:
        await daemon.stop()


def json_schema(node: Any) -> Any:
    """OpenAPI 3.0's `nullable: true` as JSON Schema's type list, for jsonschema."""
    if isinstance(node, dict):
        out = {k: json_schema(v) for k, v in node.items() if k != "nullable"}
        if node.get("nullable") and "type" in node:
            out["type"] = [node["type"], "null"]
        return out
    if isinstance(node, list):
        return [json_schema(v) for v in node]
    return node


async def api_and_cli_list_the_entries(daemon: Daemon) -> None:
    """GET /api/alertd/v1/periodic conforms to the OpenAPI document; `alertd periodic` prints the table."""
    url = f"http://{daemon.listen_address}"
    out = await run_cli("periodic", "--url", url, "-o", "json")
    body = json.loads(out)
    schema = {"components": json_schema(OPENAPI["components"]), "$ref": "#/components/schemas/PeriodicList"}
    jsonschema.Draft202012Validator(schema).validate(body)
    assert body["source"] == "beat_schedule" and body["task_sent_events"] is True and body["warnings"] == []
    two = next(e for e in body["entries"] if e["name"] == "two")
    assert (
        two["args"] == "[2]"
        and two["last_run"]["sent_at"].endswith("Z")
        and two["next_expected"] > two["last_run"]["sent_at"]
    )
    text = await run_cli("periodic", "--url", url)
    header, *rows = text.splitlines()
    assert header.split() == ["Entry", "Task", "Schedule", "Next", "expected", "Last", "run", "Outcome", "State"]
    assert any(r.startswith("three") and "every 3 seconds" in r for r in rows), text


async def run_cli(*args: str) -> str:
    """The CLI as a subprocess, without blocking the event loop the daemon it asks runs on."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "alertd", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_redbeat_entries_added_edited_disabled_and_deleted_are_picked_up(
    celery_beat: Make, redis_url: str, tmp_path: Path
) -> None:
    pytest.importorskip("redbeat")
    from celery.schedules import schedule as every
    from redbeat import RedBeatSchedulerEntry

    from tests import beatapp

    static = {"static": {"task": "p.ok", "every": 2, "args": [1]}}
    celery = celery_beat(static)
    celery.worker()
    celery.beat(scheduler="redbeat.RedBeatScheduler")
    daemon = await start_alertd(tmp_path, redis_url, {}, periodic=f"redbeat: {{url: '{redis_url}'}}")
    try:
        await wait_for(lambda: entry_view(daemon, "static")["last_run"], what="RedBeat's copy of the static entry")
        assert entry_view(daemon, "static")["source"] == "redbeat"
        beatapp.app.conf.redbeat_redis_url = redis_url  # this process writes RedBeat's keys as an admin would
        dyn = RedBeatSchedulerEntry("dyn", "p.ok", every(timedelta(seconds=2)), args=[9], app=beatapp.app)
        dyn.save()
        added = time.monotonic()
        await wait_for(lambda: "dyn" in daemon.periodic.entries, timeout=5, what="the new entry")
        assert time.monotonic() - added < 1 + 1.5  # one reload, and the read
        await wait_for(
            lambda: (entry_view(daemon, "dyn")["last_run"] or {}).get("outcome") == "succeeded",
            timeout=10,
            what="a run of the new entry, matched by its args [9]",
        )
        dyn.schedule = every(timedelta(seconds=3))
        dyn.save()
        await wait_for(lambda: entry_view(daemon, "dyn")["schedule_text"] == "every 3 seconds", timeout=5, what="edit")
        dyn.enabled = False
        dyn.save()
        await wait_for(lambda: entry_view(daemon, "dyn")["state"] == "disabled", timeout=5, what="disabled")
        assert "dyn" not in {k[0] for k in daemon.periodic.gauges(daemon.clock.now())["periodic_missed_seconds"]}
        await asyncio.sleep(6)  # disabled: RedBeat sends it no more, and alertd expects nothing of it
        assert [a.labels for a in daemon.engine.alerts()] == []
        dyn.delete()
        await wait_for(lambda: "dyn" not in daemon.periodic.entries, timeout=5, what="deleted")
        assert entry_view(daemon, "static")["state"] in ("ok", "running", "queued")
    finally:
        await daemon.stop()
