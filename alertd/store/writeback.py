"""The local half of a BufferedStore: what it keeps through a store outage, and the write-back.

Writes of alertd's own state wait in a bounded buffer, in replay order (a document written twice
keeps only its last write); the documents the notifier reads on every flush are cached as they
are read or written. Once the backend answers, `_write_back` replays the buffer in order; a
replayed document never replaces a newer one another replica wrote meanwhile (NEWEST_WINS).
"""

from __future__ import annotations

import logging
import sqlite3
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

from alertd.store.base import HistoryEntry, Store

log = logging.getLogger("alertd.store.buffered")  # the store's one log: its outage lines and these

# What the notifier reads on every flush, cached as it is read or written. Rule and observer state
# are read once at start and written whole every few seconds (the observer's can be megabytes):
# not worth a second copy; while down, their last buffered write answers a read.
CACHED_KINDS = frozenset({"nflog"})
# Documents of these kinds carry time fields; a replayed one never replaces a newer one that
# another replica wrote to the backend meanwhile. A notification log entry is as new as its last
# send or its last attempt, whichever is later (an attempt records what may have been told).
NEWEST_WINS: dict[str, tuple[str, ...]] = {"nflog": ("at", "attempted_at")}

MAX_BUFFERED = 10_000
MAX_CACHED = 10_000


def _backend_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError, TimeoutError, sqlite3.OperationalError]
    try:
        import redis.exceptions
    except ImportError:  # pragma: no cover - redis is a dependency, but the SQLite path needs none of it
        pass
    else:
        errors.append(redis.exceptions.RedisError)
    return tuple(errors)


# Connection refused or reset, timeouts, Redis errors (LOADING, READONLY after a failover, OOM),
# SQLite's locked / read-only / disk full. Anything else is a bug and propagates as before.
BACKEND_ERRORS = _backend_errors()


@dataclass
class _Write:
    """One buffered write. Documents are serialized when written, as the backend would."""

    op: str  # put | delete | record
    kind: str = ""
    key: str = ""
    blob: bytes = b""
    expires_at: float | None = None
    entry: HistoryEntry | None = None


class WriteBack:
    """The buffer, the read cache and the replay of a BufferedStore (its base: one store, one state)."""

    def __init__(self, backend: Store, name: str, max_buffered: int, max_cached: int) -> None:
        self.backend = backend
        self.name = name
        self.max_buffered = max_buffered
        self.max_cached = max_cached
        self.writes_buffered_total = 0
        self.writes_replayed_total = 0
        self.writes_dropped_total = 0  # buffer full: the oldest buffered writes are given up
        self.replays_skipped_newer_total = 0
        # Insertion order is replay order; a document written twice keeps only its last write,
        # moved to the end, so the buffer is bounded by distinct keys, not by write rate.
        self._pending: OrderedDict[tuple[str, ...], _Write] = OrderedDict()
        self._history_seq = 0
        self._cache: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._outage_replayed = 0
        self._dropped_logged = False

    @property
    def buffered(self) -> int:
        """Writes waiting for the backend."""
        return len(self._pending)

    async def _write_back(self) -> None:
        """Replay the buffer in order; a backend error stops it (raised), the rest stays buffered."""
        while self._pending:
            key, write = next(iter(self._pending.items()))
            try:
                await self._apply(write)
            except BACKEND_ERRORS:
                raise
            except Exception:
                # Not an outage: this write can never be replayed (a bug, a document the
                # backend refuses). Dropped, or it would keep the store "down" for good.
                log.exception("store %s: a buffered %s write cannot be replayed; dropped", self.name, write.op)
                self.writes_dropped_total += 1
            else:
                self.writes_replayed_total += 1
                self._outage_replayed += 1
            # A newer write of the same document may have arrived during the await: it went
            # to the end of the buffer and stays there, to be replayed in its turn.
            if self._pending.get(key) is write:
                del self._pending[key]

    async def _apply(self, w: _Write) -> None:
        if w.op == "record":
            assert w.entry is not None
            await self.backend.record(w.entry)
        elif w.op == "delete":
            await self.backend.delete(w.kind, w.key)
        else:
            doc = orjson.loads(w.blob)
            fields = NEWEST_WINS.get(w.kind)
            if fields is not None:
                current = await self.backend.get(w.kind, w.key)
                # Read-then-write, not atomic: a replica writing in between wins or loses by the
                # order of two round trips. At worst a group is told twice (at-least-once).
                if current is not None and _time(current, fields) > _time(doc, fields):
                    self.replays_skipped_newer_total += 1
                    self._remember(w.kind, w.key, orjson.dumps(current))
                    return
            await self.backend.put(w.kind, w.key, doc, w.expires_at)

    def _buffer(self, key: tuple[str, ...], w: _Write) -> None:
        self._pending.pop(key, None)
        self._pending[key] = w
        self.writes_buffered_total += 1
        while len(self._pending) > self.max_buffered:
            self._pending.popitem(last=False)
            self.writes_dropped_total += 1
            if not self._dropped_logged:
                self._dropped_logged = True
                log.error(
                    "store %s: more than %d writes buffered during the outage; the oldest are dropped",
                    self.name,
                    self.max_buffered,
                )

    def _remember(self, kind: str, key: str, blob: bytes) -> None:
        if kind not in CACHED_KINDS:
            return
        self._cache[(kind, key)] = blob
        self._cache.move_to_end((kind, key))
        while len(self._cache) > self.max_cached:
            self._cache.popitem(last=False)


def _time(doc: dict[str, Any], fields: tuple[str, ...]) -> float:
    values = [float(v) for v in (doc.get(f) for f in fields) if isinstance(v, int | float)]
    return max(values, default=float("-inf"))
