"""Pick the store backend from the `store:` URL."""

from __future__ import annotations

from pathlib import Path

from alertd.store.base import Store
from alertd.store.sqlite import SqliteStore


def open_store(url: str, base_dir: Path | None = None) -> Store:
    """sqlite:///path.db (default) or redis://host:6379/N (for replicas sharing state)."""
    scheme = url.split("://", 1)[0]
    if scheme == "sqlite":
        return SqliteStore.from_url(url, base_dir)
    if scheme in ("redis", "rediss"):
        from alertd.store.redis import RedisStore  # type: ignore[import-not-found,unused-ignore]

        store: Store = RedisStore.from_url(url)
        return store
    raise ValueError(f"store: expected sqlite:///path.db or redis://host:port/db, got scheme {scheme!r}")
