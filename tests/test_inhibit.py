"""Inhibition as Alertmanager defines it: firing sources only, `equal` labels, no self- or
mutual inhibition for alerts matching both sides; and through the notifier, a target that is
let through once its source resolves."""

from __future__ import annotations

from alertd.alert import Alert, AlertState
from alertd.clock import VirtualClock
from alertd.config import load_config
from alertd.inhibit import Inhibitor
from alertd.notify.config import InhibitRuleConfig
from alertd.notify.service import Notifier
from alertd.store.base import HistoryQuery
from alertd.store.sqlite import SqliteStore
from tests.notify_fixtures import T0, Sink, Stepper, make_alert, sink_posts


def rule(source: str, target: str, equal: list[str] | None = None) -> InhibitRuleConfig:
    return InhibitRuleConfig(source_matchers=[source], target_matchers=[target], equal=equal or [])


def inhibitor(rules: list[InhibitRuleConfig], alerts: list[Alert]) -> Inhibitor:
    i = Inhibitor(rules)
    i.update(alerts)
    return i


def test_only_a_firing_source_inhibits() -> None:
    r = rule('alertname="BrokerDown"', 'alertname=~"Queue.*"')
    target = make_alert("QueueLong", queue="a")
    source = make_alert("BrokerDown")
    assert inhibitor([r], [source, target]).inhibited_by(target) == [source.fingerprint]
    resolved_source = make_alert("BrokerDown", AlertState.RESOLVED)
    assert inhibitor([r], [resolved_source, target]).inhibited_by(target) == []


def test_equal_labels_must_match_and_a_missing_label_equals_an_empty_one() -> None:
    r = rule('alertname="WorkerLost"', 'alertname="QueueLong"', ["host"])
    lost = make_alert("WorkerLost", host="h1")
    same, other, no_host = (
        make_alert("QueueLong", host="h1", queue="q"),
        make_alert("QueueLong", host="h2", queue="q"),
        make_alert("QueueLong", queue="q"),
    )
    i = inhibitor([r], [lost, same, other, no_host])
    assert i.inhibited_by(same) == [lost.fingerprint]
    assert i.inhibited_by(other) == [] and i.inhibited_by(no_host) == []
    hostless_source = make_alert("WorkerLost")
    assert inhibitor([r], [hostless_source, no_host]).inhibited_by(no_host) == [hostless_source.fingerprint]


def test_alerts_matching_both_sides_never_inhibit_each_other() -> None:
    # "a critical alert mutes warnings of the same queue" written loosely: severity=~"critical|warning"
    # on the target side also matches critical alerts. Two criticals must not mute each other.
    r = rule('severity="critical"', 'severity=~"critical|warning"', ["queue"])
    c1 = make_alert("QueueLong", queue="q", severity="critical")
    c2 = make_alert("QueueStuck", queue="q", severity="critical")
    w = make_alert("QueueSlow", queue="q", severity="warning")
    i = inhibitor([r], [c1, c2, w])
    assert i.inhibited_by(c1) == [] and i.inhibited_by(c2) == []
    assert i.inhibited_by(w) == sorted([c1.fingerprint, c2.fingerprint])


def test_several_rules_each_name_their_sources() -> None:
    rules = [
        rule('alertname="BrokerDown"', 'alertname="QueueLong"'),
        rule('alertname="WorkerLost"', 'alertname="QueueLong"', ["queue"]),
    ]
    broker, lost = make_alert("BrokerDown"), make_alert("WorkerLost", queue="q")
    target = make_alert("QueueLong", queue="q")
    assert inhibitor(rules, [broker, lost, target]).inhibited_by(target) == sorted(
        [broker.fingerprint, lost.fingerprint]
    )


async def test_a_target_is_sent_once_its_source_resolves(sink: Sink, store: SqliteStore) -> None:
    clock = VirtualClock(start=T0)
    cfg = load_config(
        text=f"""
receivers: [{{name: team, apprise: ["{sink.url(path="/team")}"], retries: 0}}]
route: {{receiver: team, group_by: [alertname], group_wait: 30s, group_interval: 1m}}
inhibit_rules:
  - source_matchers: ['alertname="CeleryBrokerUnreachable"']
    target_matchers: ['alertname=~"CeleryQueue.*"']
"""
    )
    n = Notifier(cfg, store, clock)
    run = Stepper(n, clock, step=5)
    broker, queue = make_alert("CeleryBrokerUnreachable"), make_alert("CeleryQueueLong", queue="q")
    await run.until(T0 + 5 * 60, [broker, queue])
    assert [p["title"] for p in sink_posts(sink, "/team")] == ["[FIRING:1] CeleryBrokerUnreachable"]
    (entry,) = await store.history(HistoryQuery(kind="inhibited"))  # once, not on each flush
    assert entry.fingerprints == [queue.fingerprint] and entry.detail["inhibited_by"] == [broker.fingerprint]
    assert n.alert_status(queue, clock.now()).state == "suppressed"
    # the broker is back but the queue is still long: now the queue alert is news
    back = make_alert("CeleryBrokerUnreachable", AlertState.RESOLVED)
    await run.until(T0 + 7 * 60, [back, queue])
    titles = [p["title"] for p in sink_posts(sink, "/team")]
    assert "[FIRING:1] CeleryQueueLong" in titles and "[RESOLVED] CeleryBrokerUnreachable" in titles
    assert n.alert_status(queue, clock.now()).state == "active"
