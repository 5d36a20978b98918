"""JSON shapes of the Alertmanager v2 API, and parsing of what clients send."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from alertd.alert import Alert, AlertState
from alertd.matchers import Matcher, MatcherError, parse_matcher
from alertd.notify.service import AlertStatus
from alertd.rfc3339 import ZERO_TIME, TimeError, format_time
from alertd.rfc3339 import parse_time as rfc3339_parse
from alertd.silence.silences import Silence


class BadRequest(ValueError):
    """The client sent something invalid; the message says what (HTTP 400)."""


def rfc3339(t: float | None) -> str:
    return format_time(t)


def parse_time(value: Any, field: str) -> float:
    if not isinstance(value, str):
        raise BadRequest(f"{field}: expected an RFC 3339 date-time string such as 2026-11-24T10:00:00Z")
    try:
        return rfc3339_parse(value)
    except TimeError as e:
        raise BadRequest(f"{field}: {e}") from None


def parse_filters(values: Iterable[str], param: str = "filter") -> list[Matcher]:
    """`filter` query parameters: each one matcher, or a {a="b",c=~"d"} list as amtool sends."""
    out: list[Matcher] = []
    for v in values:
        text = v.strip()
        if text.startswith("{") and text.endswith("}"):
            text = text[1:-1]
        for part in _split(text):
            try:
                out.append(parse_matcher(part))
            except MatcherError as e:
                raise BadRequest(f"{param}: {e}") from None
    return out


def _split(text: str) -> list[str]:
    parts, depth, cur, quoted = [], 0, "", False
    for ch in text:
        if ch == '"' and not cur.endswith("\\"):
            quoted = not quoted
        if ch == "," and not quoted and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        cur += ch
    if cur.strip():
        parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def parse_api_matchers(value: Any, field: str = "matchers") -> list[Matcher]:
    """Matchers in the v2 JSON shape ({name, value, isRegex, isEqual}) or matcher strings."""
    if not isinstance(value, list) or not value:
        raise BadRequest(f"{field}: expected a non-empty list of matchers")
    out = []
    for i, m in enumerate(value):
        try:
            if isinstance(m, str):
                out.append(parse_matcher(m))
            elif isinstance(m, dict):
                if not isinstance(m.get("name"), str) or not isinstance(m.get("value"), str):
                    raise BadRequest(f"{field}[{i}]: name and value must be strings")
                if not isinstance(m.get("isRegex", False), bool) or not isinstance(m.get("isEqual", True), bool):
                    raise BadRequest(f"{field}[{i}]: isRegex and isEqual must be booleans")
                out.append(Matcher.from_api(m))
            else:
                raise BadRequest(f"{field}[{i}]: expected an object {{name, value, isRegex}} or a matcher string")
        except MatcherError as e:
            raise BadRequest(f"{field}[{i}]: {e}") from None
    return out


def parse_annotations(value: Any) -> dict[str, str]:
    """A silence's `annotations` (Alertmanager 0.32+): a label set, free-form keys and values."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise BadRequest('annotations: expected an object of strings, such as {"ticket": "OPS-123"}')
    return dict(value)


def gettable_alert(a: Alert, status: AlertStatus, page_url: str) -> dict[str, Any]:
    state = "suppressed" if (status.silenced_by or status.inhibited_by or status.muted_by) else "active"
    return {
        "labels": a.labels,
        "annotations": a.annotations,
        "startsAt": rfc3339(a.starts_at),
        "endsAt": rfc3339(a.ends_at) if a.state is AlertState.RESOLVED else ZERO_TIME,
        "updatedAt": rfc3339(a.updated_at or a.starts_at),
        "fingerprint": a.fingerprint,
        "receivers": [{"name": r} for r in status.receivers],
        "status": {
            "state": state,
            "silencedBy": status.silenced_by,
            "inhibitedBy": status.inhibited_by,
            "mutedBy": status.muted_by,
        },
        # the alert on alertd's page, which opens it with its route and silences explained
        "generatorURL": f"{page_url.rstrip('/')}/#alert={a.fingerprint}",
    }


def gettable_silence(s: Silence, now: float) -> dict[str, Any]:
    return {
        "id": s.id,
        "matchers": [m.to_api() for m in s.matchers],
        "startsAt": rfc3339(s.starts_at),
        "endsAt": rfc3339(s.ends_at),
        "updatedAt": rfc3339(s.updated_at),
        "createdBy": s.created_by,
        "comment": s.comment,
        "annotations": dict(s.annotations),  # required in 0.34's gettableSilence, {} when none
        "status": {"state": s.state(now).value},
    }
