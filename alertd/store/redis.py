"""The Redis store: the same contract as SQLite, shared by alertd replicas.

Layout under a key prefix (default "alertd:", `?prefix=` in the URL):
  {p}schema                 schema version of this layout
  {p}doc:{kind}             hash  key -> JSON document
  {p}exp:{kind}             zset  key -> expires_at, for purge
  {p}versions               hash  kind -> change counter (replicas poll it to notice silences)
  {p}history / {p}history:seq   list of JSON entries, newest first, capped
  {p}claim:{key}            string owner, with a TTL: who sends a notification
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
import redis.asyncio as aioredis

from alertd.store.base import HISTORY_CAP, HistoryEntry, HistoryQuery

SCHEMA_VERSION = 1

# Take the claim if free, or keep it if it is already ours; else refuse. Atomic on the server.
# Delete the claim only if it is still ours: a claim that expired and was taken over is not touched.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_CLAIM = """
local cur = redis.call('GET', KEYS[1])
if cur == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
elseif cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# Write a document, bump its kind's version and track its expiry in one round trip.
_PUT = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] ~= '' then redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1]) else redis.call('ZREM', KEYS[2], ARGV[1]) end
return redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
"""


class RedisStore:
    def __init__(
        self, url: str, prefix: str = "alertd:", history_retention: float = 30 * 86400.0, max_history: int = HISTORY_CAP
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.history_retention = history_retention
        self.max_history = max_history
        self.history_evicted = 0  # oldest entries trimmed past max_history (by this process)
        self._r: aioredis.Redis | None = None

    @classmethod
    def from_url(cls, url: str) -> RedisStore:
        """redis://host:6379/0?prefix=alertd: (prefix optional)."""
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        prefix = query.pop("prefix", "alertd:")
        clean = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))
        return cls(clean, prefix)

    @property
    def r(self) -> aioredis.Redis:
        if self._r is None:
            raise RuntimeError("store is not open")
        return self._r

    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def open(self) -> None:
        self._r = aioredis.Redis.from_url(self.url, socket_timeout=10, socket_connect_timeout=5)
        current = await self.r.get(self._k("schema"))
        version = int(current) if current else 0
        if version > SCHEMA_VERSION:
            await self.close()
            raise RuntimeError(
                f"store {self.prefix!r} has schema version {version}, newer than this alertd "
                f"({SCHEMA_VERSION}): upgrade alertd"
            )
        for step in range(version + 1, SCHEMA_VERSION + 1):
            # One step per version, each recorded as it completes, so an interrupted upgrade
            # resumes where it stopped. Replicas must run the same alertd version during one.
            await _MIGRATIONS[step](self)
            await self.r.set(self._k("schema"), step)

    async def close(self) -> None:
        if self._r is not None:
            await self._r.aclose()
            self._r = None

    async def put(self, kind: str, key: str, doc: dict[str, Any], expires_at: float | None = None) -> None:
        await self.r.eval(
            _PUT,
            3,
            self._k("doc", kind),
            self._k("exp", kind),
            self._k("versions"),
            key,
            orjson.dumps(doc),
            "" if expires_at is None else repr(expires_at),
            kind,
        )

    async def get(self, kind: str, key: str) -> dict[str, Any] | None:
        raw = await self.r.hget(self._k("doc", kind), key)
        return orjson.loads(raw) if raw else None

    async def all(self, kind: str) -> list[dict[str, Any]]:
        items = await self.r.hgetall(self._k("doc", kind))
        return [orjson.loads(items[k]) for k in sorted(items)]

    async def delete(self, kind: str, key: str) -> None:
        async with self.r.pipeline(transaction=True) as p:
            p.hdel(self._k("doc", kind), key)
            p.zrem(self._k("exp", kind), key)
            p.hincrby(self._k("versions"), kind, 1)
            await p.execute()

    async def version(self, kind: str) -> int:
        v = await self.r.hget(self._k("versions"), kind)
        return int(v) if v else 0

    async def purge(self, now: float) -> int:
        n = 0
        kinds = await self.r.hkeys(self._k("versions"))
        for raw in kinds:
            kind = raw.decode() if isinstance(raw, bytes) else str(raw)
            expired = await self.r.zrangebyscore(self._k("exp", kind), "-inf", now)
            if expired:
                async with self.r.pipeline(transaction=True) as p:
                    p.hdel(self._k("doc", kind), *expired)
                    p.zrem(self._k("exp", kind), *expired)
                    p.hincrby(self._k("versions"), kind, 1)
                    await p.execute()
                n += len(expired)
        cutoff = now - self.history_retention
        while True:
            oldest = await self.r.lindex(self._k("history"), -1)
            if not oldest or orjson.loads(oldest)["ts"] >= cutoff:
                break
            await self.r.rpop(self._k("history"))
            n += 1
        return n

    async def record(self, entry: HistoryEntry) -> None:
        entry.id = int(await self.r.incr(self._k("history", "seq")))
        async with self.r.pipeline(transaction=True) as p:
            p.lpush(self._k("history"), orjson.dumps(entry.to_dict()))
            p.ltrim(self._k("history"), 0, self.max_history - 1)
            length, _ = await p.execute()
        self.history_evicted += max(0, int(length) - self.max_history)

    async def history(self, query: HistoryQuery) -> list[HistoryEntry]:
        limit = max(1, min(query.limit, 10_000))
        out: list[HistoryEntry] = []
        start, page = 0, 1000
        while len(out) < limit:
            rows = await self.r.lrange(self._k("history"), start, start + page - 1)
            if not rows:
                break
            for raw in rows:
                d = orjson.loads(raw)
                if query.since is not None and d["ts"] < query.since:
                    return out  # newest first: everything further is older
                if _matches(d, query):
                    out.append(HistoryEntry(**d))
                    if len(out) >= limit:
                        break
            start += page
        return out

    async def claim(self, key: str, owner: str, ttl: float, now: float) -> bool:
        ok = await self.r.eval(_CLAIM, 1, self._k("claim", key), owner, str(max(1, int(ttl * 1000))))
        return bool(ok)

    async def release(self, key: str, owner: str) -> None:
        await self.r.eval(_RELEASE, 1, self._k("claim", key), owner)


def _matches(d: dict[str, Any], q: HistoryQuery) -> bool:
    if q.until is not None and d["ts"] > q.until:
        return False
    if q.kind is not None and d["kind"] != q.kind:
        return False
    if q.receiver is not None and d["receiver"] != q.receiver:
        return False
    if q.group_key is not None and d["group_key"] != q.group_key:
        return False
    return q.alertname is None or q.alertname in d.get("alertnames", [])


async def _initial_layout(store: RedisStore) -> None:
    """Version 1: the layout above. Keys are created on first write, so nothing to do."""


_MIGRATIONS: dict[int, Callable[[RedisStore], Awaitable[None]]] = {1: _initial_layout}
