"""Fail-open in front of the real store: a store outage must not stop a page.

Alerting is at-least-once (Alertmanager's rule: when in doubt, send). Wrapped around the SQLite or
Redis backend, this store notices the first failing call, says so once, and from then on does not
touch the dead backend on each call (a connect timeout per call would stall every flush):

- writes of alertd's own state (the notification log, rule and observer state, history records)
  go to a bounded local buffer and are replayed in order once the backend answers again;
- reads of that state answer from a bounded write-through cache of the last documents read or
  written, so the notifier keeps its dedup knowledge through the outage (a miss answers None:
  "never told", which sends — a duplicate rather than a missed page);
- send claims are granted (replicas may both send; counted), releases are dropped;
- what users own (silences, maintenance windows, history queries) cannot be answered from here
  and raises StoreUnavailable, which the API turns into a 503.

A probe on the injected clock tries the backend about once a second; when it answers, the buffer
is replayed and the store is up again. One log line when it goes down, one when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import orjson

from alertd.clock import Clock
from alertd.durations import format_duration
from alertd.redact import redact_text, redact_url
from alertd.store.base import HistoryEntry, HistoryQuery, Store, StoreUnavailable
from alertd.store.writeback import BACKEND_ERRORS, CACHED_KINDS, MAX_BUFFERED, MAX_CACHED, WriteBack, _Write

log = logging.getLogger(__name__)

T = TypeVar("T")

# alertd's own state: kept locally through an outage. Everything else is the users' (silences,
# maintenance windows) and must not silently diverge between replicas, so it is refused.
INTERNAL_KINDS = frozenset({"nflog", "rule_state", "observer"})

PROBE_SECONDS = 1.0
CLOSE_REPLAY_SECONDS = 2.0  # a last replay attempt at shutdown must not hold the stop up


class BufferedStore(WriteBack):
    """A Store that fails open while its backend is down (see the module docstring); what it
    keeps locally meanwhile, and the write-back, are its base's (alertd.store.writeback)."""

    def __init__(
        self,
        backend: Store,
        clock: Clock,
        *,
        url: str = "",
        probe_seconds: float = PROBE_SECONDS,
        max_buffered: int = MAX_BUFFERED,
        max_cached: int = MAX_CACHED,
    ) -> None:
        super().__init__(backend, redact_url(url) if url else type(backend).__name__, max_buffered, max_cached)
        self.clock = clock
        password = urlsplit(url).password if url else None
        self._secrets = (password,) if password else ()
        self.probe_seconds = probe_seconds
        self.up = True
        self.down_since: float | None = None
        self.reason = ""  # why the last outage began, redacted
        self.outages_total = 0
        self.claims_failed_open_total = 0
        self._probe: asyncio.Task[None] | None = None
        self._opened = False

    # -- state -----------------------------------------------------------------------------

    def describe(self) -> str:
        """One line: which store, since when, why."""
        if self.up:
            return f"store {self.name} up"
        since = "" if self.down_since is None else f" for {format_duration(self.clock.now() - self.down_since)}"
        return f"store {self.name} unreachable{since}: {self.reason}"

    def _unavailable(self) -> StoreUnavailable:
        return StoreUnavailable(f"store unavailable: {self.describe()}")

    def _mark_down(self, e: BaseException) -> None:
        if not self.up:
            return
        self.up = False
        self.down_since = self.clock.now()
        text = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        self.reason = redact_text(" ".join(text.split()), self._secrets)[:300]
        self.outages_total += 1
        self._outage_replayed = 0
        self._dropped_logged = False
        log.error(
            "store %s unreachable (%s): notifications keep going out without HA dedup; alertd's own state "
            "is kept locally and written back when the store is back; silences cannot be changed meanwhile",
            self.name,
            self.reason,
        )
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._probe_loop(), name="store-probe")

    # -- the probe -------------------------------------------------------------------------

    async def _probe_loop(self) -> None:
        pause = self.probe_seconds
        logged = False
        while not self.up:
            await self.clock.sleep(pause)
            started = time.perf_counter()
            try:
                if await self._replay():
                    return
            except Exception:  # a bug must not end the probe, leaving the store down for good
                if not logged:
                    logged = True
                    log.exception("store %s: probe failed", self.name)
            # A backend that fails slowly *and* blocks (SQLite waits busy_timeout on the loop
            # for a lock) is probed less often, so the loop stays mostly free during the outage.
            pause = max(self.probe_seconds, 4 * (time.perf_counter() - started))

    async def _replay(self) -> bool:
        """Try the backend; write back what was buffered; True once up again."""
        try:
            if not self._opened:
                # never opened (alertd started during the outage): connect and migrate first
                with contextlib.suppress(*BACKEND_ERRORS):
                    await self.backend.close()
                await self.backend.open()
                self._opened = True
            if not self._pending:
                await self.backend.version("nflog")  # a cheap read; the buffer itself probes otherwise
            await self._write_back()
        except BACKEND_ERRORS:
            return False
        # No await since the buffer was seen empty: no write can slip between it and "up".
        downtime = self.clock.now() - (self.down_since or self.clock.now())
        self.up = True
        self.down_since = None
        log.warning(
            "store %s is back after %s: %d buffered writes replayed",
            self.name,
            format_duration(downtime),
            self._outage_replayed,
        )
        return True

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """A call of user-facing state: answered by the backend, or StoreUnavailable."""
        if not self.up:
            raise self._unavailable()
        try:
            return await fn()
        except BACKEND_ERRORS as e:
            self._mark_down(e)
            raise self._unavailable() from e

    # -- the Store protocol ----------------------------------------------------------------

    async def open(self) -> None:
        """Open the backend; if it is down, start down (the probe opens it when it answers).

        An alertd restarted during a store outage still pages: refusing to start would turn a
        store outage into an alerting outage. Errors that are not an outage (a schema newer than
        this alertd) still stop the start.
        """
        try:
            await self.backend.open()
        except BACKEND_ERRORS as e:
            self._opened = False
            self._mark_down(e)
        else:
            self._opened = True

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
            self._probe = None
        if self._pending:
            # One last try, bounded: a store that came back just now still gets the writes.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._replay(), CLOSE_REPLAY_SECONDS)
            if self._pending:
                log.error(
                    "store %s still unreachable at shutdown: %d buffered writes are lost", self.name, len(self._pending)
                )
        with contextlib.suppress(*BACKEND_ERRORS):
            await self.backend.close()

    async def put(self, kind: str, key: str, doc: dict[str, Any], expires_at: float | None = None) -> None:
        if kind not in INTERNAL_KINDS:
            await self._call(lambda: self.backend.put(kind, key, doc, expires_at))
            return
        if self.up:
            try:
                await self.backend.put(kind, key, doc, expires_at)
            except BACKEND_ERRORS as e:
                self._mark_down(e)
            else:
                if kind in CACHED_KINDS:
                    self._remember(kind, key, orjson.dumps(doc))
                return
        blob = orjson.dumps(doc)
        self._remember(kind, key, blob)
        self._buffer(("doc", kind, key), _Write("put", kind, key, blob, expires_at))

    async def get(self, kind: str, key: str) -> dict[str, Any] | None:
        if kind not in INTERNAL_KINDS:
            return await self._call(lambda: self.backend.get(kind, key))
        if self.up:
            try:
                doc = await self.backend.get(kind, key)
            except BACKEND_ERRORS as e:
                self._mark_down(e)
            else:
                if doc is None:
                    self._cache.pop((kind, key), None)
                elif kind in CACHED_KINDS:
                    self._remember(kind, key, orjson.dumps(doc))
                return doc
        pending = self._pending.get(("doc", kind, key))
        if pending is not None:
            return orjson.loads(pending.blob) if pending.op == "put" else None
        blob = self._cache.get((kind, key))
        # A fresh copy each time, as the backend gives: callers may change what they get.
        return orjson.loads(blob) if blob is not None else None

    async def all(self, kind: str) -> list[dict[str, Any]]:
        return await self._call(lambda: self.backend.all(kind))

    async def delete(self, kind: str, key: str) -> None:
        if kind not in INTERNAL_KINDS:
            await self._call(lambda: self.backend.delete(kind, key))
            return
        if self.up:
            try:
                await self.backend.delete(kind, key)
            except BACKEND_ERRORS as e:
                self._mark_down(e)
            else:
                self._cache.pop((kind, key), None)
                return
        self._cache.pop((kind, key), None)
        self._buffer(("doc", kind, key), _Write("delete", kind, key))

    async def version(self, kind: str) -> int:
        return await self._call(lambda: self.backend.version(kind))

    async def purge(self, now: float) -> int:
        return await self._call(lambda: self.backend.purge(now))

    async def record(self, entry: HistoryEntry) -> None:
        if self.up:
            try:
                await self.backend.record(entry)
            except BACKEND_ERRORS as e:
                self._mark_down(e)
            else:
                return
        self._history_seq += 1
        self._buffer(("history", str(self._history_seq)), _Write("record", entry=entry))

    async def history(self, query: HistoryQuery) -> list[HistoryEntry]:
        return await self._call(lambda: self.backend.history(query))

    async def claim(self, key: str, owner: str, ttl: float, now: float) -> bool:
        if self.up:
            try:
                return await self.backend.claim(key, owner, ttl, now)
            except BACKEND_ERRORS as e:
                self._mark_down(e)
        # Fail open: without the store no replica can know who sends, so every replica does.
        self.claims_failed_open_total += 1
        return True

    async def release(self, key: str, owner: str) -> None:
        if not self.up:
            return  # nothing was claimed in the backend during the outage; old claims expire by TTL
        try:
            await self.backend.release(key, owner)
        except BACKEND_ERRORS as e:
            self._mark_down(e)
