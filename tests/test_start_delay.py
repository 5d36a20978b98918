"""dispatch_start_delay (Alertmanager 0.30's --dispatch.start-delay): no group flushes sooner than
the delay after start, so an inhibition source that appears after its target, within the delay,
still mutes it. Real notifier on a virtual clock, real delivery to an HTTP sink."""

from __future__ import annotations

from alertd.clock import VirtualClock
from alertd.config import load_config
from alertd.notify.service import Notifier
from alertd.store.sqlite import SqliteStore
from tests.notify_fixtures import T0, Sink, Stepper, make_alert, one_receiver, sink_posts

INHIBIT = """
inhibit_rules:
  - source_matchers: ['alertname="CeleryBrokerUnreachable"']
    target_matchers: ['alertname="CeleryQueueNoConsumers"']
"""


def notifier(sink: Sink, store: SqliteStore, clock: VirtualClock, delay: str) -> Notifier:
    text = one_receiver(sink, extra=f"{INHIBIT}\ndispatch_start_delay: {delay}\n", group_wait="1s")
    return Notifier(load_config(text=text), store, clock)


async def test_a_source_known_within_the_start_delay_mutes_its_target(sink: Sink, store: SqliteStore) -> None:
    clock = VirtualClock(start=T0)
    n = notifier(sink, store, clock, "20s")
    step = Stepper(n, clock)
    target = make_alert("CeleryQueueNoConsumers", queue="reports")
    await step.until(T0 + 10, [target])
    assert sink.requests == []  # held: the start delay has not passed
    await step.until(T0 + 40, [target, make_alert("CeleryBrokerUnreachable")])
    titles = [p["title"] for p in sink_posts(sink, "/team")]
    assert len(titles) == 1 and "CeleryBrokerUnreachable" in titles[0], titles


async def test_without_the_delay_the_target_pages_before_its_source_is_known(sink: Sink, store: SqliteStore) -> None:
    clock = VirtualClock(start=T0)
    n = notifier(sink, store, clock, "0s")
    step = Stepper(n, clock)
    target = make_alert("CeleryQueueNoConsumers", queue="reports")
    await step.until(T0 + 10, [target])
    await step.until(T0 + 40, [target, make_alert("CeleryBrokerUnreachable")])
    titles = [p["title"] for p in sink_posts(sink, "/team")]
    assert any("CeleryQueueNoConsumers" in t for t in titles), titles


async def test_the_delay_holds_only_the_first_flushes_after_start(sink: Sink, store: SqliteStore) -> None:
    clock = VirtualClock(start=T0)
    n = notifier(sink, store, clock, "20s")
    step = Stepper(n, clock)
    await step.until(T0 + 30, [make_alert("A", queue="a")])
    assert len(sink_posts(sink, "/team")) == 1  # at T0 + 20, not T0 + 1
    await step.until(T0 + 40, [make_alert("A", queue="a"), make_alert("B", queue="b")])
    assert len(sink_posts(sink, "/team")) == 2  # B after its group_wait alone
