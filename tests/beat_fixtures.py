"""A real `celery beat` and worker of tests/beatapp.py, and alertd checking that beat's schedule."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from alertd.alert import AlertState
from alertd.config import load_config
from alertd.daemon import Daemon
from tests import beatapp
from tests.conftest import ROOT, wait_until
from tests.waiting import wait_for

# The celery-beat group of the pack with thresholds a test can reach, evaluated every second.
FAST_RULES = """
groups:
  - name: beat-fast
    interval: 1s
    rules:
      - alert: CeleryPeriodicTaskMissed
        metric: periodic_missed_seconds
        by: [entry, task, queue]
        above: 3
      - alert: CeleryPeriodicTaskLateStart
        metric: periodic_late_start_seconds
        by: [entry, task, queue]
        above: 10
      - alert: CeleryPeriodicTaskFailed
        metric: periodic_failed
        by: [entry, task, queue]
        above: 0
      - alert: CeleryPeriodicTaskOverran
        metric: periodic_overran
        by: [entry, task, queue]
        above: 0
      - alert: CeleryPeriodicTaskNeverFinished
        metric: periodic_never_finished
        by: [entry, task, queue]
        above: 0
"""


@dataclass
class Proc:
    """A celery subprocess (its own process group) and its log."""

    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            self.proc.wait(15)

    def wait_for(self, text: str, what: str) -> None:
        def seen() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"{what} exited early:\n{self.output()[-3000:]}")
            return text in self.output()

        wait_until(seen, timeout=40, interval=0.1, what=what)


class Celery:
    """Starts beat and workers of tests.beatapp on `broker` with one schedule; all killed at the end."""

    def __init__(self, broker: str, tmp_path: Path, schedule: dict[str, dict[str, Any]]) -> None:
        self.broker = broker
        self.tmp = tmp_path
        self.schedule = schedule
        self.started: list[Proc] = []
        self.env = {**os.environ, "ALERTD_TEST_BROKER": broker, "ALERTD_TEST_BEAT": json.dumps(schedule)}
        self.env["PYTHONPATH"] = str(ROOT) + os.pathsep + self.env.get("PYTHONPATH", "")

    def _spawn(self, name: str, args: list[str], app: str = "tests.beatapp", env: dict[str, str] | None = None) -> Proc:
        log = self.tmp / f"{name}.log"
        cmd = [sys.executable, "-m", "celery", "-A", app, *args, "-l", "INFO"]
        with log.open("ab") as fh:
            proc = subprocess.Popen(
                cmd, cwd=ROOT, env={**self.env, **(env or {})}, stdout=fh, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        p = Proc(proc, log)
        self.started.append(p)
        return p

    def worker(
        self, name: str = "w", concurrency: int = 2, queues: str = "celery", env: dict[str, str] | None = None
    ) -> Proc:
        """A worker with task events (-E) unless env sets ALERTD_TEST_NO_TASK_EVENTS=1."""
        hostname = f"{name}{os.getpid()}@beattest"
        events = [] if (env or {}).get("ALERTD_TEST_NO_TASK_EVENTS") == "1" else ["-E"]
        args = ["worker", *events, "-P", "prefork", "-c", str(concurrency), "-n", hostname, "-Q", queues]
        w = self._spawn(hostname, [*args, "--without-mingle", "--without-gossip"], env=env)
        w.wait_for("ready.", f"celery worker {hostname}")
        return w

    def beat(self, scheduler: str | None = None, app: str = "tests.beatapp") -> Proc:
        # The schedule file keeps each entry's last run across a restart of beat, as in production.
        files = ["-s", str(self.tmp / "beat-schedule"), "--pidfile", str(self.tmp / "beat.pid")]
        more = ["-S", scheduler] if scheduler else []
        b = self._spawn("beat", ["beat", *files, *more, "--max-interval", "1"], app)
        b.wait_for("beat: Starting", "celery beat")
        return b

    def close(self) -> None:
        for p in self.started:
            p.signal(signal.SIGKILL)


@pytest.fixture(name="celery_beat")
def celery_beat_fixture(redis_url: str, tmp_path: Path) -> Iterator[Callable[[dict[str, dict[str, Any]]], Celery]]:
    """Call with a schedule ({"entry": {"task": ..., "every": seconds, "args": [...]}})."""
    made: list[Celery] = []

    def make(schedule: dict[str, dict[str, Any]]) -> Celery:
        c = Celery(redis_url, tmp_path, schedule)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


async def start_alertd(
    tmp_path: Path, broker: str, schedule: dict[str, dict[str, Any]], periodic: str = 'app: "tests.beatapp:app"'
) -> Daemon:
    """alertd on the broker, checking tests.beatapp's schedule (or the source `periodic`, the
    inside of the section's mapping, names), read every second, with FAST_RULES."""
    beatapp.use_schedule(schedule)  # the module alertd imports in this process: same schedule as beat's
    (tmp_path / "rules.yaml").write_text(FAST_RULES)
    (tmp_path / "alertd.yaml").write_text(
        f"""
broker: {broker}
store: sqlite:///{tmp_path / "state.db"}
rule_files: [rules.yaml]
api: {{listen: "127.0.0.1:0"}}
sampler: {{inspect: false, interval: 5s}}
observe: {{worker_lost_after: 3s, heartbeat_misses: 1.5}}
periodic: {{{periodic}, reload: 1s}}
"""
    )
    daemon = Daemon(load_config(tmp_path / "alertd.yaml"))
    await daemon.start(serve=True)
    await wait_for(lambda: daemon.periodic.entries and daemon.health.connected, what="alertd to read the schedule")
    return daemon


def firing(daemon: Daemon, alertname: str) -> list[dict[str, str]]:
    return [
        dict(a.labels)
        for a in daemon.engine.alerts()
        if a.labels["alertname"] == alertname and a.state is AlertState.FIRING
    ]


def entry_view(daemon: Daemon, name: str) -> dict[str, Any]:
    snap = daemon.periodic.snapshot(daemon.clock.now())
    return next(e for e in snap["entries"] if e["name"] == name)
