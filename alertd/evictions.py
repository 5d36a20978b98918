"""Evictions from alertd's bounded maps, as counts by map name, and which maps evicted lately.

Every map keyed by something from the outside (task names, queues, workers, uuids, client
addresses...) has a configured cap; past it entries are evicted and counted. The daemon reads the
counts of all of them through one `EvictionCounts` reader: /metrics exports each count, and the
engine turns a count that moved within EVICTION_ALERT_FOR into the meta-alert
AlertdKeysEvicted{map="..."}, which resolves once that map has evicted nothing for that long.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

EvictionCounts = Callable[[], Mapping[str, int]]  # map name -> entries evicted since start
EVICTION_ALERT_FOR = 600.0  # a meta-alert fires while its map evicted within this, then resolves
KEYS_EVICTED_ALERT = "AlertdKeysEvicted"

# map name -> (the setting that caps it, what an eviction loses), for the meta-alert's text
MAPS: dict[str, tuple[str, str]] = {
    "tasks": ("observe.max_tasks", "tasks in flight were forgotten: stuck-task and waiting gauges miss them"),
    "workers": ("observe.max_workers", "workers were forgotten: their loss cannot page"),
    "task_names": ("observe.max_task_names", "last-success times were forgotten (dead man's switches)"),
    "orphans": ("observe.max_orphans", "tasks of lost workers were forgotten: redeliveries go uncounted"),
    "senders": ("observe.max_senders", "clock offsets of producers or workers were forgotten"),
    "queues": ("sampler.max_queues", "queues were left unsampled: their length and consumers are not watched"),
    "resolved_alerts": (
        "observe.max_resolved_alerts",
        "resolved alerts already notified left the API early (no notice owed was dropped)",
    ),
    "login_clients": ("api.max_login_clients", "failed-login counts of some client addresses were forgotten"),
    "history": ("100000 entries", "the oldest notification history went before its 30 days: a paging storm?"),
}


class EvictionWatch:
    """Remembers when each map's eviction count last moved."""

    def __init__(self, read: EvictionCounts, hold: float = EVICTION_ALERT_FOR) -> None:
        self.read = read
        self.hold = hold
        self._seen: dict[str, tuple[int, float]] = {}  # map -> (count, when it last grew)

    def active(self, now: float) -> dict[str, int]:
        """The maps that evicted within `hold` of now, with their counts."""
        out: dict[str, int] = {}
        for name, n in self.read().items():
            count, at = self._seen.get(name, (0, now))
            if n > count:
                count, at = n, now
            self._seen[name] = (count, at)
            if count and now - at < self.hold:
                out[name] = count
        return out
