"""Meta-alerts: alertd telling on itself - a rule over its series cap, an event rule evicting
keys, a metric dropping new label sets, any bounded map evicting (alertd.evictions)."""

from __future__ import annotations

from collections.abc import Iterable

from alertd.alert import Alert, AlertState
from alertd.evictions import KEYS_EVICTED_ALERT, MAPS, EvictionWatch
from alertd.observe.series import SeriesStore
from alertd.rules.state import RuleRuntime, SeriesState

SERIES_LIMIT_ALERT = "AlertdRuleSeriesLimit"
SERIES_DROPPED_ALERT = "AlertdSeriesDropped"
EVENT_KEYS_ALERT = "AlertdEventKeysEvicted"
EVICTION_ALERT_FOR = 600.0  # the meta-alert fires while keys were evicted within this, then resolves


class MetaAlerts:
    def __init__(
        self,
        series: SeriesStore,
        evictions: EvictionWatch,
        *,
        max_series_per_rule: int,
        max_event_keys: int,
        resolved_retention: float,
    ) -> None:
        self.series = series
        self._evictions = evictions
        self.max_series_per_rule = max_series_per_rule
        self.max_event_keys = max_event_keys
        self.resolved_retention = resolved_retention
        self.meta: dict[tuple[str, str], SeriesState] = {}  # (alertname, subject) -> state

    def alerts(self, now: float) -> list[Alert]:
        return [meta_alert(st, now) for st in self.meta.values()]

    def evaluate(self, runtimes: Iterable[RuleRuntime], now: float) -> list[Alert]:
        active: dict[tuple[str, str], tuple[dict[str, str], dict[str, str], float]] = {}
        for rt in runtimes:
            if rt.limited:
                labels = {"alertname": SERIES_LIMIT_ALERT, "rule": rt.rule.name, "severity": "warning"}
                ann = {
                    "summary": f"rule {rt.rule.name} has more series than the cap of {self.max_series_per_rule}",
                    "description": f"{rt.limited} label sets were not evaluated; narrow `by` or `matchers`.",
                }
                active[(SERIES_LIMIT_ALERT, rt.rule.name)] = (labels, ann, float(rt.limited))
            if rt.last_eviction is not None and now - rt.last_eviction < EVICTION_ALERT_FOR:
                labels = {"alertname": EVENT_KEYS_ALERT, "rule": rt.rule.name, "severity": "warning"}
                ann = {
                    "summary": f"event rule {rt.rule.name} holds the cap of {self.max_event_keys} `by` keys",
                    "description": f"{rt.event_keys_evicted} least recently seen keys evicted so far "
                    "(observe.max_event_keys): their counts restart. Too many distinct values in `by`?",
                }
                active[(EVENT_KEYS_ALERT, rt.rule.name)] = (labels, ann, float(rt.event_keys_evicted))
        for name, n in self._evictions.active(now).items():
            setting, loss = MAPS.get(name, ("", "entries were forgotten"))
            labels = {"alertname": KEYS_EVICTED_ALERT, "map": name, "severity": "warning"}
            ann = {
                "summary": f"alertd's {name} map holds its cap ({setting or 'fixed'}) and evicts",
                "description": f"{n} evicted so far: {loss}. Too many distinct values from the outside?",
            }
            active[(KEYS_EVICTED_ALERT, name)] = (labels, ann, float(n))
        for metric, n in self.series.dropped().items():
            labels = {"alertname": SERIES_DROPPED_ALERT, "metric": metric, "severity": "warning"}
            ann = {
                "summary": f"metric {metric} hit observe.max_series; new label sets are dropped",
                "description": f"{n} observations dropped so far. Too many distinct task names, queues or workers?",
            }
            active[(SERIES_DROPPED_ALERT, metric)] = (labels, ann, float(n))
        changed = []
        for key, (labels, ann, value) in active.items():
            st = self.meta.get(key)
            if st is None:
                st = self.meta[key] = SeriesState(
                    labels=labels, state=AlertState.FIRING, active_since=now, starts_at=now
                )
                st.annotations = ann
                changed.append(meta_alert(st, now))
            st.value, st.last_true = value, now
        for key, st in list(self.meta.items()):
            if key not in active and st.state is AlertState.FIRING:
                st.state, st.ends_at = AlertState.RESOLVED, now
                changed.append(meta_alert(st, now))
            elif (
                st.state is AlertState.RESOLVED
                and st.ends_at is not None
                and now - st.ends_at >= self.resolved_retention
            ):
                del self.meta[key]
        return changed


def meta_alert(st: SeriesState, now: float) -> Alert:
    return Alert(
        labels=dict(st.labels),
        annotations=dict(st.annotations),
        state=st.state,
        starts_at=st.starts_at,
        ends_at=st.ends_at,
        updated_at=now,
        value=st.value,
        generator="alertd",
    )
