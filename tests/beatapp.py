"""The Celery app of the periodic tests: a beat schedule from the environment, tasks to run on it.

`celery -A tests.beatapp beat` and `... worker` run it as subprocesses; alertd imports the same
module (periodic.app) in the test process, where the test sets the schedule with `use_schedule`.
ALERTD_TEST_BEAT is JSON: {"entry name": {"task": "p.ok", "every": 2, "args": [...]}}.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from celery import Celery

app = Celery("alertdbeat", broker=os.environ.get("ALERTD_TEST_BROKER", "redis://127.0.0.1:6379/13"))
QUIET = os.environ.get("ALERTD_TEST_NO_TASK_EVENTS") == "1"  # a deployment that forgot both
app.conf.update(
    task_send_sent_event=not QUIET,  # beat's sends are seen as task-sent: what alertd's periodic checks need
    worker_send_task_events=not QUIET,
    task_ignore_result=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    beat_max_loop_interval=1,
    timezone="UTC",
    # for `celery beat -S redbeat.RedBeatScheduler`: its keys in the broker's database
    redbeat_redis_url=os.environ.get("ALERTD_TEST_BROKER", "redis://127.0.0.1:6379/13"),
    redbeat_key_prefix="redbeat:",
)


def use_schedule(spec: dict[str, dict[str, Any]]) -> None:
    """Set the app's beat_schedule from the JSON form (seconds, args list)."""
    app.conf.beat_schedule = {
        name: {"task": e["task"], "schedule": float(e["every"]), "args": tuple(e.get("args", ()))}
        for name, e in spec.items()
    }


use_schedule(json.loads(os.environ.get("ALERTD_TEST_BEAT", "{}")))


@app.task(name="p.ok")
def ok(n: int = 0) -> int:
    return n


@app.task(name="p.unless_flag")
def unless_flag(flag: str) -> str:
    """Fails while the file `flag` exists: a periodic task that starts failing, then recovers."""
    if Path(flag).exists():
        raise RuntimeError(f"{flag} is set")
    return "ok"


@app.task(name="p.sleep")
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds
