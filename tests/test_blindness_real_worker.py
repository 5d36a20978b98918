"""A broker outage with a healthy worker, for real: a private redis-server is the broker of a
Celery worker and of alertd, and is killed for 8 s, then for 60 s. Neither alertd nor the worker
hears anything meanwhile; that is alertd's blindness, not the worker's death: no worker-lost
alert. The stream gap itself pages, after its own `for` (3 s here; the pack's 30 s fires only in
the 60 s outage), once, and the alert resolves; alertd's stream is back within a probe interval
of the broker, not after its doubled backoff.
"""

from __future__ import annotations

import asyncio
import time
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

pytestmark = [pytest.mark.broker, pytest.mark.worker]

STREAM_FAST = """
groups:
  - name: stream-fast
    interval: 1s
    rules:
      - alert: StreamDownFast
        metric: event_stream_up
        below: 1
        for: 3s
"""


@pytest.mark.parametrize("outage", [8.0, 60.0], ids=["10s", "60s"])
async def test_a_broker_outage_is_not_a_worker_loss_and_pages_the_stream_once(
    redis_server: RedisServer, tmp_path: Path, celery_worker_factory: Callable[..., CeleryWorker], outage: float
) -> None:
    clock = WallClock()
    series = SeriesStore(bucket_seconds=1, retention_seconds=600)
    health = StreamHealth()
    # A 3 s heartbeat window: without the blindness rule the worker would be "lost" 3 s in.
    observer = Observer(series, clock, worker_lost_after=3.0, heartbeat_misses=1.5, health=health)
    fast = tmp_path / "stream.yaml"
    fast.write_text(STREAM_FAST)
    rules = load_rules([ROOT / "rules" / "celery.yaml", fast])
    for group in rules.groups:
        group.interval = 1.0  # the pack's own rules, evaluated every second
    engine = Engine(rules, series, clock, gauges=observer.gauges, watch=observer.watch, details=observer.details)
    transitions: list[Alert] = []

    async def evaluate() -> None:
        while True:
            transitions.extend(engine.tick(clock.now()))
            await asyncio.sleep(0.25)

    # The default reconnect_max (30 s): after 8 s down, the doubled backoff alone would wait ~8 s more.
    source = open_event_source(redis_server.url, observer.on_events, clock, health)
    await source.start()
    evaluating = asyncio.create_task(evaluate())
    try:
        await source.wait_connected()
        worker = celery_worker_factory(redis_server.url, concurrency=1)
        host = worker.hostname
        await wait_for(lambda: observer.gauges(clock.now())["worker_up"] == {(host,): 1.0}, what="heartbeats")
        await asyncio.sleep(2.0)

        redis_server.kill()
        killed = time.monotonic()
        await wait_for(lambda: not health.connected, timeout=10, what="alertd to see the stream drop")
        await asyncio.sleep(outage - (time.monotonic() - killed))
        redis_server.start()
        restarted = time.monotonic()
        await wait_for(lambda: health.connected, timeout=5, what="alertd's stream back")
        assert time.monotonic() - restarted < 1.5, "the reconnect waited out its backoff"
        beat = observer.workers_snapshot()[0]["last_heartbeat"]
        # the worker's own reconnect backs off longer after a minute down
        await wait_for(
            lambda: observer.workers_snapshot()[0]["last_heartbeat"] > beat, timeout=40, what="the worker back"
        )
        await asyncio.sleep(3.0 * 1.5)  # a whole heartbeat window with the worker beating again

        names = [(a.labels["alertname"], a.state.value) for a in transitions]
        assert ("CeleryWorkerLost", "firing") not in names, names
        assert [n for n in names if n[0] == "StreamDownFast"] == [
            ("StreamDownFast", "firing"),
            ("StreamDownFast", "resolved"),
        ]
        disconnected = [n for n in names if n[0] == "CeleryEventStreamDisconnected"]
        if outage < 30:
            assert disconnected == []  # the pack's `for` is 30 s
        else:
            # paged once, and resolved once the stream is back (evaluated every second here)
            await wait_for(
                lambda: (
                    ("CeleryEventStreamDisconnected", "resolved")
                    in [(a.labels["alertname"], a.state.value) for a in transitions]
                ),
                timeout=5,
                what="CeleryEventStreamDisconnected to resolve",
            )
            disconnected = [
                (a.labels["alertname"], a.state.value)
                for a in transitions
                if a.labels["alertname"] == "CeleryEventStreamDisconnected"
            ]
            assert disconnected == [
                ("CeleryEventStreamDisconnected", "firing"),
                ("CeleryEventStreamDisconnected", "resolved"),
            ]
            assert ("CeleryWorkerLost", "firing") not in [(a.labels["alertname"], a.state.value) for a in transitions]
        assert observer.stats()["workers_lost"] == 0 and observer.workers_snapshot()[0]["state"] == "online"
        assert health.reconnects == 1
    finally:
        evaluating.cancel()
        await source.stop()
