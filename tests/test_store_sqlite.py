"""The SQLite store on a real file: documents, versions, expiry, history, claims, migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from alertd.store.base import HistoryEntry, HistoryQuery
from alertd.store.sqlite import SCHEMA_VERSION, SqliteStore


@pytest.fixture
async def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = SqliteStore(tmp_path / "state.db")
    await s.open()
    yield s
    await s.close()


async def test_documents_survive_reopen_and_bump_versions(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "state.db")
    await s.open()
    assert await s.version("silence") == 0
    await s.put("silence", "a", {"id": "a", "comment": "deploy"})
    await s.put("silence", "b", {"id": "b"})
    await s.delete("silence", "b")
    assert await s.version("silence") == 3
    await s.close()
    s2 = SqliteStore(tmp_path / "state.db")
    await s2.open()
    assert await s2.all("silence") == [{"id": "a", "comment": "deploy"}]
    assert await s2.get("silence", "a") == {"id": "a", "comment": "deploy"}
    assert await s2.get("silence", "b") is None
    await s2.close()


async def test_purge_drops_only_expired(store: SqliteStore) -> None:
    await store.put("nflog", "old", {"x": 1}, expires_at=100.0)
    await store.put("nflog", "new", {"x": 2}, expires_at=300.0)
    await store.put("nflog", "forever", {"x": 3})
    assert await store.purge(200.0) == 1
    assert sorted(d["x"] for d in await store.all("nflog")) == [2, 3]


async def test_history_filters_newest_first(store: SqliteStore) -> None:
    for i, (kind, recv, names) in enumerate(
        [("sent", "ops", ["A"]), ("failed", "ops", ["B"]), ("sent", "pager", ["A", "C"]), ("silenced", "ops", ["C"])]
    ):
        await store.record(HistoryEntry(ts=1000.0 + i, kind=kind, receiver=recv, alertnames=names))
    assert [e.ts for e in await store.history(HistoryQuery())] == [1003.0, 1002.0, 1001.0, 1000.0]
    assert [e.kind for e in await store.history(HistoryQuery(receiver="ops", kind="sent"))] == ["sent"]
    assert [e.ts for e in await store.history(HistoryQuery(alertname="C"))] == [1003.0, 1002.0]
    assert [e.ts for e in await store.history(HistoryQuery(since=1001.0, until=1002.0))] == [1002.0, 1001.0]
    assert len(await store.history(HistoryQuery(limit=2))) == 2
    assert all(e.id is not None for e in await store.history(HistoryQuery()))


async def test_claims_are_exclusive_until_they_expire(store: SqliteStore) -> None:
    assert await store.claim("group-1", "replica-a", ttl=60, now=1000.0)
    assert await store.claim("group-1", "replica-a", ttl=60, now=1010.0)  # ours: renew
    assert not await store.claim("group-1", "replica-b", ttl=60, now=1030.0)
    assert await store.claim("group-1", "replica-b", ttl=60, now=1071.0)  # a's claim lapsed


async def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(RuntimeError, match="newer than this alertd"):
        await SqliteStore(path).open()
