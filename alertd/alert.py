"""The alert: what the rules engine produces and everything downstream routes, silences and sends."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class AlertState(StrEnum):
    PENDING = "pending"  # condition true, waiting out `for`; never notified
    FIRING = "firing"
    RESOLVED = "resolved"


def fingerprint(labels: Mapping[str, str]) -> str:
    """Stable 16-hex-digit identity of a label set (order-independent)."""
    h = hashlib.blake2b(digest_size=8)
    for k in sorted(labels):
        h.update(k.encode())
        h.update(b"\xff")
        h.update(str(labels[k]).encode())
        h.update(b"\xff")
    return h.hexdigest()


@dataclass
class Alert:
    """One alert instance. `labels` identify it; `annotations` describe it.

    Times are epoch seconds. `ends_at` is None while firing; set when resolved.
    `value` is the number the rule compared, for templates and the API.
    """

    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    state: AlertState = AlertState.FIRING
    starts_at: float = 0.0
    ends_at: float | None = None
    updated_at: float = 0.0
    value: float | None = None
    generator: str = ""  # rule that produced it: "<file>:<group>/<alert>"
    fingerprint: str = ""
    # Since when the engine that made it knows the label set was not in an earlier episode: the
    # end of the previous one it saw, or its own start. None when unknown (restored, or from the
    # API). Replicas' clocks and lags differ, so an episode's start does not tell one replica
    # whether another's page was about the same episode; this does (alertd.nflog).
    quiet_since: float | None = None

    def __post_init__(self) -> None:
        if not self.fingerprint:
            self.fingerprint = fingerprint(self.labels)

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def resolved(self) -> bool:
        return self.state is AlertState.RESOLVED

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "state": self.state.value,
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "updated_at": self.updated_at,
            "value": self.value,
            "generator": self.generator,
            "fingerprint": self.fingerprint,
            "quiet_since": self.quiet_since,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Alert:
        return cls(
            labels=dict(d["labels"]),
            annotations=dict(d.get("annotations", {})),
            state=AlertState(d.get("state", "firing")),
            starts_at=float(d.get("starts_at", 0.0)),
            ends_at=d.get("ends_at"),
            updated_at=float(d.get("updated_at", 0.0)),
            value=d.get("value"),
            generator=d.get("generator", ""),
            fingerprint=d.get("fingerprint", ""),
            quiet_since=_number_or_none(d.get("quiet_since")),
        )


def _number_or_none(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None
