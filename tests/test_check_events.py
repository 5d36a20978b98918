"""`alertd check events` against real workers on Redis: one started without -E (and a producer
without task_send_sent_event) is named; a deployment with both set passes."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from celery import Celery as CeleryApp

from tests.beat_fixtures import Celery, celery_beat_fixture  # noqa: F401 (registers the fixture)
from tests.conftest import ROOT

pytestmark = [pytest.mark.broker, pytest.mark.worker]


def check_events(config: Path, producer: CeleryApp, queues: list[str], seconds: float = 4.0) -> tuple[int, str]:
    """Run `alertd check events` while `producer` sends p.ok to each queue twice a second."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "alertd", "--config", str(config), "check", "events", "--listen", str(seconds)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    end = time.monotonic() + seconds + 2
    while proc.poll() is None and time.monotonic() < end:
        for q in queues:
            producer.send_task("p.ok", (1,), queue=q)
        time.sleep(0.5)
    out, _ = proc.communicate(timeout=30)
    return proc.returncode, out


def test_check_events_names_a_worker_without_minus_e_and_producers_without_sent_events(
    celery_beat: Callable[[dict[str, dict[str, Any]]], Celery], redis_url: str, tmp_path: Path
) -> None:
    celery = celery_beat({})
    quiet = celery.worker(name="quiet", queues="quiet", env={"ALERTD_TEST_NO_TASK_EVENTS": "1"})
    celery.worker(name="loud", queues="loud")
    assert "task events: OFF" in quiet.output()
    config = tmp_path / "alertd.yaml"
    config.write_text(f"broker: {redis_url}\nrule_files: []\n")

    careless = CeleryApp("careless", broker=redis_url, set_as_current=False)  # task_send_sent_event off
    code, out = check_events(config, careless, ["quiet", "loud"])
    assert code == 1, out
    assert "warning: worker quiet" in out and "sent no task events: start it with -E" in out, out
    assert "warning: worker loud" not in out, out
    assert "received with no task-sent event (p.ok)" in out and "task_send_sent_event = True" in out, out

    careful = CeleryApp("careful", broker=redis_url, set_as_current=False)
    careful.conf.task_send_sent_event = True
    code, out = check_events(config, careful, ["loud"])
    assert code == 0, out
    assert "warning" not in out, out
    careless.close()
    careful.close()
