"""One contract, two backends: SQLite (embedded) and Redis (shared by replicas), on real servers;
plus silences on both, across two instances, and state that survives kill -9."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from alertd.clock import VirtualClock
from alertd.matchers import parse_matcher
from alertd.silence.silences import SilenceError, Silences, State
from alertd.store.base import HistoryEntry, HistoryQuery, Store
from alertd.store.open import open_store
from tests.conftest import ROOT
from tests.waiting import T0


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path, redis_url: str, unique: str) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    return f"{redis_url}?prefix=alertd-test-{unique}:"


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = open_store(store_url)
    await s.open()
    yield s
    await s.close()


async def test_documents_versions_and_expiry(store: Store) -> None:
    v0 = await store.version("silence")
    await store.put("silence", "a", {"id": "a"}, expires_at=T0 + 10)
    await store.put("silence", "b", {"id": "b"})
    await store.delete("silence", "b")
    assert await store.version("silence") == v0 + 3
    assert await store.all("silence") == [{"id": "a"}]
    assert await store.purge(T0 + 5) == 0
    assert await store.purge(T0 + 11) >= 1
    assert await store.get("silence", "a") is None


async def test_history_filters_newest_first(store: Store) -> None:
    for i in range(5):
        await store.record(
            HistoryEntry(ts=T0 + i, kind="sent" if i % 2 else "silenced", receiver="r", alertnames=[f"A{i}"])
        )
    got = await store.history(HistoryQuery(kind="sent"))
    assert [e.ts for e in got] == [T0 + 3, T0 + 1]
    assert [e.alertnames for e in await store.history(HistoryQuery(alertname="A4"))] == [["A4"]]
    assert len(await store.history(HistoryQuery(since=T0 + 2, limit=2))) == 2


async def test_claims_are_exclusive_and_expire(store: Store) -> None:
    assert await store.claim("send:x", "r1", ttl=0.3, now=T0)
    assert await store.claim("send:x", "r1", ttl=0.3, now=T0)  # already ours
    assert not await store.claim("send:x", "r2", ttl=0.3, now=T0)
    # after the TTL a crashed owner's claim is taken over (SQLite compares `now`, Redis its own clock)
    import asyncio

    await asyncio.sleep(0.4)
    assert await store.claim("send:x", "r2", ttl=0.3, now=T0 + 1)


async def test_a_released_claim_is_free_at_once_and_only_its_owner_releases_it(store: Store) -> None:
    assert await store.claim("send:y", "r1", ttl=60, now=T0)
    await store.release("send:y", "r2")  # not r2's: left alone
    assert not await store.claim("send:y", "r2", ttl=60, now=T0)
    await store.release("send:y", "r1")  # a graceful stop gives its claims back
    assert await store.claim("send:y", "r2", ttl=60, now=T0)


async def test_silence_lifecycle_and_alertmanager_update_rules(store: Store) -> None:
    clock = VirtualClock(start=T0)
    s = Silences(store, clock)
    await s.load()
    m = [parse_matcher('queue="payments"')]
    sid = await s.upsert(m, T0, T0 + 3600, created_by="ana", comment="deploy", author="ana")
    assert s.get(sid).state(clock.now()) is State.ACTIVE
    assert s.mutes({"queue": "payments", "alertname": "X"}, clock.now()) == [sid]
    assert s.mutes({"queue": "default"}, clock.now()) == []
    # extending an active silence keeps its id
    assert await s.upsert(m, T0, T0 + 7200, created_by="ana", comment="longer", author="ana", silence_id=sid) == sid
    # changing its matchers expires it and creates a new one
    new = await s.upsert(
        [parse_matcher('queue=~"pay.*"')], T0, T0 + 7200, created_by="ana", comment="x", author="ana", silence_id=sid
    )
    assert new != sid and s.get(sid).state(clock.now()) is State.EXPIRED
    with pytest.raises(SilenceError, match="already expired"):
        await s.expire(sid, "ana")
    with pytest.raises(SilenceError, match="endsAt must be after startsAt"):
        await s.upsert(m, T0 + 10, T0 + 5, created_by="a", comment="", author="a")
    with pytest.raises(SilenceError, match="match every alert"):
        await s.upsert([parse_matcher('queue=~".*"')], T0, T0 + 60, created_by="a", comment="", author="a")
    await s.expire(new, "bo")
    assert s.mutes({"queue": "payments"}, clock.now()) == []
    authors = [(e.author, e.reason) for e in await store.history(HistoryQuery(kind="api"))]
    assert ("bo", "silence expired") in authors and ("ana", "silence created") in authors


async def test_a_silence_made_on_one_replica_applies_on_the_other(store_url: str) -> None:
    if store_url.startswith("sqlite"):
        pytest.skip("replicas share state through Redis")
    clock = VirtualClock(start=T0)
    a, b = open_store(store_url), open_store(store_url)
    await a.open()
    await b.open()
    sa, sb = Silences(a, clock), Silences(b, clock)
    await sa.load()
    await sb.load()
    sid = await sa.upsert([parse_matcher('alertname="X"')], T0, T0 + 60, created_by="a", comment="", author="a")
    assert await sb.refresh()
    assert sb.mutes({"alertname": "X"}, T0 + 1) == [sid]
    assert not await sb.refresh()  # nothing changed since
    await a.close()
    await b.close()


async def test_maintenance_windows_act_as_silences(store: Store) -> None:
    clock = VirtualClock(start=1_700_000_000.0)  # 2023-11-14 22:13 UTC, a Tuesday
    s = Silences(store, clock)
    await s.load()
    mw = await s.add_maintenance(
        [parse_matcher('queue="etl"')],
        [{"weekdays": ["tuesday"], "times": [{"start_time": "22:00", "end_time": "23:00"}]}],
        comment="nightly load",
        created_by="ops",
        author="ops",
    )
    assert mw.startswith("mw-")
    assert s.mutes({"queue": "etl"}, clock.now()) == [mw]
    assert s.mutes({"queue": "etl"}, clock.now() + 3600) == []
    with pytest.raises(SilenceError, match="weekdays"):
        await s.add_maintenance(
            [parse_matcher('queue="etl"')], [{"weekdays": ["caturday"]}], comment="", created_by="", author=""
        )
    await s.expire_maintenance(mw, "ops")
    assert s.mutes({"queue": "etl"}, clock.now()) == []


def test_silences_and_history_survive_kill_9(store_url: str, tmp_path: Path) -> None:
    """A writer process creates a silence and records history, then is SIGKILLed mid-life."""
    script = tmp_path / "writer.py"
    script.write_text(
        textwrap.dedent(f"""
        import asyncio, os, signal, time
        from alertd.clock import WallClock
        from alertd.matchers import parse_matcher
        from alertd.silence.silences import Silences
        from alertd.store.open import open_store

        async def main():
            store = open_store({store_url!r})
            await store.open()
            s = Silences(store, WallClock())
            await s.load()
            sid = await s.upsert([parse_matcher('queue="q"')], time.time(), time.time() + 3600,
                                 created_by="w", comment="before kill", author="w")
            print(sid, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)  # no close, no flush
        asyncio.run(main())
    """)
    )
    proc = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == -9, proc.stderr
    sid = proc.stdout.strip()

    import asyncio

    async def reopen() -> None:
        store = open_store(store_url)
        await store.open()
        s = Silences(store, VirtualClock(start=__import__("time").time()))
        await s.load()
        assert s.get(sid).comment == "before kill"
        assert [e.reason for e in await store.history(HistoryQuery(kind="api"))] == ["silence created"]
        await store.close()

    asyncio.run(reopen())


async def test_schema_version_is_written_and_a_newer_one_refused(store_url: str) -> None:
    s = open_store(store_url)
    await s.open()
    await s.close()
    if store_url.startswith("sqlite"):
        import sqlite3

        from alertd.store.sqlite import SCHEMA_VERSION

        path = store_url.split(":///", 1)[1]
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
        db.close()
    else:
        import redis

        from alertd.store.redis import SCHEMA_VERSION, RedisStore

        prefix = RedisStore.from_url(store_url).prefix
        r = redis.Redis.from_url(store_url.split("?")[0])
        assert int(r.get(prefix + "schema") or 0) == SCHEMA_VERSION
        r.set(prefix + "schema", SCHEMA_VERSION + 1)
    with pytest.raises(RuntimeError, match="newer than this alertd"):
        await open_store(store_url).open()
