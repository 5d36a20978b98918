"""An acknowledgement as stored (an Alertmanager v2 silence with alertd's annotations) and shown.

The silence carries what Alertmanager's tools can show: matchers on the group's labels, the
comment "ACK: <why>", createdBy the one who acked; and annotations only alertd acts on:
`alertd.ack=true`, `alertd.ack.fingerprints` (comma-separated: the alerts it mutes),
`alertd.ack.group` (the group key, when a group was acked) and, once alertd ended it,
`alertd.ack.ended` (resolved).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from alertd.alert import Alert
from alertd.matchers import Matcher
from alertd.silence.silences import ACK, ACK_FINGERPRINTS, Silence, SilenceError, State

COMMENT_PREFIX = "ACK: "
NO_COMMENT = "ACK"  # an ack's silence comment when none was given (a silence needs one)
GROUP = "alertd.ack.group"
ENDED = "alertd.ack.ended"


class AckError(SilenceError):
    """An ack that cannot be made (nothing firing to ack): the API answers 400 with the message."""


@dataclass
class Ack:
    id: str
    group: str
    fingerprints: list[str]
    acked_by: str
    acked_at: float
    comment: str
    ends_at: float
    state: State
    ended: str  # "resolved" (by alertd), "deadline" (its end came), "expired" (by someone); "" while live

    @classmethod
    def of(cls, s: Silence, now: float) -> Ack | None:
        if s.bound is None:
            return None
        comment = "" if s.comment == NO_COMMENT else s.comment.removeprefix(COMMENT_PREFIX)
        state = s.state(now)
        # alertd marks the ends it makes; an expiry by hand is written at its own moment (updated_at)
        ended = s.annotations.get(ENDED, "") or ("expired" if s.updated_at >= s.ends_at else "deadline")
        return cls(
            s.id,
            s.annotations.get(GROUP, ""),
            sorted(s.bound),
            s.created_by,
            s.starts_at,
            comment,
            s.ends_at,
            state,
            ended if state is State.EXPIRED else "",
        )

    def to_dict(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "group": self.group,
            "fingerprints": self.fingerprints,
            "acked_by": self.acked_by,
            "acked_at": self.acked_at,
            "age_seconds": max(0.0, now - self.acked_at),
            "comment": self.comment,
            "ends_at": self.ends_at,
            "state": self.state.value,
            "ended": self.ended,
        }


def ack_annotations(group: str, alerts: Sequence[Alert]) -> dict[str, str]:
    out = {ACK: "true", ACK_FINGERPRINTS: ",".join(sorted({a.fingerprint for a in alerts}))}
    if group:
        out[GROUP] = group
    return out


def matchers(group_labels: Mapping[str, str], alerts: Sequence[Alert]) -> list[Matcher]:
    """Equality matchers on the group's labels, for tools that read only matchers; a group with no
    labels (group_by: []) gets the labels its alerts share, else a regex on their names.
    alertd itself mutes by fingerprint, so these only need to cover the acked alerts."""
    labels = dict(group_labels) or _common(a.labels for a in alerts)
    if labels:
        return [Matcher.create(k, "=", v) for k, v in sorted(labels.items())]
    names = sorted({a.name for a in alerts if a.name})
    if not names:
        raise AckError("these alerts share no label to write the ack's matchers with")
    return [Matcher.create("alertname", "=~", "|".join(re.escape(n) for n in names))]


def _common(label_sets: Iterable[Mapping[str, str]]) -> dict[str, str]:
    out: dict[str, str] | None = None
    for labels in label_sets:
        out = dict(labels) if out is None else {k: v for k, v in out.items() if labels.get(k) == v}
    return out or {}
