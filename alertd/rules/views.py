"""The engine's state as others read it: alerts (with the flapping note), the resolved episode
shown for each label set, and each rule's health for the API and the page."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from alertd.alert import Alert, AlertState, fingerprint
from alertd.durations import format_duration
from alertd.rules.loader import Rule
from alertd.rules.state import RuleRuntime, SeriesState


def to_alert(rule: Rule, st: SeriesState, now: float) -> Alert:
    annotations = dict(st.annotations)
    if st.flapping and rule.flapping is not None:
        # an annotation, not a label: the alert keeps its identity (fingerprint) when it starts
        # flapping, and the page and the notification both show annotations
        w = format_duration(rule.flapping.window)
        annotations["flapping"] = (
            f"flapping: its condition dropped {rule.flapping.threshold} times within {w}; "
            f"held as one alert until it has been quiet for {w}"
        )
    return Alert(
        labels=dict(st.labels),
        annotations=annotations,
        state=st.state,
        starts_at=st.starts_at or st.active_since,
        ends_at=st.ends_at,
        updated_at=now,
        value=st.value,
        generator=f"{rule.file}:{rule.line} {rule.group}/{rule.name}",
        quiet_since=st.quiet_since,
    )


def resolved_shown(rt: RuleRuntime) -> list[SeriesState]:
    """The latest resolved episode of each label set, unless that label set fires again.

    A label set that fires, resolves and fires again has one alert, the new episode; an
    older resolved copy must not stand beside it (it would shadow the firing one downstream).
    """
    firing = {fingerprint(st.labels) for st in rt.series.values() if st.state is AlertState.FIRING}
    latest: dict[str, SeriesState] = {}
    for st in rt.resolved:
        fp = fingerprint(st.labels)
        if fp in firing:
            continue
        seen = latest.get(fp)
        if seen is None or (st.ends_at or 0.0) >= (seen.ends_at or 0.0):
            latest[fp] = st
    return list(latest.values())


def rule_states(runtimes: Iterable[RuleRuntime]) -> list[dict[str, Any]]:
    """For the API and the web page: each rule, its health, last values and alert counts."""
    out = []
    for rt in runtimes:
        r = rt.rule
        states = [s.state for s in rt.series.values()]
        out.append(
            {
                "group": r.group,
                "file": r.file,
                "line": r.line,
                "name": r.name,
                "kind": r.kind,
                "metric": r.spec.metric,
                "health": "err" if rt.last_error else "ok",
                "last_error": rt.last_error,
                "last_evaluation": rt.last_evaluation,
                "evaluation_seconds": rt.evaluation_seconds,
                "values": [
                    {"labels": dict(zip(r.spec.by, k, strict=False)), "value": v} for k, v in rt.last_values.items()
                ],
                "pending": sum(1 for s in states if s is AlertState.PENDING),
                "firing": sum(1 for s in states if s is AlertState.FIRING),
                "series": len(rt.series),
                "series_over_limit": rt.limited,
                "event_keys": len(rt.event_times),
                "event_keys_evicted": rt.event_keys_evicted,
                "resolved": len(rt.resolved),
                "resolved_evicted": rt.resolved_evicted,
                "labels": {k: t.source for k, t in r.labels.items()},
                "annotations": {k: t.source for k, t in r.annotations.items()},
            }
        )
    return out
