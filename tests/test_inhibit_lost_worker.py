"""A lost worker mutes the no-consumer alerts of the queues it served, and only those (issue 11).

The shipped rule pack and built-in inhibit rules; the real observer, engine and notifier on a
virtual clock; delivery to an HTTP sink. Two workers: w1 serves reports and emails, w2 serves
billing; `legacy` has messages and was never served by anyone. w1 is SIGKILLed (its heartbeats
stop): its loss pages once, and the queues it left without a consumer are explained by that
page; `legacy`, which no lost worker explains, still pages.
"""

from __future__ import annotations

from pathlib import Path

from alertd.clock import VirtualClock
from alertd.config import load_config
from alertd.notify.service import Notifier
from alertd.observe.observer import Observer
from alertd.observe.series import SeriesStore
from alertd.rules.engine import Engine
from alertd.rules.loader import load_rules
from alertd.samples import QueueSample, WorkerSample
from alertd.sources.health import StreamHealth
from alertd.store.sqlite import SqliteStore
from tests.notify_fixtures import T0, Sink, one_receiver, sink_posts
from tests.observe_fixtures import Events

PACK = Path(__file__).resolve().parent.parent / "rules" / "celery.yaml"
SERVES = {"celery@w1": ("reports", "emails"), "celery@w2": ("billing",)}
PIDS = {"celery@w1": 101, "celery@w2": 102}


async def test_a_lost_worker_mutes_the_no_consumer_alerts_of_its_queues_only(sink: Sink, store: SqliteStore) -> None:
    clock = VirtualClock(start=T0)
    health = StreamHealth()
    health.mark_connected(clock.now())
    series = SeriesStore(bucket_seconds=5)
    observer = Observer(series, clock, health=health)
    engine = Engine(load_rules([PACK]), series, clock, gauges=observer.gauges, details=observer.details)
    text = one_receiver(sink, route_extra="  group_by: [alertname, queue, worker]").replace(
        "  group_by: [alertname]\n", ""
    )
    notifier = Notifier(load_config(text=text), store, clock)
    events = Events(clock)
    alive = dict(SERVES)

    for second in range(1, 8 * 60):
        clock.advance(1)
        now = clock.now()
        if second == 60:
            del alive["celery@w1"]  # kill -9: no goodbye, no more heartbeats
        if second % 2 == 0:
            batch = [{**events.worker("worker-heartbeat", w), "pid": PIDS[w]} for w in alive]
            health.received(batch, now)
            observer.on_events(batch)
        if second % 5 == 0:
            for w, queues in alive.items():
                observer.on_worker_sample(WorkerSample(w, now, pool_size=4, queues=queues))
            for q in ("reports", "emails", "billing", "legacy"):
                consumers = sum(q in queues for queues in alive.values())
                observer.on_queue_sample(QueueSample(q, 5, consumers, now))
        engine.tick(now)
        notifier.put(engine.alerts())
        await notifier.flush_due()

    titles = sorted(p["title"] for p in sink_posts(sink, "/team") if p["type"] == "failure")
    assert len(titles) == 2, titles
    assert any("CeleryWorkerLost" in t and "celery@w1" in t for t in titles), titles
    assert any("CeleryQueueNoConsumers" in t and "legacy" in t for t in titles), titles
    muted = {a.labels["queue"]: a.labels.get("worker") for a in engine.alerts() if a.name == "CeleryQueueNoConsumers"}
    assert muted == {"reports": "celery@w1", "emails": "celery@w1", "legacy": None}, muted
    status = {
        a.labels["queue"]: notifier.alert_status(a, clock.now())
        for a in engine.alerts()
        if a.name == "CeleryQueueNoConsumers"
    }
    assert status["reports"].inhibited_by and status["emails"].inhibited_by and not status["legacy"].inhibited_by
