"""A sample Celery app for the demo: tasks that succeed, fail, retry and run long, and a beat schedule."""

import os
import random
import time

from celery import Celery

app = Celery("sample", broker=os.environ.get("BROKER_URL", "redis://redis:6379/0"))
app.conf.update(
    task_send_sent_event=True,  # alertd needs it for queue names and queue wait times
    worker_send_task_events=True,  # same as -E
    task_routes={"sample.tasks.report": {"queue": "reports-heavy"}},
    beat_schedule={
        "orders-every-2s": {"task": "sample.tasks.order", "schedule": 2.0},
        "flaky-every-3s": {"task": "sample.tasks.flaky", "schedule": 3.0},
        "report-every-30s": {"task": "sample.tasks.report", "schedule": 30.0},
    },
)


@app.task(name="sample.tasks.order")
def order() -> str:
    time.sleep(random.uniform(0.05, 0.3))
    return "ok"


@app.task(name="sample.tasks.flaky", bind=True, max_retries=2)
def flaky(self) -> str:  # type: ignore[no-untyped-def]
    if random.random() < 0.3:
        raise self.retry(countdown=1, exc=ConnectionError("payment gateway reset the connection"))
    if random.random() < 0.3:
        raise ValueError("card declined")
    return "ok"


@app.task(name="sample.tasks.report", time_limit=20)
def report() -> str:
    time.sleep(random.uniform(5, 25))  # sometimes hits the time limit: CeleryTaskTimeLimitExceeded
    return "done"
