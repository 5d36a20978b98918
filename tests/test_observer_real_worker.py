"""The observer against a real prefork Celery worker on Redis, through alertd's Redis event source.

What the unit tests cannot prove with recorded shapes: a running task ages on the stuck-task gauge
and shows in the snapshot, a countdown task's wait counts from its ETA, a hard time limit reaches
event rules once with its real class, a revoked task leaves the table, and a SIGKILLed worker is
reported lost within its heartbeat window (freq 2 s; floor 3 s, 1.5 misses).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from celery import Celery

from alertd.clock import WallClock
from alertd.observe.observer import Observer
from alertd.observe.series import SeriesStore
from alertd.sources import open_event_source
from alertd.sources.health import StreamHealth
from tests.conftest import CeleryWorker
from tests.observe_fixtures import producer_fixture, wait_for  # noqa: F401 (registers the fixture)

pytestmark = [pytest.mark.broker, pytest.mark.worker]


async def test_running_countdown_time_limited_revoked_and_killed(
    redis_url: str,
    unique: str,
    celery_worker_factory: Callable[..., CeleryWorker],
    producer: Callable[..., Celery],
) -> None:
    clock = WallClock()
    series = SeriesStore(bucket_seconds=1, retention_seconds=600)
    health = StreamHealth()
    observer = Observer(series, clock, worker_lost_after=3.0, heartbeat_misses=1.5, health=health)
    failures: list[dict[str, Any]] = []
    observer.watch(failures.append, frozenset({"task-failed"}))
    prefix = f"obs-{unique}:"  # a private stream: other tests share db 13 and run the same tasks
    source = open_event_source(
        redis_url, observer.on_events, clock, health, transport_options={"global_keyprefix": prefix}
    )
    await source.start()
    try:
        await source.wait_connected()
        queue = f"q-{unique}"
        worker = celery_worker_factory(
            redis_url, queues=[queue], concurrency=2, extra_env={"ALERTD_TEST_KEYPREFIX": prefix}
        )
        host = worker.hostname
        app = producer(redis_url, prefix)

        def gauge(name: str) -> dict[tuple[str, ...], float]:
            return observer.gauges(clock.now())[name]

        await wait_for(lambda: gauge("worker_up").get((host,)) == 1.0, what="the worker's first heartbeat")

        # A first task, and its task-sent seen: a task whose worker events then beat its own
        # task-sent waits for it (alertd.observe.reorder); before any, nothing tells they are on.
        app.send_task("t.sleep", (0,), queue=queue)
        await wait_for(
            lambda: ("t.sleep", queue, "") in series.sums("tasks_sent", 600, clock.now()), what="a task-sent"
        )

        # Succeeding, failing and retrying tasks: counts per task name, runtimes and queue waits.
        for i in range(3):
            app.send_task("t.add", (i, i), queue=queue)
        for _ in range(2):
            app.send_task("t.fail", ("nope",), queue=queue)
        app.send_task("t.retry_once", queue=queue)

        def per_task(metric: str) -> dict[tuple[str, ...], float]:
            sums = series.sums(metric, 600, clock.now())
            return {k[:1] + k[3:]: v for k, v in sums.items() if k[1] == queue and k[0] != "t.sleep"}

        await wait_for(
            lambda: (
                per_task("tasks_succeeded") == {("t.add",): 3, ("t.retry_once",): 1}
                and per_task("tasks_failed") == {("t.fail", "ValueError"): 2}
            ),
            what="the first mix to finish",
        )
        assert per_task("tasks_sent") == {("t.add",): 3, ("t.fail",): 2, ("t.retry_once",): 2}
        assert per_task("tasks_retried") == {("t.retry_once", "ConnectionError"): 1}
        assert per_task("tasks_started") == {("t.add",): 3, ("t.fail",): 2, ("t.retry_once",): 2}
        runtimes = series.distributions("task_runtime_seconds", 600, clock.now())
        assert runtimes[("t.add", queue, host)].count == 3 and 0 < runtimes[("t.add", queue, host)].max < 0.5
        assert runtimes[("t.fail", queue, host)].count == 2
        waits = series.distributions("task_queue_wait_seconds", 600, clock.now())
        assert waits[("t.add", queue, host)].count == 3 and waits[("t.add", queue, host)].max < 2.0
        assert waits[("t.retry_once", queue, host)].count == 2
        assert observer.stats()["tasks_tracked"] == 0
        series = SeriesStore(bucket_seconds=1, retention_seconds=600)  # a clean slate for what follows
        observer.series = series

        # A running task: it ages on the stuck-task gauge, the snapshot and the heartbeat show it.
        running = app.send_task("t.sleep", (4.0,), queue=queue)
        await wait_for(lambda: gauge("task_oldest_started_seconds").get(("t.sleep", queue), 0) >= 1.0, what="aging")
        (snap,) = [t for t in observer.tasks_snapshot() if t["uuid"] == running.id]
        assert snap["state"] == "started" and snap["worker"] == host and snap["queue"] == queue
        await wait_for(lambda: gauge("worker_active_tasks").get((host,)) == 1.0, timeout=5, what="active in heartbeat")

        # A countdown task: reserved while it waits for its ETA, but not "stuck", and its queue wait
        # counts from the ETA, not from when it was sent 2 s earlier.
        sent_at = time.time()
        delayed = app.send_task("t.add", (1, 2), queue=queue, countdown=2)
        await wait_for(
            lambda: any(t["uuid"] == delayed.id and t["state"] == "received" for t in observer.tasks_snapshot()),
            what="the countdown task to be received",
        )
        assert ("t.add", queue) not in gauge("task_oldest_reserved_seconds")
        await wait_for(
            lambda: ("t.add", queue, host) in series.sums("tasks_succeeded", 600, clock.now()),
            what="the countdown task to run",
        )
        assert time.time() - sent_at >= 2.0
        wait = series.distributions("task_queue_wait_seconds", 600, clock.now())[("t.add", queue, host)]
        assert wait.count == 1 and wait.max < 1.0, wait.max

        # A hard time limit: event rules get it once, by its real class, with the traceback's end.
        app.send_task("t.timeout", (5.0,), queue=queue)
        await wait_for(lambda: failures, timeout=10, what="the time-limited task to fail")
        await wait_for(lambda: observer.stats()["duplicates"] >= 1, timeout=3, what="the second report of the kill")
        (failed,) = [f for f in failures if f["task"] == "t.timeout"]
        assert failed["task"] == "t.timeout" and failed["queue"] == queue and failed["worker"] == host
        assert failed["exception"] == "TimeLimitExceeded"
        assert failed["exception_repr"] == "ExceptionWithTraceback()"
        assert failed["traceback"].splitlines()[-1].endswith("TimeLimitExceeded(1,)")
        assert series.sums("tasks_failed", 600, clock.now()) == {("t.timeout", queue, host, "TimeLimitExceeded"): 1}
        runtime = series.distributions("task_runtime_seconds", 600, clock.now())[("t.timeout", queue, host)]
        assert 0.9 <= runtime.max < 3.0

        # A revoked running task is counted and leaves the table.
        victim = app.send_task("t.sleep", (30.0,), queue=queue)
        await wait_for(
            lambda: any(t["uuid"] == victim.id and t["state"] == "started" for t in observer.tasks_snapshot()),
            what="the victim to start",
        )
        app.control.revoke(victim.id, terminate=True)
        await wait_for(lambda: series.sums("tasks_revoked", 600, clock.now()), timeout=10, what="task-revoked")
        assert series.sums("tasks_revoked", 600, clock.now()) == {("t.sleep", queue, host): 1}
        assert victim.id not in {t["uuid"] for t in observer.tasks_snapshot()}

        # SIGKILL: no worker-offline; lost once max(3 s, 2 s x 1.5) passes after the last heartbeat.
        await wait_for(lambda: running.id not in {t["uuid"] for t in observer.tasks_snapshot()}, what="sleep done")
        worker.kill()
        killed_at = time.monotonic()
        await wait_for(lambda: gauge("worker_lost").get((host,)) == 1.0, timeout=10, what="the worker to be lost")
        took = time.monotonic() - killed_at
        assert took <= 3.0 + 2.0 + 0.5, took  # the window, plus at most one heartbeat interval before the kill
        g = observer.gauges(clock.now())
        assert g["worker_up"][(host,)] == 0.0 and g["worker_offline"][(host,)] == 0.0
        assert observer.stats()["malformed"] == 0
    finally:
        await source.stop()
