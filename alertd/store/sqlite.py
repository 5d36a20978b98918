"""The embedded store: one SQLite file in WAL mode, no server.

Calls are short single-statement transactions on a local file (well under a millisecond), so they
run inline on the event loop rather than paying a thread hop each.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson

from alertd.store.base import HISTORY_CAP, HistoryEntry, HistoryQuery

SCHEMA_VERSION = 1

_MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE docs (kind TEXT NOT NULL, key TEXT NOT NULL, doc BLOB NOT NULL,
           expires_at REAL, PRIMARY KEY (kind, key))""",
        "CREATE TABLE versions (kind TEXT PRIMARY KEY, version INTEGER NOT NULL)",
        """CREATE TABLE history (id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, kind TEXT NOT NULL,
           receiver TEXT NOT NULL, group_key TEXT NOT NULL, alertnames TEXT NOT NULL, entry BLOB NOT NULL)""",
        "CREATE INDEX history_ts ON history (ts)",
        "CREATE TABLE claims (key TEXT PRIMARY KEY, owner TEXT NOT NULL, until REAL NOT NULL)",
    ],
}


class SqliteStore:
    def __init__(self, path: str | Path, history_retention: float = 30 * 86400.0, max_history: int = HISTORY_CAP):
        self.path = str(path)
        self.history_retention = history_retention
        self.max_history = max_history
        self.history_evicted = 0  # oldest entries deleted past max_history (at each purge)
        self._db: sqlite3.Connection | None = None

    @classmethod
    def from_url(cls, url: str, base_dir: Path | None = None) -> SqliteStore:
        """sqlite:///relative.db, sqlite:////absolute.db, or sqlite://:memory:"""
        rest = url.split("://", 1)[1]
        if rest in (":memory:", "/:memory:"):
            return cls(":memory:")
        path = Path(rest[1:] if rest.startswith("/") else rest)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return cls(path)

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a process kill -9
        db.execute("PRAGMA busy_timeout=5000")
        self._db = db
        self._migrate()

    def _migrate(self) -> None:
        db = self.db
        current = db.execute("PRAGMA user_version").fetchone()[0]
        if current > SCHEMA_VERSION:
            raise RuntimeError(
                f"{self.path} has schema version {current}, newer than this alertd ({SCHEMA_VERSION}): upgrade alertd"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            db.execute("BEGIN IMMEDIATE")
            for stmt in _MIGRATIONS[version]:
                db.execute(stmt)
            db.execute(f"PRAGMA user_version={version}")
            db.execute("COMMIT")

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _bump(self, kind: str) -> None:
        self.db.execute(
            "INSERT INTO versions (kind, version) VALUES (?, 1) ON CONFLICT(kind) DO UPDATE SET version = version + 1",
            (kind,),
        )

    async def put(self, kind: str, key: str, doc: dict[str, Any], expires_at: float | None = None) -> None:
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO docs (kind, key, doc, expires_at) VALUES (?, ?, ?, ?)",
                (kind, key, orjson.dumps(doc), expires_at),
            )
            self._bump(kind)

    async def get(self, kind: str, key: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT doc FROM docs WHERE kind = ? AND key = ?", (kind, key)).fetchone()
        return orjson.loads(row[0]) if row else None

    async def all(self, kind: str) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT doc FROM docs WHERE kind = ? ORDER BY key", (kind,)).fetchall()
        return [orjson.loads(r[0]) for r in rows]

    async def delete(self, kind: str, key: str) -> None:
        with self.db:
            self.db.execute("DELETE FROM docs WHERE kind = ? AND key = ?", (kind, key))
            self._bump(kind)

    async def version(self, kind: str) -> int:
        row = self.db.execute("SELECT version FROM versions WHERE kind = ?", (kind,)).fetchone()
        return int(row[0]) if row else 0

    async def purge(self, now: float) -> int:
        with self.db:
            kinds = [
                r[0]
                for r in self.db.execute(
                    "SELECT DISTINCT kind FROM docs WHERE expires_at IS NOT NULL AND expires_at < ?", (now,)
                )
            ]
            n = self.db.execute("DELETE FROM docs WHERE expires_at IS NOT NULL AND expires_at < ?", (now,)).rowcount
            n += self.db.execute("DELETE FROM history WHERE ts < ?", (now - self.history_retention,)).rowcount
            # ids only grow (AUTOINCREMENT): the newest max_history have the top ids
            (top,) = self.db.execute("SELECT COALESCE(MAX(id), 0) FROM history").fetchone()
            over = self.db.execute("DELETE FROM history WHERE id <= ?", (top - self.max_history,)).rowcount
            self.history_evicted += over
            n += over
            self.db.execute("DELETE FROM claims WHERE until < ?", (now,))
            for kind in kinds:
                self._bump(kind)
        return n

    async def record(self, entry: HistoryEntry) -> None:
        doc = entry.to_dict()
        doc.pop("id", None)
        with self.db:
            cur = self.db.execute(
                "INSERT INTO history (ts, kind, receiver, group_key, alertnames, entry) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    entry.ts,
                    entry.kind,
                    entry.receiver,
                    entry.group_key,
                    "," + ",".join(entry.alertnames) + ",",
                    orjson.dumps(doc),
                ),
            )
        entry.id = cur.lastrowid

    async def history(self, query: HistoryQuery) -> list[HistoryEntry]:
        sql, args = "SELECT id, entry FROM history WHERE 1=1", []
        for col, op, val in (
            ("ts", ">=", query.since),
            ("ts", "<=", query.until),
            ("kind", "=", query.kind),
            ("receiver", "=", query.receiver),
            ("group_key", "=", query.group_key),
        ):
            if val is not None:
                sql += f" AND {col} {op} ?"
                args.append(val)
        if query.alertname is not None:
            sql += " AND alertnames LIKE ?"
            args.append(f"%,{query.alertname},%")
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(max(1, min(query.limit, 10_000)))
        out = []
        for row_id, blob in self.db.execute(sql, args):
            e = HistoryEntry(**orjson.loads(blob))
            e.id = row_id
            out.append(e)
        return out

    async def claim(self, key: str, owner: str, ttl: float, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        with self.db:
            self.db.execute(
                "INSERT INTO claims (key, owner, until) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
                "owner = excluded.owner, until = excluded.until "
                "WHERE claims.until < ? OR claims.owner = excluded.owner",
                (key, owner, now + ttl, now),
            )
            row = self.db.execute("SELECT owner FROM claims WHERE key = ?", (key,)).fetchone()
        return bool(row and row[0] == owner)

    async def release(self, key: str, owner: str) -> None:
        with self.db:
            self.db.execute("DELETE FROM claims WHERE key = ? AND owner = ?", (key, owner))
