"""The rules engine's state: one label set of one rule (SeriesState), one rule (RuleRuntime),
and their export to / import from the store, so pending timers, firing alerts and event-rule
windows survive a restart."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from alertd.alert import AlertState
from alertd.matchers import Matcher
from alertd.observe.series import CounterView, DistributionView
from alertd.rules.loader import Rule

Key = tuple[str, ...]  # the values of a rule's `by` labels
ViewKey = tuple[str, str, float, tuple[str, ...], tuple[Matcher, ...]]  # kind, metric, window, by, matchers
MAX_EVENT_TIMES = 10_000  # per event-rule series: the count is exact up to this, then saturates
EXPORTED_EVENT_TIMES = 1_000  # of those, persisted across restarts


@dataclass
class SeriesState:
    """One label set of one rule."""

    labels: dict[str, str]
    state: AlertState = AlertState.PENDING
    active_since: float = 0.0  # condition first true in this episode
    starts_at: float = 0.0  # became firing
    last_true: float = 0.0
    ends_at: float | None = None
    value: float | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    last_drop: float = -math.inf  # the condition last turned false (flapping counts these)
    # restored from before a restart and no data seen since: missing data is not a recovery yet
    restored: bool = False
    flapping: bool = False  # sticky for the episode: held until quiet for the flapping window
    # since when this engine knows the label set was in no earlier episode (alertd.alert.Alert);
    # not saved: a restored episode began before this engine was watching
    quiet_since: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "flapping": self.flapping,
            "labels": self.labels,
            "state": self.state.value,
            "active_since": self.active_since,
            "starts_at": self.starts_at,
            "last_true": self.last_true,
            "ends_at": self.ends_at,
            "value": self.value,
            "annotations": self.annotations,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SeriesState:
        return cls(
            labels=dict(d["labels"]),
            state=AlertState(d["state"]),
            active_since=float(d["active_since"]),
            starts_at=float(d["starts_at"]),
            last_true=float(d["last_true"]),
            ends_at=d.get("ends_at"),
            value=d.get("value"),
            annotations=dict(d.get("annotations") or {}),
            flapping=bool(d.get("flapping", False)),
        )


@dataclass
class RuleRuntime:
    """Evaluation state of one rule; survives reloads that leave the rule unchanged."""

    rule: Rule
    series: dict[tuple[str, ...], SeriesState] = field(default_factory=dict)  # by the `by` key
    resolved: list[SeriesState] = field(default_factory=list)
    last_evaluation: float | None = None
    evaluation_seconds: float = 0.0
    last_error: str = ""
    last_values: dict[tuple[str, ...], float] = field(default_factory=dict)
    # flapping rules: when each label set's condition last dropped (true -> false), within the
    # flapping window, at most `threshold` each; a key goes when its drops age out
    drops: dict[tuple[str, ...], deque[float]] = field(default_factory=dict)
    limited: int = 0  # series over the cap in the last evaluation
    # event rules: matching event times per `by` key, least recently matched first. Keys come
    # from the outside (task names, exceptions), so there are at most the engine's
    # max_event_keys of them: a new key past that evicts the stalest, counted.
    event_times: dict[tuple[str, ...], deque[float]] = field(default_factory=dict)
    event_keys_peak: int = 0  # most keys since the map was last rebuilt (to give memory back)
    event_keys_evicted: int = 0
    last_eviction: float | None = None
    resolved_evicted: int = 0  # resolved alerts dropped before their retention, past max_resolved
    # when each label set's last episode ended, least recently first, bounded; and since when
    # this runtime knows of every end: its creation (a changed rule starts afresh), raised to the
    # latest end forgotten past the bound. A label set not found was quiet at least since then.
    last_ends: dict[tuple[str, ...], float] = field(default_factory=dict)
    ends_known_since: float = -math.inf
    unsubscribe: Callable[[], None] | None = None
    # metric rules: the store's incremental window per metric read (a ratio reads several),
    # grouped by this rule's matchers and `by`
    views: dict[str, CounterView[Key] | DistributionView[Key]] = field(default_factory=dict)


def export_runtimes(runtimes: Mapping[str, RuleRuntime]) -> dict[str, Any]:
    """Pending timers and firing alerts, keyed by rule identity, for the store."""
    return {
        "version": 1,
        "rules": {
            rid: {
                "series": [s.to_dict() for s in rt.series.values()],
                "resolved": [s.to_dict() for s in rt.resolved],
                # event rules: the matching events still inside the window, so a restart
                # neither resolves an alert early nor forgets a count
                "events": [[list(k), list(v)[-EXPORTED_EVENT_TIMES:]] for k, v in rt.event_times.items()],
            }
            for rid, rt in runtimes.items()
            if rt.series or rt.resolved or rt.event_times
        },
    }


def import_runtimes(runtimes: Mapping[str, RuleRuntime], state: Mapping[str, Any], max_event_keys: int) -> None:
    """Restore export_runtimes() output; rules that changed meanwhile start fresh. Restored alerts
    are marked `restored`: the engine waits for their data before it lets them resolve."""
    for rid, saved in (state.get("rules") or {}).items():
        rt = runtimes.get(rid)
        if rt is None:
            continue
        by = rt.rule.spec.by
        for d in saved.get("series", []):
            st = SeriesState.from_dict(d)
            st.restored = True
            key = tuple(st.labels.get(b, "") for b in by)
            rt.series.setdefault(key, st)
        rt.resolved.extend(SeriesState.from_dict(d) for d in saved.get("resolved", []))
        for key, times in saved.get("events", [])[-max_event_keys:]:  # the most recent last
            rt.event_times[tuple(key)] = deque((float(t) for t in times), maxlen=MAX_EVENT_TIMES)
