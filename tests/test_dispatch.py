"""Routing, grouping, timers, inhibition, silences and dedup on a virtual clock, delivered for real
(Apprise json:// to a local HTTP sink) and logged in a real SQLite store."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from alertd.alert import Alert, AlertState
from alertd.clock import VirtualClock
from alertd.config import load_config
from alertd.notify.service import Notifier
from alertd.store.base import HistoryQuery
from alertd.store.sqlite import SqliteStore
from alertd.yamlfile import FileError
from tests.notify_fixtures import Sink
from tests.waiting import T0


def alert(name: str, state: AlertState = AlertState.FIRING, **labels: str) -> Alert:
    return Alert(
        labels={"alertname": name, **labels},
        annotations={"summary": f"{name} {labels}"},
        state=state,
        starts_at=T0,
        ends_at=T0 + 1 if state is AlertState.RESOLVED else None,
    )


class Harness:
    def __init__(self, config_text: str, store: SqliteStore, clock: VirtualClock, silences: Any = None) -> None:
        self.config = load_config(text=config_text)
        self.store = store
        self.clock = clock
        self.notifier = Notifier(self.config, store, clock, silences=silences, replica="r1")

    async def at(self, seconds: float, alerts: list[Alert] | None = None) -> None:
        """Move to T0 + seconds (flushing each second on the way) with this set of current alerts."""
        while self.clock.now() < T0 + seconds:
            self.clock.advance(1)
            if alerts is not None:
                self.notifier.put(alerts)
            await self.notifier.flush_due()


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(start=T0)


def config(sink: Sink, extra: str = "", route: str = "") -> str:
    return f"""
receivers:
  - name: team
    apprise: ["{sink.url(path="/team")}"]
    retries: 0
  - name: oncall
    apprise: ["{sink.url(path="/oncall")}"]
    retries: 0
  - name: payments
    apprise: ["{sink.url(path="/payments")}"]
    retries: 0
route:
  receiver: team
  group_by: [alertname]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
  routes:
    - matchers: ['severity="critical"']
      receiver: oncall
      continue: true
      group_wait: 5s
    - matchers: ['queue=~"payments.*"']
      receiver: payments
      group_by: [alertname, queue]
{route}
{extra}
"""


def posts(sink: Sink, path: str) -> list[dict[str, Any]]:
    return [r["json"] for r in sink.requests if r["path"] == path]


async def test_group_wait_groups_alerts_then_group_interval_and_repeat(
    sink: Sink, store: SqliteStore, clock: VirtualClock
) -> None:
    h = Harness(config(sink), store, clock)
    a1 = alert("QueueLong", queue="default")
    await h.at(10, [a1])
    a2 = alert("QueueLong", queue="imports")
    await h.at(29, [a1, a2])
    assert posts(sink, "/team") == []  # group_wait (30 s) not over
    await h.at(31, [a1, a2])
    (first,) = posts(sink, "/team")
    assert first["title"] == "[FIRING:2] QueueLong" and "(first notification)" in first["message"]
    # nothing new: no notification at group_interval
    await h.at(31 + 300, [a1, a2])
    assert len(posts(sink, "/team")) == 1
    # a new alert in the group waits for the next group_interval tick, not group_wait
    a3 = alert("QueueLong", queue="reports")
    await h.at(31 + 300 + 10, [a1, a2, a3])
    assert len(posts(sink, "/team")) == 1
    await h.at(31 + 600, [a1, a2, a3])
    second = posts(sink, "/team")[1]
    assert second["title"] == "[FIRING:3] QueueLong" and "(new alerts in group)" in second["message"]
    # repeat_interval (4 h) re-sends an unchanged group
    await h.at(31 + 600 + 4 * 3600, [a1, a2, a3])
    assert "(repeat elapsed)" in posts(sink, "/team")[-1]["message"]


async def test_continue_and_inheritance(sink: Sink, store: SqliteStore, clock: VirtualClock) -> None:
    h = Harness(config(sink), store, clock)
    crit = alert("QueueVeryLong", severity="critical", queue="payments-eu")
    # critical -> oncall (continue) and then payments (first matching sibling); not the root's team
    routes = h.notifier.root.match(crit.labels)
    assert [r.receiver for r in routes] == ["oncall", "payments"]
    oncall, payments = routes
    assert oncall.group_wait == 5 and oncall.group_interval == 300 and oncall.group_by == ("alertname",)  # inherited
    assert payments.group_wait == 30 and payments.group_by == ("alertname", "queue")
    await h.at(6, [crit])
    assert len(posts(sink, "/oncall")) == 1 and posts(sink, "/payments") == []
    await h.at(31, [crit])
    assert len(posts(sink, "/payments")) == 1 and posts(sink, "/team") == []


async def test_nothing_sent_for_an_alert_resolved_within_group_wait(
    sink: Sink, store: SqliteStore, clock: VirtualClock
) -> None:
    h = Harness(config(sink), store, clock)
    await h.at(10, [alert("Blip", queue="x")])
    await h.at(60, [alert("Blip", AlertState.RESOLVED, queue="x")])
    assert sink.requests == []
    assert h.notifier.groups() == []


async def test_resolved_notices_some_then_all(sink: Sink, store: SqliteStore, clock: VirtualClock) -> None:
    h = Harness(config(sink), store, clock)
    a, b = alert("QueueLong", queue="a"), alert("QueueLong", queue="b")
    await h.at(31, [a, b])
    b_res = alert("QueueLong", AlertState.RESOLVED, queue="b")
    await h.at(331, [a, b_res])
    assert "(some resolved)" in posts(sink, "/team")[-1]["message"]
    a_res = alert("QueueLong", AlertState.RESOLVED, queue="a")
    await h.at(631, [a_res])
    last = posts(sink, "/team")[-1]
    assert last["title"] == "[RESOLVED] QueueLong" and "(all resolved)" in last["message"]
    assert last["type"] == "success"
    await h.at(1000, [a_res])
    assert len(posts(sink, "/team")) == 3 and h.notifier.groups() == []


async def test_send_resolved_immediately(sink: Sink, store: SqliteStore, clock: VirtualClock) -> None:
    text = config(sink).replace(
        '    apprise: ["' + sink.url(path="/team") + '"]',
        '    apprise: ["' + sink.url(path="/team") + '"]\n    send_resolved_immediately: true',
    )
    h = Harness(text, store, clock)
    await h.at(31, [alert("QueueLong", queue="a")])
    await h.at(40, [alert("QueueLong", AlertState.RESOLVED, queue="a")])
    assert "(all resolved)" in posts(sink, "/team")[-1]["message"]  # at 40 s, not at 331 s


async def test_inhibition_with_equal(sink: Sink, store: SqliteStore, clock: VirtualClock) -> None:
    extra = """
inhibit_rules:
  - source_matchers: ['alertname="CeleryWorkerLost"']
    target_matchers: ['alertname="CeleryQueueLong"']
    equal: [host]
"""
    h = Harness(config(sink, extra), store, clock)
    lost = alert("CeleryWorkerLost", host="h1")
    q_same = alert("CeleryQueueLong", host="h1", queue="q1")
    q_other = alert("CeleryQueueLong", host="h2", queue="q2")
    await h.at(31, [lost, q_same, q_other])
    titles = [p["title"] for p in posts(sink, "/team")]
    assert "[FIRING:1] CeleryWorkerLost" in titles
    queue_post = next(p for p in posts(sink, "/team") if "CeleryQueueLong" in p["title"])
    assert queue_post["title"] == "[FIRING:1] CeleryQueueLong" and "h2" in queue_post["message"]
    assert h.notifier.alert_status(q_same, clock.now()).inhibited_by == [lost.fingerprint]
    assert h.notifier.alert_status(q_other, clock.now()).inhibited_by == []


class StaticSilences:
    """Stands in for the silence store's answer (alertd.silence is tested against this same contract)."""

    def __init__(self) -> None:
        self.matching: dict[str, str] = {}

    def mutes(self, labels: Mapping[str, str], now: float) -> list[str]:
        return [sid for sid, queue in self.matching.items() if labels.get("queue") == queue]


async def test_silenced_alerts_are_not_sent_and_history_says_so(
    sink: Sink, store: SqliteStore, clock: VirtualClock
) -> None:
    silences = StaticSilences()
    silences.matching["s1"] = "q1"
    h = Harness(config(sink), store, clock, silences)
    a = alert("QueueLong", queue="q1")
    await h.at(31, [a])
    assert sink.requests == []
    assert h.notifier.alert_status(a, clock.now()).silenced_by == ["s1"]
    (entry,) = await store.history(HistoryQuery(kind="silenced"))
    assert entry.receiver == "team" and entry.alertnames == ["QueueLong"]
    del silences.matching["s1"]  # expired: the next flush lets it through
    await h.at(331, [a])
    assert len(posts(sink, "/team")) == 1


async def test_time_intervals_mute_a_route(sink: Sink, store: SqliteStore, clock: VirtualClock) -> None:
    route = """
time_intervals:
  - name: never
    time_intervals: [{years: ['1999']}]
  - name: always
    time_intervals: [{times: [{start_time: '00:00', end_time: '24:00'}]}]
"""
    text = (
        config(sink, route)
        .replace(
            "      group_by: [alertname, queue]",
            "      group_by: [alertname, queue]\n      active_time_intervals: [never]",
        )
        .replace("      group_wait: 5s", "      group_wait: 5s\n      mute_time_intervals: [always]")
    )
    h = Harness(text, store, clock)
    await h.at(31, [alert("QueueLong", severity="critical", queue="payments")])
    assert sink.requests == []
    kinds = [e.kind for e in await store.history(HistoryQuery())]
    assert kinds.count("muted") == 2


async def test_restart_sends_nothing_new_and_still_sends_the_owed_resolved_notice(
    sink: Sink, store: SqliteStore, clock: VirtualClock
) -> None:
    text = config(sink)
    a = alert("QueueLong", queue="a")
    h = Harness(text, store, clock)
    await h.at(31, [a])
    assert len(posts(sink, "/team")) == 1
    # a new notifier on the same store (alertd restarted), same firing alert: nothing is re-sent
    h2 = Harness(text, store, clock)
    await h2.at(200, [a])
    assert len(posts(sink, "/team")) == 1
    # the alert resolves while "down"; the restarted notifier still owes and sends the resolved notice
    h3 = Harness(text, store, clock)
    await h3.at(300, [alert("QueueLong", AlertState.RESOLVED, queue="a")])
    assert len(posts(sink, "/team")) == 2 and "(all resolved)" in posts(sink, "/team")[-1]["message"]


async def test_two_notifiers_on_one_store_send_once(sink: Sink, store: SqliteStore, clock: VirtualClock) -> None:
    text = config(sink)
    h1, h2 = Harness(text, store, clock), Harness(text, store, clock)
    h2.notifier.replica = "r2"
    a = alert("QueueLong", queue="a")
    while clock.now() < T0 + 31:
        clock.advance(1)
        for h in (h1, h2):
            h.notifier.put([a])
            await h.notifier.flush_due()
    assert len(posts(sink, "/team")) == 1


def test_config_cross_references_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "alertd.yaml"
    path.write_text("""receivers:
  - name: team
    fallback: nobody
route:
  receiver: team
  routes:
    - receiver: tema
      mute_time_intervals: [weekends]
""")
    with pytest.raises(FileError) as e:
        load_config(path)
    text = str(e.value)
    assert f"{path}:3: receivers[0].fallback: no receiver named 'nobody'" in text
    assert f"{path}:7: route.routes[0].receiver: no receiver named 'tema'" in text
    assert f"{path}:8: route.routes[0].mute_time_intervals[0]: no time interval named 'weekends'" in text


@pytest.mark.parametrize("field", ["group_interval", "repeat_interval"])
def test_a_zero_group_or_repeat_interval_is_refused_as_alertmanager_does(field: str) -> None:
    from alertd.config import load_config
    from alertd.yamlfile import FileError

    with pytest.raises(FileError) as e:
        load_config(text=f"route:\n  receiver: console\n  {field}: 0s\n")
    assert f"<config>:3: route.{field}: Input should be greater than 0" in str(e.value.problems[0])
