"""The notify pipeline's harder cases on a virtual clock: send_resolved off, retry history and
bounded backoff, suppressions recorded on change, HA claims taken over after a crash, time
intervals across a DST change, and the notifier's own timers sleeping on the injected clock.

Delivery is real (Apprise json:// to a local aiohttp sink); state is a real SQLite store.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from alertd.alert import AlertState
from alertd.clock import VirtualClock
from alertd.config import load_config
from alertd.notify.service import Notifier
from alertd.store.base import HistoryQuery
from alertd.store.sqlite import SqliteStore
from tests.notify_fixtures import T0, Sink, Stepper, make_alert, one_receiver, sink_posts, through_backoffs


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(start=T0)


async def test_send_resolved_false_sends_no_notice_but_a_refire_pages_again(
    sink: Sink, store: SqliteStore, clock: VirtualClock
) -> None:
    text = one_receiver(sink, "    send_resolved: false")
    n = Notifier(load_config(text=text), store, clock)
    run = Stepper(n, clock)
    a = make_alert("QueueLong", queue="a")
    await run.until(T0 + 31, [a])
    assert len(sink_posts(sink, "/team")) == 1
    await run.until(T0 + 200, [make_alert("QueueLong", AlertState.RESOLVED, queue="a")])
    assert len(sink_posts(sink, "/team")) == 1  # no resolved notice: send_resolved is off
    # It fires again well inside repeat_interval: a new incident must page, not look "already told".
    await run.until(T0 + 400, [make_alert("QueueLong", queue="a", starts_at=T0 + 300)])
    second = sink_posts(sink, "/team")
    assert len(second) == 2 and "(first notification)" in second[-1]["message"]


async def test_every_retry_is_in_history_and_backoff_doubles_up_to_its_bound(
    sink: Sink, store: SqliteStore, clock: VirtualClock
) -> None:
    sink.fail_times = 4  # four 500s, then 200
    # the claim's renewal (every ttl / 3) sleeps on the same clock: out of the way of the backoffs
    text = one_receiver(sink, extra="ha:\n  claim_ttl: 1d").replace(
        "    retries: 0", "    retries: 5\n    retry_backoff: 20s"
    )
    n = Notifier(load_config(text=text), store, clock)
    n.put([make_alert("QueueLong", queue="a")])
    clock.advance(30)
    await n.flush_due(wait=False)
    # The backoff sleeps on the virtual clock: each sleep is woken at its deadline (a fixed step
    # per real interval made a slow attempt look like a longer backoff).
    await through_backoffs(n, clock)
    retries = await store.history(HistoryQuery(kind="retry"))
    assert [e.detail["attempt"] for e in reversed(retries)] == [1, 2, 3, 4]
    assert [e.detail["next_in"] for e in reversed(retries)] == [20, 40, 60, 60]  # doubling, capped at 60 s
    assert all(e.receiver == "team" and e.reason == "first notification" for e in retries)
    assert all(e.outcome and e.outcome != "ok" for e in retries)  # the redacted error of that attempt
    (sent,) = await store.history(HistoryQuery(kind="sent"))
    assert sent.detail["attempts"] == 5 and len(sink.requests) == 5
    # the gaps between attempts, in virtual seconds, follow the backoff
    times = sorted(e.ts for e in retries)
    assert [round(b - a) for a, b in itertools.pairwise(times)] == [20, 40, 60]


class QueueSilences:
    """The silence store's answer for `queue=<value>` silences (alertd.silence implements the same call)."""

    def __init__(self) -> None:
        self.by_queue: dict[str, str] = {}

    def mutes(self, labels: Mapping[str, str], now: float) -> list[str]:
        sid = self.by_queue.get(labels.get("queue", ""))
        return [sid] if sid else []


async def test_a_silenced_alert_in_a_group_is_left_out_and_recorded_once(
    sink: Sink, store: SqliteStore, clock: VirtualClock
) -> None:
    silences = QueueSilences()
    silences.by_queue["b"] = "silence-1"
    n = Notifier(load_config(text=one_receiver(sink)), store, clock, silences=silences)
    run = Stepper(n, clock, step=5)
    a, b = make_alert("QueueLong", queue="a"), make_alert("QueueLong", queue="b")
    await run.until(T0 + 30 + 10 * 60, [a, b])  # group_wait, then ten group_intervals
    (first,) = sink_posts(sink, "/team")
    assert (
        first["title"] == "[FIRING:1] QueueLong" and "queue=a" in first["message"] and "queue=b" not in first["message"]
    )
    (entry,) = await store.history(HistoryQuery(kind="silenced"))  # on change, not on each of 11 flushes
    assert entry.fingerprints == [b.fingerprint] and entry.detail["silenced_by"] == ["silence-1"]
    assert "silence-1" in entry.reason
    del silences.by_queue["b"]  # the silence expired: b is news to the receiver
    await run.until(T0 + 30 + 11 * 60 + 5, [a, b])
    second = sink_posts(sink, "/team")[-1]
    assert second["title"] == "[FIRING:2] QueueLong" and "(new alerts in group)" in second["message"]


async def test_a_crashed_senders_claim_expires_and_the_other_replica_sends(
    sink: Sink, store: SqliteStore, clock: VirtualClock
) -> None:
    sink.status = 500
    text = one_receiver(sink).replace("    retries: 0", "    retries: 3\n    retry_backoff: 10m")
    text += "ha: {claim_ttl: 90s}\n"
    r1 = Notifier(load_config(text=text), store, clock, replica="r1")
    r2 = Notifier(load_config(text=text), store, clock, replica="r2")
    a = make_alert("QueueLong", queue="a")
    for n in (r1, r2):
        n.put([a])
    clock.advance(30)
    await r1.flush_due(wait=False)  # r1 claims, fails once and sleeps in backoff...
    while not sink.requests:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    await r2.flush_due()  # ...so r2 leaves it alone
    assert len(sink.requests) == 1
    for task in list(r1._inflight.values()):
        task.cancel()  # r1 dies mid-retry: its claim stays until it expires
    await asyncio.sleep(0.01)
    sink.status = 200
    run = Stepper(r2, clock, step=10)
    await run.until(T0 + 30 + 60, [a])  # r2's next group_interval: the claim (90 s) still holds
    assert len(sink.requests) == 1
    await run.until(T0 + 30 + 120, [a])  # claim expired: r2 takes the work over
    assert len(sink.requests) == 2 and sink.requests[-1]["json"]["title"] == "[FIRING:1] QueueLong"
    (sent,) = await store.history(HistoryQuery(kind="sent"))
    assert sent.reason == "first notification"


def local(text: str, zone: str = "America/New_York") -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()


async def test_business_hours_route_waits_for_monday_nine_new_york_time_across_dst(
    sink: Sink, store: SqliteStore
) -> None:
    # 2026-03-08 is the US spring-forward Sunday: 09:00 on Monday is 13:00 UTC, not 14:00 as a
    # fixed -05:00 offset (last week's) would say.
    text = one_receiver(
        sink,
        route_extra="  active_time_intervals: [business-hours]",
        extra="""
time_intervals:
  - name: business-hours
    time_intervals:
      - weekdays: ['monday:friday']
        times: [{start_time: '09:00', end_time: '17:00'}]
        location: America/New_York
""",
    )
    start = local("2026-03-07T23:00")  # Saturday night, EST
    clock = VirtualClock(start=start)
    n = Notifier(load_config(text=text), store, clock)
    a = make_alert("QueueLong", queue="a", starts_at=start)
    run = Stepper(n, clock, step=60)
    await run.until(local("2026-03-09T08:59"), [a])  # all of Sunday (23 h long) and Monday morning
    assert sink.requests == []
    muted = await store.history(HistoryQuery(kind="muted"))
    assert len(muted) == 1 and "outside business-hours" in muted[0].reason  # recorded once, not per flush
    await run.until(local("2026-03-09T09:01"), [a])
    (sent,) = await store.history(HistoryQuery(kind="sent"))
    assert len(sink.requests) == 1
    assert datetime.fromtimestamp(sent.ts, ZoneInfo("UTC")).strftime("%H:%M") in ("13:00", "13:01")
    assert n.alert_status(a, clock.now()).muted_by == []
    assert n.alert_status(a, local("2026-03-09T17:00")).muted_by == ["outside business-hours"]


async def test_the_notifiers_own_timers_sleep_on_the_injected_clock(
    sink: Sink, store: SqliteStore, clock: VirtualClock
) -> None:
    n = Notifier(load_config(text=one_receiver(sink)), store, clock)
    await n.start()
    try:
        n.put([make_alert("QueueLong", queue="a")])
        clock.advance(29)
        await asyncio.sleep(0.2)
        assert sink.requests == []  # 29 s of group_wait passed: nothing yet
        clock.advance(1)
        for _ in range(200):
            if sink.requests:
                break
            await asyncio.sleep(0.02)
        assert len(sink.requests) == 1
        (group,) = n.groups()
        assert group.next_flush == T0 + 30 + 60  # then every group_interval
        assert group.to_dict()["receiver"] == "team"
    finally:
        await n.stop()
