"""The maintenance flow an operator follows with the CLI against a running alertd: preview,
silence for 2 h with a comment, see the pages stop, expire, see them resume; and the CLI's
errors and exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.api_fixtures import (
    READ_TOKEN,
    SILENCE_TOKEN,
    Harness,
    ThreadedHarness,
    threaded_api_fixture,  # noqa: F401 (registers the fixture)
)
from tests.conftest import ROOT, free_port


def cli(t: ThreadedHarness, *argv: str, token: str | None = SILENCE_TOKEN) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ALERTD_URL": t.base}
    env.pop("ALERTD_TOKEN", None)
    if token:
        env["ALERTD_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "alertd", *argv], capture_output=True, text=True, env=env, timeout=60, cwd=ROOT
    )


async def fire(h: Harness) -> None:
    h.fail_task()
    await h.step(0.1)


def pages(t: ThreadedHarness) -> int:
    return sum(1 for r in t.sink.requests if r["path"].startswith("/hook"))


def test_preview_silence_see_it_hold_expire_see_pages_resume(threaded_api: ThreadedHarness) -> None:
    t = threaded_api
    t.run(fire(t.h))
    t.run(t.h.step(1))
    assert pages(t) == 1

    pv = cli(t, "silence", "preview", 'task="billing.charge"')
    assert pv.returncode == 0, pv.stderr
    assert "1 firing alert(s) would be silenced" in pv.stdout and "TaskFailed" in pv.stdout

    add = cli(t, "silence", "add", 'task="billing.charge"', "--duration", "2h", "--comment", "deploy 4.2", "-a", "ana")
    assert add.returncode == 0, add.stderr
    sid = add.stdout.strip()
    silence = t.get_json(f"/api/v2/silence/{sid}")
    assert silence["comment"] == "deploy 4.2" and silence["createdBy"] == "ana"
    assert silence["status"]["state"] == "active"

    for _ in range(10):  # repeat_interval is 3 s: none of these repeats may go out
        t.run(t.h.step(1))
    assert pages(t) == 1

    shown = cli(t, "alert", "query", "--silenced", token=READ_TOKEN)
    assert shown.returncode == 0 and f"silenced {sid}" in shown.stdout
    hidden = cli(t, "alert", "query", token=READ_TOKEN)
    assert "TaskFailed" not in hidden.stdout  # silenced alerts are left out by default, as amtool does
    listed = cli(t, "silence", "query", 'task="billing.charge"', token=READ_TOKEN)
    assert sid in listed.stdout and "deploy 4.2" in listed.stdout and "active" in listed.stdout
    assert cli(t, "silence", "query", "-q", token=READ_TOKEN).stdout.split() == [sid]

    ex = cli(t, "silence", "expire", sid)
    assert ex.returncode == 0 and f"expired {sid}" in ex.stdout
    assert sid not in cli(t, "silence", "query", token=READ_TOKEN).stdout  # expired: hidden by default
    assert sid in cli(t, "silence", "query", "--expired", token=READ_TOKEN).stdout
    for _ in range(3):
        t.run(t.h.step(1))
    assert pages(t) == 2  # the next repeat goes through


def test_cli_errors_and_exit_codes(threaded_api: ThreadedHarness, tmp_path: Path) -> None:
    t = threaded_api
    no_token = cli(t, "silence", "add", 'queue="q"', "--comment", "x", token=None)
    assert no_token.returncode == 1 and "HTTP 401" in no_token.stderr
    reader = cli(t, "silence", "add", 'queue="q"', "--comment", "x", token=READ_TOKEN)
    assert reader.returncode == 1 and "HTTP 403" in reader.stderr and "needs silence" in reader.stderr
    bad_matcher = cli(t, "silence", "add", "queue", "--comment", "x")
    assert bad_matcher.returncode == 2 and "queue" in bad_matcher.stderr
    bad_duration = cli(t, "silence", "add", 'queue="q"', "--duration", "2 hours", "--comment", "x")
    assert bad_duration.returncode == 2 and "2 hours" in bad_duration.stderr
    bad_start = cli(t, "silence", "add", 'queue="q"', "--start", "tomorrow", "--comment", "x")
    assert bad_start.returncode == 2 and "--start" in bad_start.stderr and "Traceback" not in bad_start.stderr
    missing = cli(t, "silence", "expire", "00000000-0000-0000-0000-000000000000")
    assert missing.returncode == 1 and "not found" in missing.stderr
    no_file = cli(t, "silence", "query", "--token-file", str(tmp_path / "nope"), token=None)
    assert no_file.returncode == 2 and "--token-file" in no_file.stderr and "Traceback" not in no_file.stderr
    (tmp_path / "tok").write_text(READ_TOKEN + "\n")
    assert cli(t, "silence", "query", "--token-file", str(tmp_path / "tok"), token=None).returncode == 0
    down = cli(t, "alert", "query", "--url", f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 3 and "cannot reach alertd" in down.stderr
    assert t.get_json("/api/v2/silences") == []  # none of the refused commands created anything


SLOW_RULE = """
groups:
  - name: slow
    interval: 1s
    rules:
      - alert: TaskFailedForLong
        event: task-failed
        by: [task]
        for: 10m
        resolve_after: 20m
"""


def test_preview_says_how_many_pending_alerts_it_would_cover_too(tmp_path: Path) -> None:
    """A pending alert (waiting out `for`) has not paged yet; a silence would hold its first page."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "slow.yaml").write_text(SLOW_RULE)
    t = ThreadedHarness(tmp_path, f"sqlite:///{tmp_path}/state.db")
    try:
        t.run(fire(t.h))
        t.run(t.h.step(1))
        pv = cli(t, "silence", "preview", 'task="billing.charge"', token=READ_TOKEN)
        assert pv.returncode == 0, pv.stderr
        lines = pv.stdout.splitlines()
        assert lines[0] == "1 firing alert(s) would be silenced" and lines[1].startswith("  TaskFailed ")
        assert lines[2] == "1 pending alert(s) would be silenced too if they fire while it lasts"
        assert lines[3].startswith("  TaskFailedForLong ") and "task=billing.charge" in lines[3]
        none = cli(t, "silence", "preview", 'task="other"', token=READ_TOKEN)
        assert none.stdout == "0 firing alert(s) would be silenced\n"
    finally:
        t.close()


def test_a_cli_silence_is_created_by_the_tokens_name_as_history_records_it(threaded_api: ThreadedHarness) -> None:
    """It said "Created by root" (the login running the CLI) while history said the token's name."""
    t = threaded_api
    add = cli(t, "silence", "add", 'queue="reports"', "--comment", "rebuild")  # the "ops" silence token
    assert add.returncode == 0, add.stderr
    sid = add.stdout.strip()
    assert t.get_json(f"/api/v2/silence/{sid}")["createdBy"] == "ops"
    history = t.get_json("/api/alertd/v1/history", query="kind=api")
    assert ("ops", "silence created") in [(e["author"], e["reason"]) for e in history]
    listed = cli(t, "silence", "query", token=READ_TOKEN).stdout.splitlines()
    assert listed[0].split()[-3:] == ["Created", "by", "Comment"] and " ops " in listed[1]
    named = cli(t, "silence", "add", 'queue="reports"', "--comment", "rebuild", "--author", "ana")
    assert t.get_json(f"/api/v2/silence/{named.stdout.strip()}")["createdBy"] == "ana"  # given: kept
