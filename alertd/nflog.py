"""The notification log: what each receiver was last told about each group.

Written to the store on every send (never snapshotted), so a restarted alertd neither pages again
for what it already said nor forgets a resolved notice it still owes; replicas sharing a Redis
store share it too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from alertd.store.base import Store

KIND = "nflog"


@dataclass
class Entry:
    receiver: str
    group_key: str
    firing: list[str] = field(default_factory=list)  # fingerprints told as firing
    resolved: list[str] = field(default_factory=list)  # fingerprints told as resolved
    at: float = 0.0
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def dedup_reason(
    entry: Entry | None,
    firing: set[str],
    resolved: set[str],
    *,
    now: float,
    repeat_interval: float,
    send_resolved: bool,
) -> str | None:
    """Why this group needs a notification now (Alertmanager's reasons), or None when it does not."""
    if entry is None:
        return "first notification" if firing else None
    told = set(entry.firing)
    if firing - told:
        return "first notification" if not told else "new alerts in group"
    newly_resolved = (told - firing) & resolved
    if send_resolved and newly_resolved:
        return "all resolved" if not firing else "some resolved"
    if firing and now - entry.at >= repeat_interval:
        return "repeat elapsed"
    return None


class NotificationLog:
    def __init__(self, store: Store, retention: float = 5 * 86400.0) -> None:
        self.store = store
        self.retention = retention

    @staticmethod
    def key(receiver: str, group_key: str) -> str:
        return f"{receiver}|{group_key}"

    async def get(self, receiver: str, group_key: str) -> Entry | None:
        doc = await self.store.get(KIND, self.key(receiver, group_key))
        return Entry(**doc) if doc else None

    async def put(self, entry: Entry) -> None:
        await self.store.put(
            KIND, self.key(entry.receiver, entry.group_key), entry.to_dict(), entry.at + self.retention
        )
