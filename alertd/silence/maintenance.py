"""Maintenance windows: silences that recur (matchers plus Alertmanager time intervals).

Their IDs start with "mw-"; alertd.silence.silences stores them beside the silences.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from alertd.matchers import Matcher
from alertd.timeinterval import CompiledInterval, TimeIntervalSpec, compile_interval


@dataclass
class Maintenance:
    id: str
    matchers: list[Matcher]
    intervals: list[dict[str, Any]]  # Alertmanager time-interval specs, as given
    comment: str = ""
    created_by: str = ""
    created_at: float = 0.0
    expired_at: float | None = None
    _compiled: list[CompiledInterval] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._compiled = [compile_interval(TimeIntervalSpec(**spec)) for spec in self.intervals]

    def active(self, now: float) -> bool:
        return self.expired_at is None and any(i.contains(now) for i in self._compiled)

    def state(self, now: float) -> str:
        if self.expired_at is not None:
            return "expired"
        return "active" if self.active(now) else "scheduled"

    def to_doc(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "matchers": [m.to_api() for m in self.matchers],
            "time_intervals": self.intervals,
            "comment": self.comment,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "expired_at": self.expired_at,
        }

    @classmethod
    def from_doc(cls, d: Mapping[str, Any]) -> Maintenance:
        return cls(
            id=d["id"],
            matchers=[Matcher.from_api(m) for m in d["matchers"]],
            intervals=list(d.get("time_intervals") or []),
            comment=d.get("comment", ""),
            created_by=d.get("created_by", ""),
            created_at=float(d.get("created_at", 0.0)),
            expired_at=d.get("expired_at"),
        )
