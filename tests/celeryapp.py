"""The Celery app the tests run as a real worker subprocess.

Broker from ALERTD_TEST_BROKER; events on (-E plus task_send_sent_event) as alertd's docs ask of
a deployment. Tasks cover the outcomes alertd must tell apart.
"""

from __future__ import annotations

import os
import time

from celery import Celery

app = Celery("alertdtest", broker=os.environ.get("ALERTD_TEST_BROKER", "redis://127.0.0.1:6379/13"))
_transport: dict[str, object] = {}
if os.environ.get("ALERTD_TEST_KEYPREFIX"):
    _transport["global_keyprefix"] = os.environ["ALERTD_TEST_KEYPREFIX"]
if os.environ.get("ALERTD_TEST_VISIBILITY"):
    # Redis redelivers an unacked message (a dead worker's) once it is this old; kombu's restore
    # sweep runs every second instead of every 100 s so a test sees the redelivery soon. A worker
    # SIGKILLed while it holds the sweep's lock blocks every sweep until the lock expires (5 min).
    _transport.update(
        visibility_timeout=float(os.environ["ALERTD_TEST_VISIBILITY"]),
        unacked_restore_interval=1,
        unacked_restore_throttle=1,
        unacked_mutex_expire=2,
    )
app.conf.update(
    task_send_sent_event=True,
    worker_send_task_events=True,
    task_default_queue=os.environ.get("ALERTD_TEST_QUEUE", "celery"),
    task_ignore_result=True,
    task_acks_late=os.environ.get("ALERTD_TEST_ACKS_LATE") == "1",
    worker_prefetch_multiplier=int(os.environ.get("ALERTD_TEST_PREFETCH", "1")),
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    broker_transport_options=_transport,
)


@app.task(name="t.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="t.fail")
def fail(msg: str = "boom") -> None:
    raise ValueError(msg)


@app.task(name="t.flaky")
def flaky(n: int, every: int = 5) -> int:
    """Fails for every `every`-th n: deterministic 1/every failure rate."""
    if n % every == 0:
        raise RuntimeError(f"flaky failure {n}")
    return n


@app.task(name="t.retry_once", bind=True, max_retries=3)
def retry_once(self) -> str:  # type: ignore[no-untyped-def]
    if self.request.retries == 0:
        raise self.retry(countdown=0, exc=ConnectionError("transient"))
    return "ok"


@app.task(name="t.sleep")
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.task(name="t.timeout", time_limit=1)
def timeout(seconds: float = 5.0) -> None:
    time.sleep(seconds)
