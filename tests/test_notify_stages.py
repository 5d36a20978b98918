"""The notification pipeline's stages on their own (issue 13), as Alertmanager tests its own.

Real parts throughout: a SQLite store (notification log, history), real silences, real inhibit
rules, real Apprise delivery to an aiohttp sink, a virtual clock. No daemon, no dispatcher.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from alertd.alert import Alert, AlertState
from alertd.clock import VirtualClock
from alertd.config import InhibitRuleConfig, ReceiverConfig, RouteConfig, load_config
from alertd.dispatch.groups import AlertGroup, group_key
from alertd.dispatch.route import build_route
from alertd.inhibit import Inhibitor
from alertd.matchers import parse_matchers
from alertd.nflog import Entry, NotificationLog
from alertd.notify import stage
from alertd.notify.claim import Claims, ClaimStage
from alertd.notify.dedup import CATCH_UP, DedupStage
from alertd.notify.delivery import resolve_receiver
from alertd.notify.history import History
from alertd.notify.mute import InhibitStage, NoteSuppressed, SilenceStage, TimeMuteStage
from alertd.notify.render import Renderer
from alertd.notify.send import SendCounts, SendStage
from alertd.notify.template import Templates
from alertd.silence.silences import Silences
from alertd.store.base import HistoryQuery
from alertd.store.sqlite import SqliteStore
from alertd.timeinterval import TimeIntervals
from tests.notify_fixtures import T0, Sink, make_alert, sink_posts

H = 3600.0


def a_group(*alerts: Alert, repeat: str = "4h", **route: Any) -> AlertGroup:
    r = build_route(RouteConfig(receiver="team", group_by=["alertname"], repeat_interval=repeat, **route))
    labels = {"alertname": alerts[0].labels["alertname"]} if alerts else {}
    g = AlertGroup(r, labels, group_key(r, labels))
    for a in alerts:
        g.alerts[a.fingerprint] = a
    return g


def a_receiver(sink: Sink, **kw: Any) -> Any:
    cfg = ReceiverConfig(name="team", apprise=[sink.url(path="/team")], **kw)
    return resolve_receiver(cfg, base_dir=load_config().base_dir)


def forgotten() -> tuple[list[str], Any]:
    gone: list[str] = []
    return gone, lambda group, resolved: gone.extend(a.fingerprint for a in resolved)


# -- dedup: the reasons, table-driven (Alertmanager's TestDedupStageNeedsUpdate) ----------

A = make_alert("QueueLong", queue="a")
B = make_alert("QueueLong", queue="b")
A_AGAIN = make_alert("QueueLong", starts_at=T0 + 600, queue="a")  # a new episode of A
A_RESOLVED = make_alert("QueueLong", AlertState.RESOLVED, queue="a")


def told(*alerts: Alert, at: float = T0, **kw: Any) -> Entry:
    return Entry(
        "team",
        a_group(A).key,
        sorted(a.fingerprint for a in alerts),
        [],
        at,
        "first notification",
        starts={a.fingerprint: a.starts_at for a in alerts},
        **kw,
    )


@pytest.mark.parametrize(
    ("entry", "alerts", "now", "send_resolved", "reason"),
    [
        (None, [A], T0, True, "first notification"),
        (told(A), [A], T0 + 60, True, None),  # nothing new
        (told(A), [A, B], T0 + 60, True, "new alerts in group"),
        (told(A), [A_AGAIN], T0 + 700, True, "new alerts in group"),  # fired again after a resolve
        (told(A), [A], T0 + 4 * H, True, "repeat elapsed"),
        (told(A, B), [A_RESOLVED, B], T0 + 60, True, "some resolved"),
        (told(A), [A_RESOLVED], T0 + 60, True, "all resolved"),
        (told(A), [A_RESOLVED], T0 + 60, False, None),  # send_resolved: false
        (None, [A_RESOLVED], T0 + 60, True, None),  # never told: no resolved notice owed
        (told(A, via="oncall"), [A], T0 + 60, True, CATCH_UP),  # a fallback told someone else
        (told(at=T0, maybe_firing={A.fingerprint: A.starts_at}), [A_RESOLVED], T0 + 60, True, "all resolved"),
    ],
    ids=[
        "first",
        "nothing-new",
        "new-alert",
        "new-episode",
        "repeat",
        "some-resolved",
        "all-resolved",
        "send-resolved-off",
        "never-told",
        "catch-up",
        "maybe-told",
    ],
)
async def test_dedup_decides_what_the_receiver_is_owed(
    store: SqliteStore,
    sink: Sink,
    entry: Entry | None,
    alerts: list[Alert],
    now: float,
    send_resolved: bool,
    reason: str | None,
) -> None:
    nflog = NotificationLog(store)
    if entry is not None:
        await nflog.put(entry)
    gone, forget = forgotten()
    group = a_group(*alerts)
    flush = stage.Flush.of(group, a_receiver(sink, send_resolved=send_resolved), now)
    out = await DedupStage(nflog, "r1", forget)(flush)
    assert (out.plan.reason if out is not None and out.plan is not None else None) == reason
    if reason is None:  # nothing to say: the resolved alerts it decided on leave the group
        assert gone == [a.fingerprint for a in alerts if a.state is AlertState.RESOLVED]


async def test_dedup_waits_out_the_group_interval_of_the_replica_that_sent_last(store: SqliteStore, sink: Sink) -> None:
    nflog = NotificationLog(store)
    await nflog.put(told(A, replica="r2"))
    group = a_group(A, B, group_interval="5m")
    out = await DedupStage(nflog, "r1", forgotten()[1])(stage.Flush.of(group, a_receiver(sink), T0 + 60))
    assert out is None and group.next_flush == T0 + 300  # not paged by both replicas


# -- the mute stages record why ----------------------------------------------------------


async def test_mute_stages_report_what_mutes_each_alert(store: SqliteStore, sink: Sink) -> None:
    clock = VirtualClock(start=T0)
    silences = Silences(store, clock)
    await silences.load()
    sid = await silences.upsert(
        parse_matchers('queue="b"'), T0, T0 + H, created_by="ana", comment="deploy", author="ana"
    )
    broker = make_alert("CeleryBrokerUnreachable")
    inhibitor = Inhibitor(
        [InhibitRuleConfig(source_matchers=['alertname="CeleryBrokerUnreachable"'], target_matchers=['queue="a"'])]
    )
    inhibitor.update([broker, A, B])
    c = make_alert("QueueLong", queue="c")
    flush = stage.Flush.of(a_group(A, B, c), a_receiver(sink), T0 + 1)
    for s in (InhibitStage(inhibitor), TimeMuteStage(TimeIntervals([])), SilenceStage(silences)):
        out = await s(flush)
        assert out is flush
    assert {fp: (s.kind, s.by) for fp, s in flush.suppressed.items()} == {
        A.fingerprint: ("inhibited", [broker.fingerprint]),
        B.fingerprint: ("silenced", [sid]),
    }
    assert [a.fingerprint for a in flush.to_fire] == [c.fingerprint]

    history = History(store, clock)
    assert await NoteSuppressed(history)(flush) is flush
    entries = [e for e in await store.history(HistoryQuery(limit=10)) if e.kind != "api"]  # not the silence's own
    assert sorted((e.kind, e.reason) for e in entries) == [
        ("inhibited", "inhibited by 1 firing alert(s)"),
        ("silenced", f"silenced by {sid}"),
    ]
    await NoteSuppressed(history)(flush)  # unchanged since: nothing new to note
    assert len([e for e in await store.history(HistoryQuery(limit=10)) if e.kind != "api"]) == 2


async def test_a_route_muted_by_a_time_interval_stops_the_flush_and_says_which(store: SqliteStore, sink: Sink) -> None:
    always = "[{times: [{start_time: '00:00', end_time: '24:00'}]}]"
    cfg = load_config(text=f"time_intervals:\n  - name: nights\n    time_intervals: {always}\n")
    intervals = TimeIntervals(cfg.time_intervals)
    flush = stage.Flush.of(a_group(A, B, mute_time_intervals=["nights"]), a_receiver(sink), T0)
    await TimeMuteStage(intervals)(flush)
    assert {s.kind for s in flush.suppressed.values()} == {"muted"} and flush.route_muted == ["nights"]
    assert await NoteSuppressed(History(store, VirtualClock(start=T0)))(flush) is None
    (entry,) = await store.history(HistoryQuery(limit=10))
    assert entry.kind == "muted" and entry.reason == "time intervals: nights"


# -- send: retries on a virtual clock, then the fallback ------------------------------------


def sender(store: SqliteStore, clock: VirtualClock, counts: SendCounts, receivers: dict[str, Any]) -> SendStage:
    return SendStage(
        nflog=NotificationLog(store),
        history=History(store, clock),
        renderer=Renderer(Templates(), lambda: ""),
        clock=clock,
        replica="r1",
        counts=counts,
        receivers=receivers.get,
        forget=forgotten()[1],
    )


async def test_send_retries_with_backoff_on_the_virtual_clock_and_logs_each_retry(
    store: SqliteStore, sink: Sink
) -> None:
    clock = VirtualClock(start=T0)
    sink.fail_times = 2
    receiver = a_receiver(sink, retries=3, retry_backoff="2s")
    counts = SendCounts()
    nflog = NotificationLog(store)
    pipeline = [DedupStage(nflog, "r1", forgotten()[1]), sender(store, clock, counts, {"team": receiver})]
    running = asyncio.create_task(stage.run(pipeline, stage.Flush.of(a_group(A), receiver, T0)))
    for _ in range(20):  # the retries wait on the virtual clock, not the wall
        await asyncio.sleep(0.05)
        clock.advance(1)
        if running.done():
            break
    assert (await running) is not None
    assert len(sink.requests) == 3 and counts.sent == 1 and counts.failed == 0
    kinds = [(e.kind, e.detail.get("next_in")) for e in reversed(await store.history(HistoryQuery(limit=10)))]
    assert kinds == [("retry", 2.0), ("retry", 4.0), ("sent", None)]
    entry = await nflog.get("team", a_group(A).key)
    # told: the attempt mark is gone, the log says who sent
    assert (
        entry is not None and entry.firing == [A.fingerprint] and entry.replica == "r1" and entry.attempted_at is None
    )


async def test_send_falls_back_when_every_retry_failed(store: SqliteStore, sink: Sink) -> None:
    clock = VirtualClock(start=T0)
    sink.fail_times = 100
    receiver = a_receiver(sink, retries=0, fallback="console")
    console = resolve_receiver(ReceiverConfig(name="console"), base_dir=load_config().base_dir)
    counts = SendCounts()
    nflog = NotificationLog(store)
    pipeline = [DedupStage(nflog, "r1", forgotten()[1]), sender(store, clock, counts, {"console": console})]
    assert await stage.run(pipeline, stage.Flush.of(a_group(A), receiver, T0)) is not None
    assert counts.failed == 1 and counts.fallback == 1 and counts.sent == 1
    entry = await nflog.get("team", a_group(A).key)
    assert entry is not None and entry.via == "console"  # the receiver itself still has to catch up
    kinds = [e.kind for e in reversed(await store.history(HistoryQuery(limit=10)))]
    assert kinds == ["dead_letter", "fallback"]


# -- claims, and a pipeline composed without the daemon ------------------------------------


async def test_a_claim_held_by_another_replica_stops_the_flush_and_rechecks_soon(
    store: SqliteStore, sink: Sink
) -> None:
    clock = VirtualClock(start=T0)
    group = a_group(A)
    await store.claim(f"send:team:{group.key}", "r2", 60.0, T0)
    flush = stage.Flush.of(group, a_receiver(sink), T0)
    flush.plan = await DedupStage(NotificationLog(store), "r1", forgotten()[1]).plan(flush)
    group.next_flush = T0 + 300
    claims = Claims(store, clock, "r1", lambda: 60.0)
    assert await ClaimStage(claims)(flush) is None
    assert group.next_flush == T0 + 5 and claims.held == set()


async def test_a_pipeline_composed_by_hand_pages_once_and_releases_its_claim(store: SqliteStore, sink: Sink) -> None:
    clock = VirtualClock(start=T0)
    receiver = a_receiver(sink)
    nflog = NotificationLog(store)
    claims = Claims(store, clock, "r1", lambda: 60.0)
    _, forget = forgotten()
    dedup = DedupStage(nflog, "r1", forget)
    pipeline: list[stage.Stage] = [
        InhibitStage(Inhibitor([])),
        NoteSuppressed(History(store, clock)),
        dedup,
        ClaimStage(claims),
        dedup,
        sender(store, clock, SendCounts(), {}),
    ]
    assert await stage.run(pipeline, stage.Flush.of(a_group(A, B), receiver, T0)) is not None
    assert await stage.run(pipeline, stage.Flush.of(a_group(A, B), receiver, T0 + 60)) is None  # told already
    assert len(sink_posts(sink, "/team")) == 1 and claims.held == set()
    assert await store.claim(f"send:team:{a_group(A).key}", "r2", 60.0, T0 + 61)  # released: r2 may take it
