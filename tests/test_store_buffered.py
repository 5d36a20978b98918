"""The store fails open: with its backend down (a private redis-server killed, a SQLite file locked
by another process), alertd's own writes are kept and replayed, reads answer from what it knows,
claims are granted, silences are refused at once; the probe notices the backend's return on the
injected clock. One log line when it goes down, one when it is back."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from alertd.clock import VirtualClock
from alertd.nflog import Entry
from alertd.store.base import HistoryEntry, HistoryQuery, StoreUnavailable
from alertd.store.buffered import BufferedStore
from alertd.store.open import open_store
from alertd.store.sqlite import SqliteStore
from tests.conftest import RedisServer
from tests.waiting import T0

LOGGER = "alertd.store.buffered"


def nflog(group: str, at: float, firing: list[str]) -> dict[str, Any]:
    return Entry("hook", group, firing, [], at, "first notification").to_dict()


def outage_lines(caplog: pytest.LogCaptureFixture) -> tuple[list[str], list[str]]:
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    return [m for m in lines if " unreachable (" in m], [m for m in lines if " is back after " in m]


async def until(predicate: Any, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def tick(clock: VirtualClock, seconds: int = 1, pause: float = 0.05) -> None:
    """Move virtual time a second at a time, letting the probe (asleep on the clock) run between."""
    for _ in range(seconds):
        await asyncio.sleep(pause)
        clock.advance(1)
    await asyncio.sleep(pause)


@pytest.fixture
async def redis_store(redis_server: RedisServer) -> AsyncIterator[tuple[BufferedStore, VirtualClock]]:
    clock = VirtualClock(start=T0)
    store = BufferedStore(open_store(redis_server.url), clock, url=redis_server.url)
    await store.open()
    yield store, clock
    await store.close()


async def test_redis_killed_own_state_is_kept_silences_refused_and_all_replayed_when_back(
    redis_store: tuple[BufferedStore, VirtualClock], redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    store, clock = redis_store
    caplog.set_level(logging.INFO, logger=LOGGER)
    await store.put("nflog", "hook|g1", nflog("g1", T0, ["a"]))
    await store.put("nflog", "hook|g2", nflog("g2", T0, ["b"]))
    assert store.up and await store.claim("send:g0", "r1", 60, T0)

    redis_server.kill()
    # The first call to fail notices the outage, and is itself kept: nothing raises.
    await store.put("nflog", "hook|g1", nflog("g1", T0 + 10, ["a", "c"]))
    assert not store.up and store.down_since == T0 and store.outages_total == 1
    await store.put("nflog", "hook|g2", nflog("g2", T0 + 11, ["b", "d"]))  # older than what replica B writes
    await store.record(HistoryEntry(ts=T0 + 10, kind="sent", receiver="hook", group_key="g1", reason="new"))
    await store.put("rule_state", "engine", {"timers": [1, 2]})

    # Reads answer from what this process last read or wrote: the notifier keeps its dedup state.
    assert (await store.get("nflog", "hook|g1"))["firing"] == ["a", "c"]  # type: ignore[index]
    assert (await store.get("rule_state", "engine")) == {"timers": [1, 2]}
    assert await store.get("nflog", "hook|unknown") is None  # never told: the notifier sends

    # Claims fail open (two replicas may both send), counted; a release has nothing to give back.
    assert await store.claim("send:g1", "r1", 60, T0 + 10) and await store.claim("send:g1", "r2", 60, T0 + 10)
    assert store.claims_failed_open_total == 2
    await store.release("send:g1", "r1")

    # What users own is refused at once, with one line saying what and why.
    started = time.monotonic()
    for _ in range(20):
        with pytest.raises(StoreUnavailable) as refused:
            await store.put("silence", "s1", {"id": "s1"})
        with pytest.raises(StoreUnavailable):
            await store.history(HistoryQuery())
        with pytest.raises(StoreUnavailable):
            await store.version("silence")
        with pytest.raises(StoreUnavailable):
            await store.all("maintenance")
    assert time.monotonic() - started < 1.0
    message = str(refused.value)
    assert message.startswith(f"store unavailable: store {redis_server.url} unreachable") and "\n" not in message
    assert "ConnectionError" in message  # the backend's reason
    assert store.buffered == 4 and store.writes_buffered_total == 4

    # The probe keeps failing, quietly, while the server is gone.
    await tick(clock, 5)
    assert not store.up

    # The server is back (empty: it keeps nothing on disk), and replica B has sent for g2 since.
    redis_server.start()
    other = open_store(redis_server.url)
    await other.open()
    try:
        await other.put("nflog", "hook|g2", nflog("g2", T0 + 20, ["b", "d", "e"]))
        # Calls between two probes do not go to the backend: without a probe, nothing lands.
        await store.put("observer", "state", {"workers": 3})
        await asyncio.sleep(0.1)
        assert not store.up and await other.get("nflog", "hook|g1") is None

        await tick(clock)
        await until(lambda: store.up, "the probe to see the store back")
        assert store.down_since is None and store.buffered == 0
        assert (await other.get("nflog", "hook|g1"))["firing"] == ["a", "c"]  # type: ignore[index]
        # replica B's later send is not replaced by this replica's older one
        assert (await other.get("nflog", "hook|g2"))["at"] == T0 + 20  # type: ignore[index]
        assert store.replays_skipped_newer_total == 1
        assert (await store.get("nflog", "hook|g2"))["firing"] == ["b", "d", "e"]  # type: ignore[index]
        assert await other.get("rule_state", "engine") == {"timers": [1, 2]}
        assert await other.get("observer", "state") == {"workers": 3}
        assert [(e.kind, e.group_key) for e in await other.history(HistoryQuery())] == [("sent", "g1")]
        assert store.writes_replayed_total == 5

        # Up again: claims are real again, silences are written.
        assert await store.claim("send:g3", "r1", 60, T0 + 30) and not await store.claim("send:g3", "r2", 60, T0 + 30)
        await store.put("silence", "s1", {"id": "s1"})
        assert await other.all("silence") == [{"id": "s1"}]
    finally:
        await other.close()

    down, back = outage_lines(caplog)
    assert len(down) == 1 and len(back) == 1, (down, back)
    assert redis_server.url in down[0] and "ConnectionError" in down[0]
    assert "after 6s" in back[0] and "5 buffered writes replayed" in back[0]


async def test_a_second_outage_is_a_second_line_pair_and_the_buffer_is_bounded(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    clock = VirtualClock(start=T0)
    # as configured, with a password (this test server has none): never shown
    url = f"redis://:hunter2-store-secret@127.0.0.1:{redis_server.port}/0"
    store = BufferedStore(open_store(redis_server.url), clock, url=url, max_buffered=3)
    await store.open()
    caplog.set_level(logging.INFO, logger=LOGGER)
    try:
        for outage in range(2):
            redis_server.kill()
            for i in range(5):
                await store.put("nflog", f"hook|g{i}", nflog(f"g{i}", T0 + i, ["a"]))
            assert store.buffered == 3  # the oldest two were given up
            redis_server.start()
            await tick(clock)
            await until(lambda: store.up, f"the store back after outage {outage + 1}")
        assert store.outages_total == 2 and store.writes_dropped_total == 4
        replayed = await store.backend.all("nflog")
        assert sorted(d["group_key"] for d in replayed) == ["g2", "g3", "g4"]
    finally:
        await store.close()
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert sum(" unreachable (" in m for m in lines) == 2 and sum(" is back after " in m for m in lines) == 2
    assert sum("oldest are dropped" in m for m in lines) == 2  # once per outage, not per write
    assert all(f"redis://***@127.0.0.1:{redis_server.port}/0" in m for m in lines)
    assert not any("hunter2" in m for m in lines)


async def test_sqlite_locked_by_another_process_fails_open_and_replays_once_unlocked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = VirtualClock(start=T0)
    path = tmp_path / "state.db"
    backend = SqliteStore(path)
    store = BufferedStore(backend, clock, url=f"sqlite:///{path}")
    await store.open()
    # SQLite waits busy_timeout for a lock, on the event loop; short here so the test is quick
    backend.db.execute("PRAGMA busy_timeout=50")
    caplog.set_level(logging.INFO, logger=LOGGER)
    await store.put("nflog", "hook|g1", nflog("g1", T0, ["a"]))

    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # a backup tool or a second alertd holding the write lock
    try:
        await store.put("nflog", "hook|g1", nflog("g1", T0 + 5, ["a", "b"]))
        assert not store.up and "locked" in store.reason
        await store.record(HistoryEntry(ts=T0 + 5, kind="sent", receiver="hook", group_key="g1"))
        # a write the backend can never take (not JSON) is dropped at replay, not retried forever
        await store.record(HistoryEntry(ts=T0 + 5, kind="sent", detail={"not json": {1, 2}}))
        assert (await store.get("nflog", "hook|g1"))["firing"] == ["a", "b"]  # type: ignore[index]
        assert await store.claim("send:g1", "r1", 60, T0 + 5)
        with pytest.raises(StoreUnavailable, match=r"store unavailable: store sqlite:///.*locked"):
            await store.put("silence", "s1", {"id": "s1"})
        with pytest.raises(StoreUnavailable):
            await store.history(HistoryQuery())
        await tick(clock, 10)  # probes write the buffer back, and fail while the lock is held
        assert not store.up and store.buffered == 3
    finally:
        locker.execute("COMMIT")
        locker.close()
    await tick(clock, 5)
    await until(lambda: store.up, "the store back once the lock is released")
    assert (await backend.get("nflog", "hook|g1"))["firing"] == ["a", "b"]  # type: ignore[index]
    assert [e.group_key for e in await backend.history(HistoryQuery())] == ["g1"]
    assert store.writes_dropped_total == 1
    await store.close()
    down, back = outage_lines(caplog)
    assert len(down) == 1 and len(back) == 1, (down, back)
    assert "2 buffered writes replayed" in back[0]
    assert sum("cannot be replayed" in r.getMessage() for r in caplog.records) == 1


async def test_writes_left_at_shutdown_are_tried_once_and_counted_in_the_log(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    clock = VirtualClock(start=T0)
    store = BufferedStore(open_store(redis_server.url), clock, url=redis_server.url)
    await store.open()
    caplog.set_level(logging.INFO, logger=LOGGER)
    redis_server.kill()
    await store.record(HistoryEntry(ts=T0, kind="sent"))
    started = time.monotonic()
    await store.close()
    assert time.monotonic() - started < 3.0
    assert any("1 buffered writes are lost" in r.getMessage() for r in caplog.records if r.name == LOGGER)


async def test_a_replayed_log_entry_loses_to_a_later_attempt_of_the_other_replica(
    redis_store: tuple[BufferedStore, VirtualClock], redis_server: RedisServer
) -> None:
    """An entry is as new as its last send or its last attempt: replica B's attempt (what it may
    have told) after this replica's buffered send must not be overwritten by the replay."""
    store, clock = redis_store
    await store.put("nflog", "hook|g", nflog("g", T0, ["a"]))
    redis_server.kill()
    await store.put("nflog", "hook|g", nflog("g", T0 + 20, ["a", "b"]))
    assert not store.up
    redis_server.start()
    other = open_store(redis_server.url)
    await other.open()
    try:
        await other.put("nflog", "hook|g", {**nflog("g", T0 + 5, ["a"]), "attempted_at": T0 + 30})
        await tick(clock)
        await until(lambda: store.up, "the probe to see the store back")
        assert (await other.get("nflog", "hook|g"))["attempted_at"] == T0 + 30  # type: ignore[index]
        assert store.replays_skipped_newer_total == 1
    finally:
        await other.close()
