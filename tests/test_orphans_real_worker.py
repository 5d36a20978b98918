"""Tasks of a SIGKILLed worker, against real prefork workers on Redis (acks_late, prefetch 4).

The most common Celery incident: a worker is killed (SIGKILL, the OOM killer) while it runs one
task and holds prefetched ones. Its tasks must leave "in flight" at the loss, as orphaned, so no
stuck-task alert ever fires for them; the worker-lost page names them; a redelivery (acks_late,
Redis visibility timeout) brings them back, tracked on the worker that got them. Both ways a
loss is seen: missing heartbeats, and the worker coming back under its hostname as a new process.

A private redis-server: the unacked messages Redis redelivers must not be flushed meanwhile by
another test sharing db 13.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from alertd.alert import Alert, AlertState
from alertd.clock import WallClock
from alertd.observe.observer import Observer
from alertd.observe.series import SeriesStore
from alertd.rules.engine import Engine
from alertd.rules.loader import load_rules
from alertd.sources import open_event_source
from alertd.sources.health import StreamHealth
from tests.conftest import ROOT, CeleryWorker, RedisServer, wait_until
from tests.observe_fixtures import producer_fixture, wait_for  # noqa: F401 (registers the fixture)

pytestmark = [pytest.mark.broker, pytest.mark.worker]

# Stuck-task rules with thresholds a test can reach: the pack's (1 h, 10 min) would pass anyway.
STUCK_RULES = """
groups:
  - name: stuck-fast
    interval: 1s
    rules:
      - alert: StuckStartedFast
        metric: task_oldest_started_seconds
        by: [task, queue]
        above: 8
      - alert: StuckReservedFast
        metric: task_oldest_reserved_seconds
        by: [task, queue]
        above: 8
"""
# acks_late: a killed worker's running task is redelivered too; prefetch 4 at concurrency 1: it
# holds one running and three reserved. Redis redelivers unacked messages 4 s after delivery.
ACKS_LATE = {"ALERTD_TEST_ACKS_LATE": "1", "ALERTD_TEST_PREFETCH": "4", "ALERTD_TEST_VISIBILITY": "4"}


class Watch:
    """Observer, pack rules (evaluated every second) and the alert transitions seen so far."""

    def __init__(self, tmp_path: Path, worker_lost_after: float) -> None:
        self.clock = WallClock()
        self.series = SeriesStore(bucket_seconds=1, retention_seconds=600)
        self.health = StreamHealth()
        self.observer = Observer(
            self.series, self.clock, worker_lost_after=worker_lost_after, heartbeat_misses=1.5, health=self.health
        )
        stuck = tmp_path / "stuck.yaml"
        stuck.write_text(STUCK_RULES)
        rules = load_rules([ROOT / "rules" / "celery.yaml", stuck])
        for group in rules.groups:
            group.interval = 1.0  # the pack's own rules, evaluated as often as a test can wait
        self.engine = Engine(
            rules,
            self.series,
            self.clock,
            gauges=self.observer.gauges,
            watch=self.observer.watch,
            details=self.observer.details,
        )
        self.transitions: list[Alert] = []

    def tick(self) -> bool:
        self.transitions.extend(self.engine.tick(self.clock.now()))
        return True

    def firing(self, name: str) -> list[Alert]:
        return [a for a in self.engine.alerts() if a.labels["alertname"] == name and a.state is AlertState.FIRING]

    def gauge(self, name: str) -> dict[tuple[str, ...], float]:
        return self.observer.gauges(self.clock.now())[name]

    def task(self, uuid: str) -> dict[str, Any] | None:
        return next((t for t in self.observer.tasks_snapshot(1000) if t["uuid"] == uuid), None)


def start_workers(factory: Callable[..., CeleryWorker], *specs: dict[str, Any]) -> list[CeleryWorker]:
    """Start several workers at once (each takes seconds to boot) and wait until all are ready."""
    workers = [factory(**spec, wait=False) for spec in specs]
    for w in workers:

        def ready(w: CeleryWorker = w) -> bool:
            if w.proc.poll() is not None:
                raise AssertionError(f"celery worker exited early:\n{w.output()[-3000:]}")
            return "ready." in w.output()

        wait_until(ready, timeout=40, interval=0.1, what=f"celery worker {w.hostname} ready")
    return workers


async def hold_tasks(watch: Watch, app: Celery, queue: str, host: str) -> str:
    """One task running on `host` and three reserved behind it; the running one's uuid."""
    running = app.send_task("t.sleep", (2.0,), queue=queue).id
    await wait_for(lambda: (watch.task(running) or {}).get("state") == "started", what="t.sleep to start")
    reserved = [app.send_task("t.add", (i, i), queue=queue).id for i in range(3)]

    def held(u: str) -> bool:
        t = watch.task(u)
        return t is not None and t["state"] == "received" and t["worker"] == host

    await wait_for(lambda: all(held(u) for u in reserved), what="three t.add prefetched behind it")
    return running


async def test_sigkilled_worker_orphans_its_tasks_and_a_redelivery_rejoins(
    redis_server: RedisServer,
    unique: str,
    tmp_path: Path,
    celery_worker_factory: Callable[..., CeleryWorker],
    producer: Callable[..., Celery],
) -> None:
    watch = Watch(tmp_path, worker_lost_after=3.0)
    redis_url = redis_server.url
    prefix = f"orph-{unique}:"
    source = open_event_source(
        redis_url, watch.observer.on_events, watch.clock, watch.health, transport_options={"global_keyprefix": prefix}
    )
    await source.start()
    try:
        await source.wait_connected()
        queue = f"q-{unique}"
        env = {"ALERTD_TEST_KEYPREFIX": prefix, **ACKS_LATE}
        spec = {"broker": redis_url, "concurrency": 1, "extra_env": env}
        victim, survivor = start_workers(
            celery_worker_factory,
            {**spec, "queues": [queue], "name": f"victim{unique}"},
            {**spec, "queues": [f"other-{unique}"], "name": f"surv{unique}"},
        )
        app = producer(redis_url, prefix)
        await wait_for(
            lambda: watch.gauge("worker_up") == {(victim.hostname,): 1.0, (survivor.hostname,): 1.0},
            what="both workers' heartbeats",
        )
        running = await hold_tasks(watch, app, queue, victim.hostname)

        victim.kill()
        await wait_for(lambda: watch.tick() and watch.firing("CeleryWorkerLost"), timeout=10, what="the loss page")
        # At the loss: the tasks left "in flight", counted as orphaned under their labels.
        g = watch.observer.gauges(watch.clock.now())
        assert ("t.sleep", queue) not in g["task_oldest_started_seconds"]
        assert ("t.add", queue) not in g["task_oldest_reserved_seconds"]
        orphaned = watch.series.sums("tasks_orphaned", 600, watch.clock.now())
        assert orphaned == {("t.sleep", queue, victim.hostname): 1, ("t.add", queue, victim.hostname): 3}
        (page,) = watch.firing("CeleryWorkerLost")
        assert page.labels["worker"] == victim.hostname
        assert "4 task(s) with it: 3 t.add (reserved), 1 t.sleep (running)" in page.annotations["description"]
        (view,) = [w for w in watch.observer.workers_snapshot() if w["hostname"] == victim.hostname]
        assert view["state"] == "lost"
        assert view["last_loss"]["orphaned"] == 4 and view["last_loss"]["cause"] == "heartbeats"

        # acks_late: Redis hands the unacked messages back; the survivor takes the queue over.
        app.control.add_consumer(queue, destination=[survivor.hostname], reply=True, timeout=5)
        await wait_for(
            lambda: watch.observer.stats()["tasks_redelivered"] == 4, timeout=10, what="the four tasks redelivered"
        )
        # Back in the table, under the survivor: the running one is tracked until it ends there.
        assert (watch.task(running) or {}).get("worker") == survivor.hostname
        received = watch.series.sums("tasks_received", 600, watch.clock.now())
        assert received[("t.sleep", queue, survivor.hostname)] == 1
        assert received[("t.add", queue, survivor.hostname)] == 3
        (view,) = [w for w in watch.observer.workers_snapshot() if w["hostname"] == victim.hostname]
        assert view["last_loss"]["redelivered"] == 4
        await wait_for(
            lambda: (
                watch.tick()
                and watch.series.sums("tasks_succeeded", 600, watch.clock.now()).get(
                    ("t.sleep", queue, survivor.hostname)
                )
            ),
            timeout=10,
            what="the redelivered t.sleep to succeed on the survivor",
        )
        stuck = [a for a in watch.transitions if a.labels["alertname"].startswith("Stuck")]
        assert stuck == [], [a.labels for a in stuck]
        assert watch.observer.stats()["malformed"] == 0
    finally:
        await source.stop()


async def test_worker_restarted_under_its_hostname_orphans_what_the_old_process_held(
    redis_server: RedisServer,
    unique: str,
    tmp_path: Path,
    celery_worker_factory: Callable[..., CeleryWorker],
    producer: Callable[..., Celery],
) -> None:
    # A long heartbeat window: the supervisor's restart (a new pid, no goodbye) comes first.
    watch = Watch(tmp_path, worker_lost_after=20.0)
    redis_url = redis_server.url
    prefix = f"orph-{unique}:"
    source = open_event_source(
        redis_url, watch.observer.on_events, watch.clock, watch.health, transport_options={"global_keyprefix": prefix}
    )
    await source.start()
    try:
        await source.wait_connected()
        queue = f"q-{unique}"
        spec = {
            "broker": redis_url,
            "queues": [queue],
            "concurrency": 1,
            "name": f"crashy{unique}",
            "extra_env": {"ALERTD_TEST_KEYPREFIX": prefix, **ACKS_LATE},
        }
        (first,) = start_workers(celery_worker_factory, spec)
        app = producer(redis_url, prefix)
        await wait_for(lambda: watch.gauge("worker_up") == {(first.hostname,): 1.0}, what="the first heartbeat")
        old_pid = next(w["pid"] for w in watch.observer.workers_snapshot())
        await hold_tasks(watch, app, queue, first.hostname)

        first.kill()
        killed = time.monotonic()
        (second,) = start_workers(celery_worker_factory, spec)
        assert second.hostname == first.hostname
        await wait_for(lambda: watch.tick() and watch.firing("CeleryWorkerLost"), timeout=10, what="the loss page")
        assert time.monotonic() - killed < 20.0  # seen at the restart, not after the heartbeat window
        (view,) = watch.observer.workers_snapshot()
        assert view["state"] == "online" and view["pid"] != old_pid
        assert view["last_loss"]["cause"] == "restart" and view["last_loss"]["pid"] == old_pid
        assert view["last_loss"]["orphaned"] == 4
        (page,) = watch.firing("CeleryWorkerLost")
        assert "4 task(s) with it: 3 t.add (reserved), 1 t.sleep (running)" in page.annotations["description"]
        assert watch.series.sums("tasks_orphaned", 600, watch.clock.now()) == {
            ("t.sleep", queue, first.hostname): 1,
            ("t.add", queue, first.hostname): 3,
        }

        # The new process restores the unacked messages of the old one and runs them again.
        await wait_for(
            lambda: (
                watch.tick()
                and watch.series.sums("tasks_succeeded", 600, watch.clock.now()).get(("t.sleep", queue, first.hostname))
            ),
            timeout=12,
            what="the redelivered t.sleep to succeed on the new process",
        )
        assert watch.observer.stats()["tasks_redelivered"] == 4
        stuck = [a for a in watch.transitions if a.labels["alertname"].startswith("Stuck")]
        assert stuck == [], [a.labels for a in stuck]
    finally:
        await source.stop()
