"""A restart during an incident (issue 11): the firing alert carries on, and nothing is re-paged.

After a restart the series store is empty and gauges come back with the first samples; before
this, every firing alert resolved at the first tick (no data yet), the receiver got a wrong
resolved notice and then a second page once `for` was met again. Real engine, observer and
notifier on a virtual clock, the shipped rule pack, real delivery to an HTTP sink, one SQLite
store across the restart (as the daemon keeps rule state and the notification log).
"""

from __future__ import annotations

from pathlib import Path

from alertd.alert import AlertState
from alertd.clock import VirtualClock
from alertd.config import load_config
from alertd.notify.service import Notifier
from alertd.observe.observer import Observer
from alertd.observe.series import SeriesStore
from alertd.rules.engine import Engine
from alertd.rules.loader import load_rules
from alertd.samples import QueueSample
from alertd.store.sqlite import SqliteStore
from tests.notify_fixtures import T0, Sink, one_receiver, sink_posts

PACK = Path(__file__).resolve().parent.parent / "rules" / "celery.yaml"


class Alertd:
    """One run of the evaluation and notification path; `restart()` is a new process on the same store."""

    def __init__(self, sink: Sink, store: SqliteStore, clock: VirtualClock) -> None:
        self.clock = clock
        self.series = SeriesStore(bucket_seconds=5)
        self.observer = Observer(self.series, clock)
        self.engine = Engine(load_rules([PACK]), self.series, clock, gauges=self.observer.gauges)
        self.notifier = Notifier(load_config(text=one_receiver(sink)), store, clock)
        self.sink, self.store = sink, store

    def restart(self) -> Alertd:
        saved = self.engine.export_state()
        again = Alertd(self.sink, self.store, self.clock)
        again.engine.import_state(saved)
        return again

    async def run(self, seconds: int, messages: int | None, *, first_sample_after: int = 0) -> None:
        """Tick every second; the sampler reports the queue every 5 s (None: it reports nothing)."""
        for i in range(seconds):
            self.clock.advance(1)
            now = self.clock.now()
            if messages is not None and i >= first_sample_after and round(now - T0) % 5 == 0:
                self.observer.on_queue_sample(QueueSample("reports", messages, 1, now))
            self.engine.tick(now)
            self.notifier.put(self.engine.alerts())
            await self.notifier.flush_due()

    def queue_long(self) -> list[AlertState]:
        return [a.state for a in self.engine.alerts() if a.labels["alertname"] == "CeleryQueueLong"]


def pages(sink: Sink) -> list[str]:
    return [p["type"] for p in sink_posts(sink, "/team") if "CeleryQueueLong" in p["title"]]


async def test_a_restart_while_a_queue_is_long_sends_no_resolved_notice_and_no_second_page(
    sink: Sink, store: SqliteStore
) -> None:
    a = Alertd(sink, store, VirtualClock(start=T0))
    await a.run(7 * 60, 500)
    assert pages(sink) == ["failure"]
    b = a.restart()
    # the first tick of the new process comes before its first sample, as in `alertd run`
    await b.run(15 * 60, 500, first_sample_after=3)
    assert b.queue_long() == [AlertState.FIRING]
    assert pages(sink) == ["failure"], sink_posts(sink, "/team")
    await b.run(3 * 60, 10)  # drained: resolved once, as without the restart
    assert pages(sink) == ["failure", "success"]


async def test_a_queue_that_drained_while_alertd_was_down_resolves_at_its_first_sample(
    sink: Sink, store: SqliteStore
) -> None:
    a = Alertd(sink, store, VirtualClock(start=T0))
    await a.run(7 * 60, 500)
    b = a.restart()
    await b.run(20, 10, first_sample_after=3)  # data is back (evaluated at 16 s): the queue is short
    assert b.queue_long() == [AlertState.RESOLVED]
    await b.run(2 * 60, 10)
    assert pages(sink) == ["failure", "success"]


async def test_an_alert_whose_data_never_comes_back_resolves_after_the_grace(sink: Sink, store: SqliteStore) -> None:
    a = Alertd(sink, store, VirtualClock(start=T0))
    await a.run(7 * 60, 500)
    b = a.restart()
    await b.run(50, None)  # the queue is gone: no sample at all
    assert b.queue_long() == [AlertState.FIRING]
    await b.run(15, None)  # past the 60 s grace
    assert b.queue_long() == [AlertState.RESOLVED]
