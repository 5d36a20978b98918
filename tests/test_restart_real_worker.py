"""Graceful restarts against real workers: a warm shutdown (SIGTERM: worker-offline) followed by
the same hostname coming back within observe.restart_grace pages nothing; a worker that stays
away pages CeleryWorkerShutDown once. Neither is a loss. The grace is 8 s here (2 min by default)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from alertd.alert import Alert
from alertd.clock import WallClock
from alertd.observe.observer import Observer
from alertd.observe.series import SeriesStore
from alertd.rules.engine import Engine
from alertd.rules.loader import load_rules
from alertd.sources import open_event_source
from alertd.sources.health import StreamHealth
from tests.conftest import ROOT, CeleryWorker, RedisServer
from tests.observe_fixtures import wait_for
from tests.test_orphans_real_worker import start_workers

pytestmark = [pytest.mark.broker, pytest.mark.worker]

GRACE = 8.0


async def test_a_restart_within_the_grace_pages_nothing_and_a_worker_that_stays_away_pages_once(
    redis_server: RedisServer, unique: str, tmp_path: Path, celery_worker_factory: Callable[..., CeleryWorker]
) -> None:
    clock = WallClock()
    series = SeriesStore(bucket_seconds=1, retention_seconds=600)
    health = StreamHealth()
    observer = Observer(series, clock, worker_lost_after=3.0, heartbeat_misses=1.5, restart_grace=GRACE, health=health)
    rules = load_rules([ROOT / "rules" / "celery.yaml"])
    for group in rules.groups:
        group.interval = 1.0  # the pack's own rules, evaluated every second
    engine = Engine(rules, series, clock, gauges=observer.gauges, watch=observer.watch, details=observer.details)
    transitions: list[Alert] = []

    async def evaluate() -> None:
        while True:
            transitions.extend(engine.tick(clock.now()))
            await asyncio.sleep(0.25)

    def states() -> dict[str, tuple[str, int]]:
        return {w["hostname"]: (w["state"], w["pid"]) for w in observer.workers_snapshot()}

    source = open_event_source(redis_server.url, observer.on_events, clock, health)
    await source.start()
    evaluating = asyncio.create_task(evaluate())
    try:
        await source.wait_connected()
        spec = {"broker": redis_server.url, "concurrency": 1}
        deployed, retired = start_workers(
            celery_worker_factory, {**spec, "name": f"deploy{unique}"}, {**spec, "name": f"retire{unique}"}
        )
        await wait_for(
            lambda: {s for s, _ in states().values()} == {"online"} and len(states()) == 2, what="both online"
        )
        old_pid = states()[deployed.hostname][1]

        # In threads: rules keep being evaluated while the workers stop and boot, as in a deploy.
        await asyncio.gather(asyncio.to_thread(deployed.stop), asyncio.to_thread(retired.stop))
        await wait_for(lambda: states()[retired.hostname][0] == "offline", what="the goodbyes")
        (back,) = await asyncio.to_thread(start_workers, celery_worker_factory, {**spec, "name": f"deploy{unique}"})
        await wait_for(
            lambda: states()[back.hostname][0] == "online" and states()[back.hostname][1] != old_pid,
            what="the deployed worker back as a new process",
        )

        await wait_for(
            lambda: any(a.labels["alertname"] == "CeleryWorkerShutDown" for a in transitions),
            timeout=GRACE + 5,
            what="the page for the worker that stayed away",
        )
        await asyncio.sleep(1.5)
        pages = [(a.labels["alertname"], a.labels.get("worker"), a.state.value) for a in transitions]
        assert pages == [("CeleryWorkerShutDown", retired.hostname, "firing")], pages
        assert observer.stats()["workers_lost"] == 0
    finally:
        evaluating.cancel()
        await source.stop()
