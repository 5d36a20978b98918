"""Inhibition as Alertmanager defines it: firing sources only, `equal` labels, no self- or
mutual inhibition for alerts matching both sides; and through the notifier, a target that is
let through once its source resolves."""

from __future__ import annotations

from alertd.alert import Alert, AlertState
from alertd.clock import VirtualClock
from alertd.config import InhibitRuleConfig, load_config
from alertd.inhibit import Inhibitor
from alertd.matchers import matches_all
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


# -- the built-in rules: one page per cause for the default pack ------------------------------


def pack_alertnames() -> list[str]:
    import yaml

    from tests.conftest import ROOT

    names = []
    for path in sorted((ROOT / "rules").glob("*.yaml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names += [r["alert"] for r in group["rules"]]
    return names


def test_builtin_rules_name_real_alerts_and_form_a_strict_order() -> None:
    """Every pattern names alerts of the pack (no typo that silently mutes nothing), and no alert
    can mute, directly or through others, the alert that mutes it: the cause always pages."""
    from alertd.inhibit import BUILTIN_INHIBIT_RULES, InhibitRule

    names = pack_alertnames()
    rules = [InhibitRule.from_config(r) for r in BUILTIN_INHIBIT_RULES]
    mutes: dict[str, set[str]] = {n: set() for n in names}
    for r in rules:
        sources = [n for n in names if matches_all(r.source, {"alertname": n})]
        targets = [n for n in names if matches_all(r.target, {"alertname": n})]
        assert sources and targets, r
        for s in sources:
            mutes[s] |= {t for t in targets if t != s}

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for t in mutes[todo.pop()]:
                if t not in seen:
                    seen.add(t)
                    todo.append(t)
        return seen

    for n in names:
        assert n not in reach(n), f"{n} can end up muting itself through {sorted(reach(n))}"
    # the causes the issue names are never muted by their consequences
    assert "CeleryBrokerUnreachable" not in set().union(*mutes.values())
    assert reach("CeleryBrokerUnreachable") >= {"CeleryQueueNoConsumers", "CeleryWorkerLost", "CeleryEventStreamSilent"}
    assert "CeleryNoWorkersOnline" not in reach("CeleryEventStreamSilent")
    assert "AlertdStoreDown" not in set().union(*mutes.values())  # alertd's own trouble always pages


def critical(name: str, **labels: str) -> Alert:
    return make_alert(name, severity="critical", **labels)


def pager(sink: Sink, extra: str = "") -> str:
    return f"""
receivers: [{{name: pager, apprise: ["{sink.url(path="/pager")}"], retries: 0}}]
route: {{receiver: pager, group_by: [alertname], group_wait: 5s, group_interval: 1m, repeat_interval: 4h}}
{extra}
"""


async def test_a_dead_broker_pages_once_not_once_per_consequence(sink: Sink, store: SqliteStore) -> None:
    clock = VirtualClock(start=T0)
    n = Notifier(load_config(text=pager(sink)), store, clock)
    run = Stepper(n, clock)
    incident = [
        critical("CeleryBrokerUnreachable"),
        critical("CeleryWorkerLost", worker="celery@w1"),
        critical("CeleryQueueNoConsumers", queue="default"),
        critical("CeleryEventStreamSilent"),
        critical("CeleryNoWorkersOnline"),
    ]
    await run.until(T0 + 120, incident)
    assert [p["title"] for p in sink_posts(sink, "/pager")] == ["[FIRING:1] CeleryBrokerUnreachable"]
    # the broker is back, and so is everything else: the one page is resolved, nothing else was said
    over = [
        make_alert(a.name, AlertState.RESOLVED, **{k: v for k, v in a.labels.items() if k != "alertname"})
        for a in incident
    ]
    await run.until(T0 + 240, over)
    assert [p["type"] for p in sink_posts(sink, "/pager")] == ["failure", "success"]


async def test_no_workers_mutes_its_consequences_but_a_worker_lost_alone_still_pages(
    sink: Sink, store: SqliteStore
) -> None:
    clock = VirtualClock(start=T0)
    n = Notifier(load_config(text=pager(sink)), store, clock)
    run = Stepper(n, clock)
    await run.until(
        T0 + 60,
        [
            critical("CeleryNoWorkersOnline"),
            critical("CeleryEventStreamSilent"),
            critical("CeleryWorkerLost", worker="w1"),
        ],
    )
    assert [p["title"] for p in sink_posts(sink, "/pager")] == ["[FIRING:1] CeleryNoWorkersOnline"]
    await run.until(T0 + 200, [critical("CeleryWorkerLost", worker="w2")])
    assert sink_posts(sink, "/pager")[-1]["title"] == "[FIRING:1] CeleryWorkerLost"


async def test_builtin_rules_can_be_turned_off(sink: Sink, store: SqliteStore) -> None:
    clock = VirtualClock(start=T0)
    n = Notifier(load_config(text=pager(sink, "builtin_inhibit_rules: false")), store, clock)
    await Stepper(n, clock).until(
        T0 + 60, [critical("CeleryBrokerUnreachable"), critical("CeleryQueueNoConsumers", queue="q")]
    )
    assert len(sink_posts(sink, "/pager")) == 2
