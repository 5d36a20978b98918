"""The notification log: what each receiver was last told about each group.

Written to the store on every send (never snapshotted), so a restarted alertd neither pages again
for what it already said nor forgets a resolved notice it still owes; replicas sharing a Redis
store share it too.

An entry knows, per alert told as firing, which *episode* it was told about (the alert's
`starts_at`): a fingerprint that fires, resolves and fires again is a new episode and is news to
the receiver even if the resolve never reached it. It also keeps what an unconfirmed attempt may
have said (`maybe_firing`, `maybe_resolved`): a send interrupted by a crash or a timeout may have
reached the receiver, so a resolved notice is owed for it (at-least-once), and re-sending it (a
page or a resolved notice) is named a possible duplicate. A receiver that keeps one message per
incident (slack_api) keeps its handle on that message in `refs`, so replicas and a restarted
alertd update the same one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from alertd.store.base import Store

KIND = "nflog"

# Replicas evaluate on their own ticks, so the same episode can start up to a tick or two apart
# on each. An episode told by another replica is the same one unless it started this much later.
PEER_EPISODE_SKEW = 5.0
# ...or unless this replica saw the label set's previous episode end after the told one began: a
# replica lagging behind (a busy event loop, a slow start) starts the same episode many seconds
# later than its peer, and the start alone would have it paged twice. `quiet` (an alert's
# quiet_since) says since when this replica knows there was no earlier episode: before the told
# episode began, the two are one.


@dataclass
class Entry:
    receiver: str
    group_key: str
    firing: list[str] = field(default_factory=list)  # fingerprints told as firing
    resolved: list[str] = field(default_factory=list)  # fingerprints told as resolved
    at: float = 0.0
    reason: str = ""
    starts: dict[str, float] = field(default_factory=dict)  # fingerprint -> starts_at of the episode told
    replica: str = ""  # who wrote it
    via: str = ""  # the fallback receiver that delivered it, when the receiver itself failed
    maybe_firing: dict[str, float] = field(default_factory=dict)  # attempted, not confirmed
    resolved_starts: dict[str, float] = field(default_factory=dict)  # fingerprint -> episode told resolved
    maybe_resolved: list[str] = field(default_factory=list)  # resolved notices attempted, not confirmed
    attempted_at: float | None = None
    attempted_by: str = ""
    # the receiver's own handle on the message it posted for this group (Slack's channel and ts,
    # by receiver kind): later notifications of the incident update it instead of posting anew
    refs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Entry:
        known = {f.name for f in fields(cls)}  # a newer alertd's extra fields don't break an older one
        return cls(**{k: v for k, v in doc.items() if k in known})

    def owes_resolve(self, fp: str) -> bool:
        """Was (or may have been) this alert told as firing, so that its resolution is news?"""
        return fp in self.firing or fp in self.maybe_firing


def new_episodes(
    entry: Entry | None,
    firing: Mapping[str, float],
    *,
    replica: str,
    quiet: Mapping[str, float | None] | None = None,
) -> set[str]:
    """Firing alerts (fingerprint -> starts_at) the receiver has not been told about in this episode.

    `quiet`: per fingerprint, since when this replica knows it was in no earlier episode (None:
    unknown); it decides, for an episode another replica told, whether ours is that one."""
    if entry is None:
        return set(firing)
    peer = entry.replica != replica
    skew = PEER_EPISODE_SKEW if peer else 0.0
    told = set(entry.firing)
    out = set()
    for fp, starts_at in firing.items():
        q = quiet.get(fp) if peer and quiet is not None else None
        if fp not in told:
            told_start = entry.resolved_starts.get(fp)
            if told_start is not None and (starts_at <= told_start + skew or (q is not None and q < told_start)):
                continue  # that episode was told resolved by a replica that saw its end first
            out.add(fp)
        elif fp in entry.starts:
            told_start = entry.starts[fp]
            if starts_at > told_start + skew and not (q is not None and q < told_start):
                out.add(fp)  # fired again after the episode that was told
    return out


def dedup_reason(
    entry: Entry | None,
    firing: Mapping[str, float],
    resolved: set[str],
    *,
    now: float,
    repeat_interval: float,
    send_resolved: bool,
    replica: str = "",
    quiet: Mapping[str, float | None] | None = None,
) -> str | None:
    """Why this group needs a notification now (Alertmanager's reasons), or None when it does not.

    `firing` maps each firing fingerprint to the start of its current episode (`quiet`: see
    new_episodes).
    """
    if new_episodes(entry, firing, replica=replica, quiet=quiet):
        return "first notification" if entry is None or not entry.firing else "new alerts in group"
    if entry is None:
        return None
    newly_resolved = {fp for fp in resolved if fp not in firing and entry.owes_resolve(fp)}
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
        return Entry.from_dict(doc) if doc else None

    async def put(self, entry: Entry) -> None:
        at = max(entry.at, entry.attempted_at or 0.0)
        await self.store.put(KIND, self.key(entry.receiver, entry.group_key), entry.to_dict(), at + self.retention)
