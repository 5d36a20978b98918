"""The store contract: one interface, two backends (SQLite embedded, Redis for replicas).

The store keeps JSON documents by (kind, key) — each package serializes its own models, so the
store knows nothing of silences or alerts — plus an append-only history and atomic claims for HA.
Kinds in use: "silence", "maintenance", "nflog", "alert", "rule_state".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


class StoreUnavailable(Exception):
    """The state store cannot answer, and what was asked cannot be answered or kept locally.

    The message is one line meant for an operator (the API returns it as a 503).
    """


# History is kept 30 days, and at most this many entries: a paging storm (one group per task
# name, say) must not grow the store without bound. Past it the oldest go, counted in each
# store's `history_evicted` (AlertdKeysEvicted{map="history"}).
HISTORY_CAP = 100_000


@dataclass
class HistoryEntry:
    """One thing that happened to a notification or was done through the API."""

    ts: float
    kind: str  # sent | failed | retry | dead_letter | fallback | silenced | inhibited | muted | api
    receiver: str = ""
    group_key: str = ""
    reason: str = ""  # dedup reason ("first notification", "repeat elapsed", ...) or API action
    outcome: str = ""  # ok | error text (redacted) | suppressed
    author: str = ""  # API writes: who (token name / basic-auth user)
    alertnames: list[str] = field(default_factory=list)
    fingerprints: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)
    id: int | None = None  # assigned by the store

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class HistoryQuery:
    since: float | None = None
    until: float | None = None
    kind: str | None = None
    receiver: str | None = None
    group_key: str | None = None
    alertname: str | None = None
    limit: int = 100


class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def put(self, kind: str, key: str, doc: dict[str, Any], expires_at: float | None = None) -> None:
        """Insert or replace. `expires_at` (epoch seconds) lets purge() drop it later."""

    async def get(self, kind: str, key: str) -> dict[str, Any] | None: ...

    async def all(self, kind: str) -> list[dict[str, Any]]: ...

    async def delete(self, kind: str, key: str) -> None: ...

    async def version(self, kind: str) -> int:
        """A counter bumped by every put/delete of `kind`, so replicas notice changes cheaply."""

    async def purge(self, now: float) -> int:
        """Drop documents whose expires_at has passed and history older than retention; returns count."""

    async def record(self, entry: HistoryEntry) -> None: ...

    async def history(self, query: HistoryQuery) -> list[HistoryEntry]:
        """Newest first."""

    async def claim(self, key: str, owner: str, ttl: float, now: float) -> bool:
        """Atomically take `key` for `owner` until now + ttl. True if taken (or already ours)."""

    async def release(self, key: str, owner: str) -> None:
        """Give `key` back if `owner` holds it (a claim of another owner is left alone)."""
