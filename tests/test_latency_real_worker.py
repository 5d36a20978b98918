"""Latency during an outage, against a real Celery worker on Redis: tasks are sent to a queue no
worker consumes, the latency alert fires while nothing runs them, a worker comes and drains the
backlog, and the alert resolves once it has (the waits of tasks just started count for
`recent_starts`, 60 s in production, 3 s here)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from celery import Celery

from alertd.alert import AlertState
from alertd.clock import WallClock
from alertd.observe.observer import Observer
from alertd.observe.series import SeriesStore
from alertd.rules.engine import Engine
from alertd.rules.loader import load_rules
from alertd.sources import open_event_source
from alertd.sources.health import StreamHealth
from tests.conftest import CeleryWorker, RedisServer
from tests.observe_fixtures import producer_fixture, wait_for  # noqa: F401 (registers the fixture)

pytestmark = [pytest.mark.broker, pytest.mark.worker]

# The pack's latency rule on the pack's metric, with a threshold and `for` a test can wait out.
RULES = """
groups:
  - name: latency-fast
    interval: 1s
    rules:
      - alert: LatencyHigh
        metric: queue_latency_p95_seconds
        by: [queue]
        above: 2
        for: 2s
        recover_below: 1
"""


async def test_latency_pages_during_the_outage_and_resolves_once_the_backlog_drained(
    redis_server: RedisServer,
    unique: str,
    tmp_path: Path,
    celery_worker_factory: Callable[..., CeleryWorker],
    producer: Callable[..., Celery],
) -> None:
    clock = WallClock()
    series = SeriesStore(bucket_seconds=1, retention_seconds=600)
    health = StreamHealth()
    observer = Observer(series, clock, recent_starts=3.0, health=health)
    rules_file = tmp_path / "latency.yaml"
    rules_file.write_text(RULES)
    engine = Engine(load_rules([rules_file]), series, clock, gauges=observer.gauges)
    transitions: list[tuple[float, str]] = []

    def tick() -> list[str]:
        transitions.extend((clock.now(), a.state.value) for a in engine.tick(clock.now()))
        return [a.labels["queue"] for a in engine.alerts() if a.state is AlertState.FIRING]

    broker = redis_server.url
    source = open_event_source(broker, observer.on_events, clock, health)
    await source.start()
    try:
        await source.wait_connected()
        queue = f"q-{unique}"
        app = producer(broker)
        sent = [app.send_task("t.add", (i, i), queue=queue).id for i in range(5)]
        # No worker for the queue: nothing starts, and the wait of what was sent grows.
        await wait_for(lambda: tick() == [queue], timeout=10, what="the latency alert during the outage")
        g = observer.gauges(clock.now())
        assert g["queue_waiting_oldest_seconds"][(queue,)] > 2.0
        assert g["task_waiting_oldest_seconds"][("t.add", queue)] > 2.0
        assert series.sums("tasks_started", 600, clock.now()) == {}
        fired_at = clock.now()

        celery_worker_factory(broker, queues=[queue], concurrency=2)

        def succeeded() -> float:
            return sum(v for k, v in series.sums("tasks_succeeded", 600, clock.now()).items() if k[1] == queue)

        await wait_for(lambda: succeeded() == len(sent), timeout=20, what="the backlog to drain")
        drained_at = clock.now()
        assert observer.gauges(clock.now())["queue_waiting_oldest_seconds"] == {}
        await wait_for(lambda: tick() == [], timeout=10, what="the latency alert to resolve")
        assert [state for _, state in transitions] == ["firing", "resolved"]
        resolved_at = transitions[-1][0]
        assert fired_at < drained_at < resolved_at < drained_at + 3.0 + 3.0  # recent_starts, plus a tick
    finally:
        await source.stop()
