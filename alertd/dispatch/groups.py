"""Aggregation groups: the alerts of one route that share its group_by labels, and their key."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from alertd.alert import Alert, AlertState
from alertd.dispatch.route import Route


def group_key(route: Route, group_labels: Mapping[str, str]) -> str:
    """The one spelling of a group's identity: route id and its group labels, sorted."""
    return route.id + "{" + ",".join(f"{k}={v!r}" for k, v in sorted(group_labels.items())) + "}"


@dataclass
class AlertGroup:
    """An aggregation group: alerts of one route sharing the route's group_by labels."""

    route: Route
    labels: dict[str, str]
    key: str
    alerts: dict[str, Alert] = field(default_factory=dict)
    next_flush: float = 0.0
    last_flush: float | None = None
    # fingerprint -> silenced | inhibited | muted, as last recorded: history notes changes, not every flush
    suppressed: dict[str, str] = field(default_factory=dict)
    # a moment a stage must look at the group (an escalation step falls due), between its timers:
    # the dispatcher flushes it then without moving next_flush, so the receiver's pace is unchanged
    wake_at: float | None = None
    # resolved alerts another receiver of the group (an escalation step) still owes a notice:
    # they stay in the group when the route's receiver is done with them
    held: set[str] = field(default_factory=set)

    def wake(self, at: float) -> None:
        """Be flushed at `at` (or sooner, if something else asked for sooner)."""
        self.wake_at = at if self.wake_at is None else min(self.wake_at, at)

    def due(self, now: float) -> bool:
        return self.next_flush <= now or (self.wake_at is not None and self.wake_at <= now)

    def due_at(self) -> float:
        return self.next_flush if self.wake_at is None else min(self.next_flush, self.wake_at)

    @property
    def receiver(self) -> str:
        return self.route.receiver

    def to_dict(self) -> dict[str, Any]:
        return {
            "receiver": self.receiver,
            "labels": self.labels,
            "key": self.key,
            "alerts": [a.to_dict() for a in self.alerts.values()],
            "next_flush": self.next_flush,
        }


def current_alerts(alerts: Iterable[Alert]) -> dict[str, Alert]:
    """One alert per fingerprint: the firing episode if there is one, else the latest resolved one.

    The engine keeps a resolved copy for a while after an episode ends (so its resolved notice can
    still be sent); when the same label set fires again, the new episode must not be shadowed by
    that copy, whatever order they come in.
    """
    out: dict[str, Alert] = {}
    for a in alerts:
        if a.state is AlertState.PENDING:
            continue
        seen = out.get(a.fingerprint)
        if seen is None or _outranks(a, seen):
            out[a.fingerprint] = a
    return out


def _outranks(a: Alert, b: Alert) -> bool:
    if (a.state is AlertState.FIRING) != (b.state is AlertState.FIRING):
        return a.state is AlertState.FIRING
    return (a.ends_at or a.starts_at) > (b.ends_at or b.starts_at)
