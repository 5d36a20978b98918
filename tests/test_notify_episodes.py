"""Never lose a page, on a virtual clock: alert episodes, attempts that may have reached the
receiver, sends interrupted by a crash, and two replicas whose group grows during group_wait.

The rules engine, the observer and the notifier are the real ones; delivery is real (Apprise
json:// to a local aiohttp sink); state is a real SQLite store. The reference model at the top is
the contract, written as simply as it can be: fire -> a page within group_wait / group_interval,
resolve -> a resolved notice; a new episode of a fingerprint is news to the receiver.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alertd.alert import Alert, AlertState
from alertd.clock import VirtualClock
from alertd.config import load_config
from alertd.nflog import Entry, dedup_reason, new_episodes
from alertd.notify.service import Notifier
from alertd.observe.observer import Observer
from alertd.observe.series import SeriesStore
from alertd.rules.engine import Engine
from alertd.rules.loader import load_rules
from alertd.samples import QueueSample
from alertd.store.base import HistoryQuery
from alertd.store.sqlite import SqliteStore
from tests.notify_fixtures import T0, Sink, make_alert, one_receiver, sink_posts

GROUP_WAIT, GROUP_INTERVAL = 5, 10

RULE = """
groups:
  - name: q
    interval: 1s
    rules:
      - alert: QueueLong
        metric: queue_length
        by: [queue]
        above: 100
        annotations: {summary: "{{ labels.queue }} has {{ value }}"}
"""


def receiver_config(sink: Sink, receiver_extra: str = "", extra: str = "") -> str:
    return one_receiver(
        sink, receiver_extra, extra=extra, group_wait=f"{GROUP_WAIT}s", group_interval=f"{GROUP_INTERVAL}s"
    )


# -- the reference model --------------------------------------------------------------------


def reference(highs: list[bool]) -> list[tuple[int, str]]:
    """What the receiver must be told, for a queue that is over its threshold in second i when
    highs[i]: (second, "firing" | "resolved"). One fingerprint, one group, rule interval 1 s."""
    sent: list[tuple[int, str]] = []
    told: int | None = None  # the episode the receiver believes is firing
    episode: int | None = None  # the episode firing now
    group_next: int | None = None  # next flush; None while there is no group
    was_high = False
    for t, high in enumerate(highs, start=1):
        if high and not was_high:
            episode = t
        if not high and was_high:
            episode = None
        was_high = high
        if group_next is None and episode is not None:
            group_next = t + GROUP_WAIT
        if group_next is not None and t >= group_next:
            group_next = t + GROUP_INTERVAL
            if episode is not None and told != episode:
                sent.append((t, "firing"))
                told = episode
            elif episode is None:
                if told is not None:
                    sent.append((t, "resolved"))
                told, group_next = None, None  # the group is done
    return sent


def test_the_reference_model_itself() -> None:
    # fire at 1, page at 6; resolved at 8, notice at 16 (group_interval after 6)
    assert reference([True] * 7 + [False] * 12) == [(6, "firing"), (16, "resolved")]
    # resolved and fired again between two flushes: the new episode pages at the next flush
    assert reference([True] * 7 + [False] * 2 + [True] * 10) == [(6, "firing"), (16, "firing")]
    # a blip shorter than group_wait and gone by the flush: nothing owed
    assert reference([True] * 2 + [False] * 10) == []


# -- the system under test: observer -> engine -> notifier ----------------------------------


@dataclass
class Pipeline:
    clock: VirtualClock
    observer: Observer
    engine: Engine
    notifier: Notifier
    store: SqliteStore

    async def second(self, high: bool, *, queue: str = "q1") -> None:
        self.clock.advance(1)
        self.observer.on_queue_sample(QueueSample(queue, 500 if high else 0, 1, self.clock.now()))
        self.engine.tick(self.clock.now())
        self.notifier.put(self.engine.alerts())
        await self.notifier.flush_due()

    async def sent(self) -> list[tuple[int, str]]:
        entries = await self.store.history(HistoryQuery(kind="sent", limit=1000))
        return [
            (round(e.ts - T0), "resolved" if e.reason in ("all resolved", "some resolved") else "firing")
            for e in reversed(entries)
        ]


def pipeline(
    tmp_path: Path, store: SqliteStore, config_text: str, replica: str = "r1", clock: VirtualClock | None = None
) -> Pipeline:
    clock = clock or VirtualClock(start=T0)
    series = SeriesStore(bucket_seconds=5)
    observer = Observer(series, clock)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULE)
    engine = Engine(load_rules([rules]), series, clock, gauges=observer.gauges, watch=observer.watch)
    notifier = Notifier(load_config(text=config_text), store, clock, replica=replica)
    return Pipeline(clock, observer, engine, notifier, store)


async def test_a_refire_within_the_resolved_retention_pages_again(
    tmp_path: Path, sink: Sink, store: SqliteStore
) -> None:
    """Issue 10, case 1: fire, resolve (both notified), fire again 45 s later -> paged."""
    p = pipeline(tmp_path, store, receiver_config(sink))
    for high in [True] * 10 + [False] * 45 + [True] * 20:
        await p.second(high)
    kinds = [m["type"] for m in sink_posts(sink, "/team")]
    assert kinds == ["failure", "success", "failure"], kinds
    assert "(first notification)" in sink_posts(sink, "/team")[-1]["message"]


async def test_flapping_every_ten_seconds_pages_every_episode_the_receiver_did_not_hear(
    tmp_path: Path, sink: Sink, store: SqliteStore
) -> None:
    p = pipeline(tmp_path, store, receiver_config(sink))
    highs = ([True] * 7 + [False] * 3) * 12
    for high in highs:
        await p.second(high)
    assert await p.sent() == reference(highs)
    assert len(await p.sent()) >= 6  # not one page and then 880 s of silence


async def test_resolve_then_fire_on_the_next_tick(tmp_path: Path, sink: Sink, store: SqliteStore) -> None:
    p = pipeline(tmp_path, store, receiver_config(sink))
    highs = [True] * 8 + [False] + [True] * 30
    for high in highs:
        await p.second(high)
    assert await p.sent() == reference(highs) == [(6, "firing"), (16, "firing")]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(runs=st.lists(st.tuples(st.booleans(), st.integers(1, 25)), min_size=1, max_size=12))
async def test_any_interleaving_of_fire_and_resolve_is_notified_as_the_reference_model_says(
    tmp_path_factory: pytest.TempPathFactory, sink: Sink, runs: list[tuple[bool, int]]
) -> None:
    highs = [high for high, n in runs for _ in range(n)] + [False] * 40  # and let it all resolve
    tmp = tmp_path_factory.mktemp("episodes")
    store = SqliteStore(tmp / "state.db")
    await store.open()
    try:
        p = pipeline(tmp, store, receiver_config(sink))
        for high in highs:
            await p.second(high)
        assert await p.sent() == reference(highs), highs
    finally:
        await store.close()


# -- attempts that may have reached the receiver ---------------------------------------------


async def first_request(sink: Sink) -> None:
    """Until the receiver has been asked once, and the sender is in what follows (its backoff)."""
    while not sink.requests:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)


async def test_a_send_that_timed_out_but_arrived_still_gets_its_resolved_notice(sink: Sink, store: SqliteStore) -> None:
    """The receiver got the page, but answered after our timeout: the log cannot say 'told', and
    before this, the resolve was dropped as 'never told' - an incident left open for good."""
    clock = VirtualClock(start=T0)
    sink.delay = 1.5
    text = receiver_config(sink, "    timeout: 0.5s")
    n = Notifier(load_config(text=text), store, clock, replica="r1")
    a = make_alert("QueueLong", queue="a")
    clock.advance(GROUP_WAIT)
    n.put([a])
    clock.advance(GROUP_WAIT)
    await n.flush_due()
    assert [e.kind for e in await store.history(HistoryQuery())] == ["dead_letter"]
    await asyncio.sleep(1.5)
    assert len(sink_posts(sink, "/team")) == 1  # ...and yet it arrived
    sink.delay = 0
    resolved = make_alert("QueueLong", AlertState.RESOLVED, queue="a")
    # the failed send is retried at the next group_interval as a firing page (at-least-once);
    # here the alert resolved first, so what is owed is the resolved notice
    clock.advance(GROUP_INTERVAL)
    n.put([resolved])
    await n.flush_due()
    posts = sink_posts(sink, "/team")
    assert [p["type"] for p in posts] == ["failure", "success"], posts
    assert "(all resolved)" in posts[-1]["message"]


async def test_a_send_cut_short_by_a_crash_is_resent_after_restart_and_named_a_possible_duplicate(
    sink: Sink, store: SqliteStore
) -> None:
    clock = VirtualClock(start=T0)
    sink.fail_times = 1
    text = receiver_config(sink).replace("    retries: 0", "    retries: 3\n    retry_backoff: 30s")
    first = Notifier(load_config(text=text), store, clock, replica="host:9093")
    a = make_alert("QueueLong", queue="a")
    first.put([a])
    clock.advance(GROUP_WAIT)
    await first.flush_due(wait=False)
    await first_request(sink)
    for task in list(first._inflight.values()):
        task.cancel()  # killed in its retry backoff: no stop(), its claim stays behind
    await asyncio.sleep(0.01)
    # The same process restarted (same identity): its own claim does not stop it.
    again = Notifier(load_config(text=text), store, clock, replica="host:9093")
    again.put([a])
    clock.advance(GROUP_WAIT)
    await again.flush_due()
    ok = [r for r in sink.requests if r["json"]["type"] == "failure"]
    assert len(ok) == 2  # the 500 and the re-send
    (sent,) = await store.history(HistoryQuery(kind="sent"))
    assert sent.reason == "first notification"
    assert sent.detail["possible_duplicate"]["by"] == "host:9093"
    assert again.possible_duplicates_total == 1
    # ...and the resolved notice follows
    clock.advance(GROUP_INTERVAL)
    again.put([make_alert("QueueLong", AlertState.RESOLVED, queue="a")])
    await again.flush_due()
    assert sink.requests[-1]["json"]["type"] == "success"


async def test_a_resolved_notice_cut_short_by_a_crash_is_resent_and_named_a_possible_duplicate(
    sink: Sink, store: SqliteStore
) -> None:
    """Found by tests/test_delivery_faults.py: only the pages' attempts were remembered, so a
    resolved notice that reached the receiver as alertd died was sent again unnamed and uncounted."""
    clock = VirtualClock(start=T0)
    text = receiver_config(sink)
    first = Notifier(load_config(text=text), store, clock, replica="host:9093")
    first.put([make_alert("QueueLong", queue="a")])
    clock.advance(GROUP_WAIT)
    await first.flush_due()
    sink.delay = 0.5
    first.put([make_alert("QueueLong", AlertState.RESOLVED, queue="a")])
    clock.advance(GROUP_INTERVAL)
    await first.flush_due(wait=False)
    await asyncio.sleep(0.2)  # the resolved notice is on its way
    for task in list(first._inflight.values()):
        task.cancel()  # killed mid-request: it arrives, the log never hears of it
    await asyncio.sleep(0.5)
    assert [p["type"] for p in sink_posts(sink, "/team")] == ["failure", "success"]
    sink.delay = 0
    again = Notifier(load_config(text=text), store, clock, replica="host:9093")
    again.put([make_alert("QueueLong", AlertState.RESOLVED, queue="a")])
    clock.advance(GROUP_WAIT)
    await again.flush_due()
    assert [p["type"] for p in sink_posts(sink, "/team")] == ["failure", "success", "success"]
    resolved, fired = await store.history(HistoryQuery(kind="sent"))
    assert "possible_duplicate" not in fired.detail
    assert resolved.reason == "all resolved" and resolved.detail["possible_duplicate"]["by"] == "host:9093"
    assert again.possible_duplicates_total == 1
    entry = await again.nflog.get("team", resolved.group_key)
    assert entry is not None and entry.maybe_resolved == [] and entry.maybe_firing == {}


async def test_an_alert_that_resolves_while_its_page_is_in_flight_still_gets_its_resolved_notice(
    sink: Sink, store: SqliteStore
) -> None:
    """Found by tests/test_delivery_faults.py: the rules tick that resolves an alert can land while
    the flush that pages it awaits the receiver (flushes fall on tick times). The flush then forgot
    every resolved alert of the group, the new one included: its resolved notice was never sent,
    the receiver kept an open incident."""
    clock = VirtualClock(start=T0)
    n = Notifier(load_config(text=receiver_config(sink)), store, clock, replica="r1")
    a = make_alert("QueueLong", queue="a")
    n.put([a])
    clock.advance(GROUP_WAIT)
    sink.delay = 0.3
    await n.flush_due(wait=False)
    await asyncio.sleep(0.1)  # the page is in flight...
    resolved = make_alert("QueueLong", AlertState.RESOLVED, queue="a")
    n.put([resolved])  # ...when the next tick resolves the alert
    while n._inflight:
        await asyncio.sleep(0.01)
    sink.delay = 0
    for _ in range(2 * GROUP_INTERVAL):
        clock.advance(1)
        n.put([resolved])
        await n.flush_due()
    posts = sink_posts(sink, "/team")
    assert [p["type"] for p in posts] == ["failure", "success"], posts
    assert "(all resolved)" in posts[-1]["message"]


async def test_a_graceful_stop_hands_its_claim_to_the_other_replica_at_once(sink: Sink, store: SqliteStore) -> None:
    clock = VirtualClock(start=T0)
    sink.status = 500
    text = receiver_config(sink).replace("    retries: 0", "    retries: 5\n    retry_backoff: 10m")
    r1 = Notifier(load_config(text=text), store, clock, replica="r1")
    r2 = Notifier(load_config(text=text), store, clock, replica="r2")
    a = make_alert("QueueLong", queue="a")
    for n in (r1, r2):
        n.put([a])
    clock.advance(GROUP_WAIT)
    await r1.flush_due(wait=False)
    await first_request(sink)
    stopping = time.monotonic()
    await r1.stop()  # SIGTERM mid-backoff: the send is given up and so is its claim
    # at once: a send asleep in a 10-minute backoff has nothing to finish in the 5 s drain
    assert time.monotonic() - stopping < 2.5
    sink.status = 200
    clock.advance(1)
    await r2.flush_due()
    assert [r["json"]["type"] for r in sink.requests] == ["failure", "failure"]
    assert sink.requests[-1]["json"]["title"] == "[FIRING:1] QueueLong"


# -- two replicas, a group growing during group_wait ----------------------------------------


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    arrivals=st.lists(st.integers(0, 3 * GROUP_WAIT), min_size=1, max_size=12),
    lag=st.integers(0, 3),
)
async def test_two_replicas_never_page_a_group_twice_nor_miss_an_alert(
    tmp_path_factory: pytest.TempPathFactory, sink: Sink, arrivals: list[int], lag: int
) -> None:
    """Both see the same alerts, the second replica `lag` seconds later (its own ticks); alerts
    join the group during group_wait. Each notification is sent once, group_interval apart, and
    every alert is paged and then resolved."""
    tmp = tmp_path_factory.mktemp("ha")
    store = SqliteStore(tmp / "state.db")
    await store.open()
    sink.requests.clear()
    try:
        clock = VirtualClock(start=T0)
        text = receiver_config(sink)
        r1 = Notifier(load_config(text=text), store, clock, replica="r1")
        r2 = Notifier(load_config(text=text), store, clock, replica="r2")
        alerts = [make_alert("QueueLong", queue=f"q{i}", starts_at=T0 + at) for i, at in enumerate(arrivals)]
        end_firing = max(arrivals) + 4 * GROUP_INTERVAL
        for t in range(1, end_firing + 4 * GROUP_INTERVAL):
            clock.set(T0 + t)
            for n, delay in ((r1, 0), (r2, lag)):
                if t >= end_firing + delay:
                    seen = [
                        Alert(**{**a.__dict__, "state": AlertState.RESOLVED, "ends_at": T0 + end_firing})
                        for a in alerts
                    ]
                else:
                    seen = [a for a in alerts if a.starts_at + delay <= clock.now()]
                n.put(seen)
            # both flush in the same instant: the claim, not the order, keeps them apart
            await asyncio.gather(r1.flush_due(), r2.flush_due())
        sent = list(reversed(await store.history(HistoryQuery(kind="sent", limit=1000))))
        times = [e.ts for e in sent]
        assert all(b - a >= GROUP_INTERVAL for a, b in itertools.pairwise(times)), sent
        told_firing = {fp for e in sent if e.reason not in ("all resolved",) for fp in e.fingerprints}
        assert told_firing == {a.fingerprint for a in alerts}
        assert sent[-1].reason == "all resolved"
        assert len(sink.requests) == len(sent)
    finally:
        await store.close()


@pytest.mark.parametrize("lag", [8, 30])
async def test_a_replica_far_behind_its_peer_pages_no_episode_twice(
    tmp_path: Path, sink: Sink, store: SqliteStore, lag: int
) -> None:
    """The second replica's engine runs `lag` seconds behind (a busy loop, a slow start): it
    starts each episode that much later than its peer, and ends it that much later. Both engines
    were up before any of it (quiet_since). Each page tells something new; nothing twice."""
    clock = VirtualClock(start=T0)
    text = receiver_config(sink)
    r1 = Notifier(load_config(text=text), store, clock, replica="r1")
    r2 = Notifier(load_config(text=text), store, clock, replica="r2")
    arrivals, end = [0, 3, 40], 80

    def seen(delay: int) -> list[Alert]:
        now, out = clock.now(), []
        for i, at in enumerate(arrivals):
            a = make_alert("QueueLong", queue=f"q{i}", starts_at=T0 + at + delay)
            a.quiet_since = T0 - 600  # this engine has been watching since then
            if now >= T0 + end + delay:
                a = Alert(**{**a.__dict__, "state": AlertState.RESOLVED, "ends_at": T0 + end + delay})
            if a.starts_at <= now:
                out.append(a)
        return out

    for t in range(1, end + lag + 4 * GROUP_INTERVAL):
        clock.set(T0 + t)
        r1.put(seen(0))
        r2.put(seen(lag))
        await asyncio.gather(r1.flush_due(), r2.flush_due())
    sent = list(reversed(await store.history(HistoryQuery(kind="sent", limit=1000))))
    told: set[str] = set()
    for e in sent[:-1]:
        assert set(e.fingerprints) - told, (e.reason, sent)
        told |= set(e.fingerprints)
    assert told == {make_alert("QueueLong", queue=f"q{i}").fingerprint for i in range(len(arrivals))}
    assert sent[-1].reason == "all resolved" and len(sink.requests) == len(sent)


async def test_two_engines_one_far_behind_page_each_episode_once(
    tmp_path: Path, sink: Sink, store: SqliteStore
) -> None:
    """Two replicas' engines on the same samples, the second's 12 s late (a busy event loop): it
    starts and ends each episode 12 s after its peer did. Fire, resolve, fire again: each is told
    once, whichever replica tells it."""
    clock = VirtualClock(start=T0)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    r1 = pipeline(tmp_path / "a", store, receiver_config(sink), "r1", clock)
    r2 = pipeline(tmp_path / "b", store, receiver_config(sink), "r2", clock)
    lag = 12
    highs = [True] * 30 + [False] * 30 + [True] * 30 + [False] * 40
    for t in range(len(highs) + lag):
        clock.advance(1)
        for p, i in ((r1, t), (r2, t - lag)):
            high = 0 <= i < len(highs) and highs[i]
            p.observer.on_queue_sample(QueueSample("q1", 500 if high else 0, 1, clock.now()))
            p.engine.tick(clock.now())
            p.notifier.put(p.engine.alerts())
        await asyncio.gather(r1.notifier.flush_due(), r2.notifier.flush_due())
    kinds = [m["type"] for m in sink_posts(sink, "/team")]
    assert kinds == ["failure", "success", "failure", "success"], kinds


def test_an_engine_knows_since_when_each_label_set_was_quiet(tmp_path: Path, sink: Sink, store: SqliteStore) -> None:
    from alertd.rules import lifecycle

    p = pipeline(tmp_path, store, receiver_config(sink))
    started = p.clock.now()

    def quiet() -> float | None:
        (a,) = [a for a in p.engine.alerts() if a.state is AlertState.FIRING]
        return a.quiet_since

    for high in [True] * 3:
        p.clock.advance(1)
        p.observer.on_queue_sample(QueueSample("q1", 500 if high else 0, 1, p.clock.now()))
        p.engine.tick(p.clock.now())
    assert quiet() == started  # no earlier episode since the engine started
    for high in [False] * 2 + [True] * 2:
        p.clock.advance(1)
        p.observer.on_queue_sample(QueueSample("q1", 500 if high else 0, 1, p.clock.now()))
        p.engine.tick(p.clock.now())
    assert quiet() == started + 4  # the previous episode ended at its first false second
    # a changed rule starts afresh: it knows of no end before its reload
    changed = tmp_path / "changed.yaml"
    changed.write_text(RULE.replace("above: 100", "above: 200"))
    p.clock.advance(1)
    reloaded = p.clock.now()
    p.engine.replace_rules(load_rules([changed]))
    p.clock.advance(1)
    p.observer.on_queue_sample(QueueSample("q1", 500, 1, p.clock.now()))
    p.engine.tick(p.clock.now())
    assert quiet() == reloaded
    (rt,) = p.engine.runtimes.values()
    for i in range(lifecycle.MAX_ENDS_KEPT + 2):  # past the bound: the oldest ends are forgotten, as a floor
        lifecycle.note_end(rt, (f"other{i}",), reloaded + 10 + i)
    assert len(rt.last_ends) == lifecycle.MAX_ENDS_KEPT and ("other1",) not in rt.last_ends
    assert rt.ends_known_since == reloaded + 11


# -- the dedup decisions, table-driven -------------------------------------------------------


def entry(**kw: Any) -> Entry:
    return Entry("team", "g", **{"at": T0, "replica": "r1", **kw})


@pytest.mark.parametrize(
    ("log", "firing", "resolved", "replica", "expected"),
    [
        (None, {"a": T0}, set(), "r1", "first notification"),
        (None, {}, {"a"}, "r1", None),  # resolved, never told: nothing owed
        (entry(firing=["a"], starts={"a": T0}), {"a": T0}, set(), "r1", None),
        (entry(firing=["a"], starts={"a": T0}), {"a": T0 + 60}, set(), "r1", "new alerts in group"),  # re-fired
        (entry(firing=["a"], starts={"a": T0}), {"a": T0 + 2}, set(), "r2", None),  # a peer's tick skew
        (entry(firing=["a"], starts={"a": T0}), {"a": T0 + 60}, set(), "r2", "new alerts in group"),
        (entry(firing=[], resolved=["a"]), {"a": T0 + 60}, set(), "r1", "first notification"),
        (entry(firing=["a", "b"], starts={"a": T0, "b": T0}), {"b": T0}, {"a"}, "r1", "some resolved"),
        (entry(firing=["a"], starts={"a": T0}), {}, {"a"}, "r1", "all resolved"),
        (entry(maybe_firing={"a": T0}, attempted_at=T0), {}, {"a"}, "r1", "all resolved"),  # may have been told
        (entry(maybe_firing={"a": T0}, attempted_at=T0), {"a": T0}, set(), "r1", "first notification"),
        (entry(firing=["a"], starts={"a": T0}, at=T0 - 5 * 3600), {"a": T0}, set(), "r1", "repeat elapsed"),
        (entry(firing=["a"]), {"a": T0 + 60}, set(), "r1", None),  # a log entry from before episodes
    ],
)
def test_dedup_reasons(
    log: Entry | None, firing: dict[str, float], resolved: set[str], replica: str, expected: str | None
) -> None:
    got = dedup_reason(log, firing, resolved, now=T0, repeat_interval=4 * 3600, send_resolved=True, replica=replica)
    assert got == expected


@pytest.mark.parametrize(
    ("log", "firing", "quiet", "replica", "expected"),
    [
        # a peer told a@T0; ours began 12 s later (we lag), and we saw no end since T0 - 100: the same
        (entry(firing=["a"], starts={"a": T0}), {"a": T0 + 12}, {"a": T0 - 100}, "r2", None),
        # ...but we saw an episode of a end after the told one began: ours is a later one
        (entry(firing=["a"], starts={"a": T0}), {"a": T0 + 12}, {"a": T0 + 6}, "r2", "new alerts in group"),
        # unknown (restored, from the API): the start decides, and a doubt pages
        (entry(firing=["a"], starts={"a": T0}), {"a": T0 + 12}, {"a": None}, "r2", "new alerts in group"),
        # the peer told a's episode resolved; we, behind, still see it fire: not news
        (entry(firing=[], resolved_starts={"a": T0}), {"a": T0 + 12}, {"a": T0 - 100}, "r2", None),
        (entry(firing=[], resolved_starts={"a": T0}), {"a": T0 + 12}, {"a": T0 + 6}, "r2", "first notification"),
        # our own entries compare exact starts
        (entry(firing=["a"], starts={"a": T0}), {"a": T0 + 12}, {"a": T0 - 100}, "r1", "new alerts in group"),
    ],
)
def test_dedup_reasons_of_a_lagging_replica(
    log: Entry, firing: dict[str, float], quiet: dict[str, float | None], replica: str, expected: str | None
) -> None:
    got = dedup_reason(
        log, firing, set(), now=T0, repeat_interval=4 * 3600, send_resolved=True, replica=replica, quiet=quiet
    )
    assert got == expected


def test_an_entry_from_a_newer_alertd_with_unknown_fields_still_loads() -> None:
    doc = {**entry(firing=["a"]).to_dict(), "acked_by": "ana"}
    assert Entry.from_dict(doc).firing == ["a"]
    assert new_episodes(Entry.from_dict(doc), {"a": T0}, replica="r1") == set()


async def test_an_alert_paged_then_silenced_still_gets_its_resolved_notice_after_its_group_spoke_again(
    sink: Sink, store: SqliteStore
) -> None:
    """A was paged, then silenced; B joins the group and is paged; A ends while silenced. The
    receiver was told A fires and never told otherwise: the resolved notice is owed."""

    class Silence:
        muted: set[str] = set()

        def mutes(self, labels: Any, now: float) -> list[str]:
            return ["s1"] if labels.get("queue") in self.muted else []

    silence = Silence()
    clock = VirtualClock(start=T0)
    n = Notifier(load_config(text=receiver_config(sink)), store, clock, silences=silence, replica="r1")
    a, b = make_alert("QueueLong", queue="a"), make_alert("QueueLong", queue="b", starts_at=T0 + 20)

    async def until(t: float, alerts: list[Alert]) -> None:
        while clock.now() < T0 + t:
            clock.advance(1)
            n.put(alerts)
            await n.flush_due()

    await until(GROUP_WAIT + 1, [a])
    silence.muted.add("a")
    await until(30, [a, b])
    await until(60, [make_alert("QueueLong", AlertState.RESOLVED, queue="a"), b])
    posts = sink_posts(sink, "/team")
    assert [p["title"] for p in posts][:2] == ["[FIRING:1] QueueLong", "[FIRING:1] QueueLong"]
    assert "queue=b" in posts[1]["message"] and "queue=a" not in posts[1]["message"]
    assert len(posts) == 3 and "(some resolved)" in posts[2]["message"]
    assert "RESOLVED: QueueLong queue=a is resolved" in posts[2]["message"]


def test_a_stored_alert_with_a_bad_quiet_since_loads_as_unknown() -> None:
    a = make_alert("QueueLong", queue="q1")
    a.quiet_since = T0 - 60
    assert Alert.from_dict(a.to_dict()).quiet_since == T0 - 60
    for bad in ("soon", True, None, [1]):
        assert Alert.from_dict({**a.to_dict(), "quiet_since": bad}).quiet_since is None
