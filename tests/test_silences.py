"""Silences on a virtual clock: Alertmanager's state and update rules one by one, queries,
purge after retention, maintenance windows in a zone, and replicas sharing one Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from alertd.clock import VirtualClock
from alertd.matchers import parse_matcher, parse_matchers
from alertd.silence.silences import NotFound, SilenceError, Silences, State
from alertd.store.base import HistoryQuery, Store
from alertd.store.open import open_store
from tests.api_fixtures import store_url_fixture  # noqa: F401 (registers the fixture)
from tests.waiting import T0

H = 3600.0
PAY = [parse_matcher('queue="payments"')]


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = open_store(store_url)
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def silences(store: Store) -> Silences:
    s = Silences(store, VirtualClock(start=T0), retention=2 * H)
    await s.load()
    return s


def clock(s: Silences) -> VirtualClock:
    assert isinstance(s.clock, VirtualClock)
    return s.clock


async def add(s: Silences, start: float, end: float, matchers: list = PAY, sid: str | None = None, **kw: str) -> str:  # type: ignore[type-arg]
    return await s.upsert(
        matchers,
        start,
        end,
        created_by=kw.get("by", "ana"),
        comment=kw.get("comment", "deploy"),
        author=kw.get("by", "ana"),
        silence_id=sid,
    )


async def test_states_follow_the_clock(silences: Silences) -> None:
    sid = await add(silences, T0 + H, T0 + 2 * H)
    s = silences.get(sid)
    assert s.state(T0) is State.PENDING
    assert silences.mutes({"queue": "payments"}, T0) == []
    clock(silences).advance(H)
    assert s.state(clock(silences).now()) is State.ACTIVE
    assert silences.mutes({"queue": "payments"}, clock(silences).now()) == [sid]
    clock(silences).advance(H)
    assert s.state(clock(silences).now()) is State.EXPIRED
    assert silences.mutes({"queue": "payments"}, clock(silences).now()) == []


async def test_a_new_silence_never_starts_in_the_past(silences: Silences) -> None:
    sid = await add(silences, T0 - 10 * H, T0 + H)
    assert silences.get(sid).starts_at == T0


async def test_pending_silence_updates_in_place_even_its_start(silences: Silences) -> None:
    sid = await add(silences, T0 + H, T0 + 2 * H)
    assert await add(silences, T0 + 30 * 60, T0 + 3 * H, sid=sid, comment="moved") == sid
    s = silences.get(sid)
    assert (s.starts_at, s.ends_at, s.comment) == (T0 + 30 * 60, T0 + 3 * H, "moved")


async def test_pending_silence_moved_into_the_past_is_replaced(silences: Silences) -> None:
    sid = await add(silences, T0 + H, T0 + 2 * H)
    new = await add(silences, T0 - H, T0 + 2 * H, sid=sid)
    assert new != sid
    assert silences.get(sid).state(T0) is State.EXPIRED
    assert silences.get(new).starts_at == T0


async def test_active_silence_comment_and_end_update_in_place(silences: Silences) -> None:
    sid = await add(silences, T0, T0 + H)
    clock(silences).advance(60)
    assert await add(silences, T0, T0 + 5 * H, sid=sid, comment="longer") == sid
    assert silences.get(sid).ends_at == T0 + 5 * H
    # shortening to now-or-later is an update too; shortening into the past is not allowed
    assert await add(silences, T0, T0 + 120, sid=sid) == sid
    with pytest.raises(SilenceError, match="in the past"):
        await add(silences, T0, T0 + 30, sid=sid)


async def test_active_silence_new_start_or_matchers_expire_it_and_make_a_new_id(silences: Silences) -> None:
    sid = await add(silences, T0, T0 + H)
    clock(silences).advance(60)
    moved = await add(silences, T0 + 30, T0 + H, sid=sid)
    assert moved != sid and silences.get(sid).state(clock(silences).now()) is State.EXPIRED
    rematched = await add(silences, T0, T0 + H, matchers=parse_matchers(['queue=~"pay.*"']), sid=moved)
    assert rematched != moved
    now = clock(silences).now()
    assert silences.mutes({"queue": "payments"}, now) == [rematched]
    history = [e.reason for e in await silences.store.history(HistoryQuery(kind="api"))]
    assert history.count("silence expired (replaced)") == 2


async def test_an_expired_silence_is_never_updated_in_place(silences: Silences) -> None:
    sid = await add(silences, T0, T0 + H)
    await silences.expire(sid, "ana")
    again = await add(silences, T0, T0 + H, sid=sid, comment="revived")
    assert again != sid
    assert silences.get(sid).state(T0) is State.EXPIRED and silences.get(again).comment == "revived"


async def test_expiring_a_pending_silence_keeps_it_from_ever_starting(silences: Silences) -> None:
    sid = await add(silences, T0 + H, T0 + 2 * H)
    await silences.expire(sid, "bo")
    clock(silences).advance(1.5 * H)
    assert silences.mutes({"queue": "payments"}, clock(silences).now()) == []
    assert silences.get(sid).state(clock(silences).now()) is State.EXPIRED


@pytest.mark.parametrize(
    ("matchers", "start", "end", "message"),
    [
        ([], T0, T0 + H, "at least one matcher"),
        (['queue=~".*"', 'task!="x"'], T0, T0 + H, "match every alert"),
        (['queue="a"'], T0 + H, T0 + H, "endsAt must be after startsAt"),
        (['queue="a"'], T0 - 2 * H, T0 - H, "endsAt is in the past"),
    ],
)
async def test_refused_silences_say_why_and_store_nothing(
    silences: Silences, matchers: list[str], start: float, end: float, message: str
) -> None:
    with pytest.raises(SilenceError, match=message):
        await add(silences, start, end, matchers=parse_matchers(matchers))
    assert await silences.store.all("silence") == []


async def test_unknown_ids_are_not_found(silences: Silences) -> None:
    with pytest.raises(NotFound):
        await add(silences, T0, T0 + H, sid="00000000-0000-0000-0000-000000000000")
    with pytest.raises(NotFound):
        await silences.expire("nope", "ana")


async def test_query_filters_like_amtool(silences: Silences) -> None:
    pay = await add(silences, T0, T0 + H, matchers=parse_matchers(['queue="payments"', 'severity="critical"']))
    etl = await add(silences, T0, T0 + H, matchers=parse_matchers(['queue="etl"']))
    old = await add(silences, T0, T0 + H, matchers=parse_matchers(['queue="old"']))
    await silences.expire(old, "ana")
    assert [s.id for s in silences.query(parse_matchers(['queue="payments"']))] == [pay]
    assert {s.id for s in silences.query(parse_matchers(['queue=~"pay.*|etl"']))} == {pay, etl}
    assert [s.id for s in silences.query(parse_matchers(['severity="critical"', 'queue="etl"']))] == []
    assert old not in {s.id for s in silences.query(include_expired=False)}
    assert old in {s.id for s in silences.query()}


async def test_expired_silences_are_purged_after_retention(silences: Silences) -> None:
    sid = await add(silences, T0, T0 + H)
    await silences.expire(sid, "ana")
    assert await silences.store.purge(T0 + H) == 0  # retention is 2 h after expiry
    assert await silences.refresh() is False
    assert await silences.store.purge(T0 + 2 * H + 1) >= 1
    assert await silences.refresh() is True  # purge bumps the version: every replica forgets it
    with pytest.raises(NotFound):
        silences.get(sid)


async def test_maintenance_window_in_a_zone(silences: Silences) -> None:
    # Sunday 02:00-04:00 in Tokyo is Saturday 17:00-19:00 UTC
    mw = await silences.add_maintenance(
        parse_matchers(['queue="etl"']),
        [{"weekdays": ["sunday"], "times": [{"start_time": "02:00", "end_time": "04:00"}], "location": "Asia/Tokyo"}],
        comment="weekly reload",
        created_by="ops",
        author="ops",
    )
    saturday_1800_utc = 1_700_330_400.0  # 2023-11-18 18:00 UTC
    assert silences.mutes({"queue": "etl"}, saturday_1800_utc) == [mw]
    assert silences.mutes({"queue": "etl"}, saturday_1800_utc + 2 * H) == []
    assert silences.mutes({"queue": "other"}, saturday_1800_utc) == []
    listed = silences.maintenance()
    assert [(m.id, m.comment, m.created_by) for m in listed] == [(mw, "weekly reload", "ops")]
    assert listed[0].state(saturday_1800_utc) == "active" and listed[0].state(T0) == "scheduled"
    with pytest.raises(SilenceError):
        await silences.add_maintenance(
            PAY,
            [{"times": [{"start_time": "02:00", "end_time": "04:00"}], "location": "Mars/Olympus"}],
            comment="",
            created_by="",
            author="",
        )
    await silences.expire_maintenance(mw, "ops")
    assert silences.mutes({"queue": "etl"}, saturday_1800_utc) == []
    assert silences.maintenance()[0].state(saturday_1800_utc) == "expired"
    reasons = [e.reason for e in await silences.store.history(HistoryQuery(kind="api"))]
    assert reasons == ["maintenance window expired", "maintenance window created"]


async def test_days_of_month_window_and_reload_from_the_store(silences: Silences) -> None:
    mw = await silences.add_maintenance(
        parse_matchers(['alertname="Backup"']),
        [{"days_of_month": ["-1"], "location": "UTC"}],  # the last day of every month
        comment="month-end",
        created_by="ops",
        author="ops",
    )
    fresh = Silences(silences.store, silences.clock)
    await fresh.load()
    nov_30 = 1_701_302_400.0 + 60  # 2023-11-30 00:01 UTC
    assert fresh.mutes({"alertname": "Backup"}, nov_30) == [mw]
    assert fresh.mutes({"alertname": "Backup"}, nov_30 - 86400) == []


async def test_two_replicas_on_one_redis_see_each_other_and_claim_exclusively(redis_url: str, unique: str) -> None:
    url = f"{redis_url}?prefix=alertd-ha-{unique}:"
    a, b = open_store(url), open_store(url)
    await a.open()
    await b.open()
    try:
        clk = VirtualClock(start=T0)
        sa, sb = Silences(a, clk), Silences(b, clk)
        await sa.load()
        await sb.load()
        sid = await add(sa, T0, T0 + H)
        assert await sb.refresh() and sb.mutes({"queue": "payments"}, T0) == [sid]
        await sb.expire(sid, "bo")
        assert await sa.refresh() and sa.mutes({"queue": "payments"}, T0) == []
        mw = await sb.add_maintenance(PAY, [{"weekdays": ["tuesday"]}], comment="", created_by="bo", author="bo")
        assert await sa.refresh() and sa.mutes({"queue": "payments"}, T0) == [mw]
        # claims: one owner at a time; the holder renews; after the TTL another replica takes over
        assert await a.claim(f"group:{unique}", "replica-a", ttl=0.3, now=T0)
        assert not await b.claim(f"group:{unique}", "replica-b", ttl=0.3, now=T0)
        assert await a.claim(f"group:{unique}", "replica-a", ttl=0.3, now=T0)
        await asyncio.sleep(0.35)
        assert await b.claim(f"group:{unique}", "replica-b", ttl=0.3, now=T0 + 1)
        assert not await a.claim(f"group:{unique}", "replica-a", ttl=0.3, now=T0 + 1)
    finally:
        await a.close()
        await b.close()
