"""The evaluator: rules + observations -> alerts with a lifecycle. Pure and deterministic.

It reads the series store and the observer's gauges at each group's interval on the injected
clock, and never does I/O: the daemon persists export_state() and feeds alerts() to the notifier.

Lifecycle per (rule, label set): inactive -> pending (condition true, waiting out `for`) ->
firing -> resolved. `keep_firing_for` holds a firing alert through short dips; `recover_below` /
`recover_above` make a firing alert resolve only once the value is clearly back (hysteresis).
`flapping`: a label set whose condition keeps dropping and coming back is one episode, held
until its condition has been false for the flapping window (one page, not one per bounce).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from alertd.alert import Alert
from alertd.catalogue import Kind
from alertd.clock import Clock
from alertd.evictions import EvictionCounts, EvictionWatch
from alertd.matchers import matches_all
from alertd.observe.series import Labels, SeriesStore
from alertd.rules.lifecycle import Lifecycle
from alertd.rules.loader import Group, Rule, RuleSet
from alertd.rules.meta import SERIES_DROPPED_ALERT, SERIES_LIMIT_ALERT, MetaAlerts
from alertd.rules.state import MAX_EVENT_TIMES, RuleRuntime, SeriesState, export_runtimes, import_runtimes
from alertd.rules.templating import render_all
from alertd.rules.values import Values, text, windowed
from alertd.rules.views import resolved_shown, rule_states, to_alert

__all__ = ["SERIES_DROPPED_ALERT", "SERIES_LIMIT_ALERT", "Engine", "SeriesState"]

log = logging.getLogger(__name__)

GaugeReader = Callable[[float], Mapping[str, Mapping[Labels, float]]]
Watch = Callable[[Callable[[dict[str, Any]], None], frozenset[str] | None], Callable[[], None]]
# (metric, labels of the alert) -> what annotations may say beyond labels and value, as `details`
DetailReader = Callable[[str, Mapping[str, str]], Mapping[str, Any]]


class Engine:
    """Evaluates rule groups on their intervals; keeps alert state."""

    def __init__(
        self,
        rules: RuleSet,
        series: SeriesStore,
        clock: Clock,
        *,
        gauges: GaugeReader,
        watch: Watch | None = None,
        expect_task: Callable[[str], None] | None = None,
        details: DetailReader | None = None,
        max_series_per_rule: int = 1000,
        resolved_retention: float = 900.0,
        max_event_keys: int = 10_000,
        build_budget: float | None = None,
        restore_grace: float = 60.0,
        max_resolved: int = 10_000,
        owes_resolved: Callable[[str, float | None], bool] | None = None,
        evictions: EvictionCounts | None = None,
    ) -> None:
        self.max_event_keys = max_event_keys
        # Resolved alerts are kept resolved_retention for their notices and the API; past
        # max_resolved per rule the oldest go early, but only those the notifier says it no longer
        # owes a notice for (owes_resolved(fingerprint, ends_at); None: nobody to owe, as in tests).
        # After a restart the series store is empty and gauges arrive with the first samples and
        # heartbeats: an alert restored from the store is held until its data is back, for up to
        # restore_grace (gauges, absence) or its window (counters, distributions), not resolved at
        # the first tick - which would send a wrong resolved notice, then page again once `for` is met.
        self.lifecycle = Lifecycle(
            labels=self._labels,
            details=self._details,
            alert=self._alert,
            started_at=clock.now(),
            max_series_per_rule=max_series_per_rule,
            resolved_retention=resolved_retention,
            restore_grace=restore_grace,
            max_resolved=max_resolved,
            owes_resolved=owes_resolved,
        )
        external = evictions
        self._evictions = EvictionWatch(
            lambda: {**(external() if external is not None else {}), "resolved_alerts": self.resolved_evicted}
        )
        # Seconds per tick for building the windows of rules just loaded on a full store (a
        # reload): such a rule is evaluated once its windows are built, so that no tick pays for
        # a whole window at once. None builds them at their first evaluation (tests, `alertd test`).
        self.build_budget = build_budget
        self.values = Values(series)
        self.series = series
        self.clock = clock
        self.gauges = gauges
        self.watch = watch
        self.expect_task = expect_task
        self.details = details
        self.max_series_per_rule = max_series_per_rule
        self.resolved_retention = resolved_retention
        self.groups: list[Group] = []
        self.runtimes: dict[str, RuleRuntime] = {}
        self.next_eval: dict[str, float] = {}
        self.meta_alerts = MetaAlerts(
            series,
            self._evictions,
            max_series_per_rule=max_series_per_rule,
            max_event_keys=max_event_keys,
            resolved_retention=resolved_retention,
        )
        self.replace_rules(rules)

    # -- rules -----------------------------------------------------------------------------

    def replace_rules(self, rules: RuleSet) -> None:
        """Install a new rule set; rules whose definition is unchanged keep their state."""
        old = self.runtimes
        new: dict[str, RuleRuntime] = {}
        for rule in rules.rules():
            rt = old.pop(rule.id, None)
            if rt is None:
                rt = RuleRuntime(rule, ends_known_since=self.clock.now())
                if rule.kind == "event" and self.watch is not None:
                    rt.unsubscribe = self.watch(self._event_callback(rt), rule.events)
                if rule.kind == "absent" and self.expect_task is not None and rule.spec.absent is not None:
                    self.expect_task(rule.spec.absent.task)
            else:
                rt.rule = rule  # same definition; the file or line may have moved
            new[rule.id] = rt
        for rt in old.values():  # removed or changed rules: stop their watchers, drop their state
            if rt.unsubscribe is not None:
                rt.unsubscribe()
        self.runtimes = new
        self.values.keep_only(new.values())
        self.groups = rules.groups
        now = self.clock.now()
        self.next_eval = {g.name: self.next_eval.get(g.name, now) for g in self.groups}

    def _event_callback(self, rt: RuleRuntime) -> Callable[[dict[str, Any]], None]:
        rule = rt.rule
        matchers = rule.matchers
        names = tuple({m.name for m in matchers})  # once per rule, not per event
        by = rule.spec.by

        def on_event(event: dict[str, Any]) -> None:
            labels = {k: text(event.get(k)) for k in names}
            if not matches_all(matchers, labels):
                return
            key = tuple(text(event.get(b)) for b in by)
            keys = rt.event_times
            times = keys.pop(key, None)  # re-inserted below: the most recently matched key goes last
            if times is None:
                times = deque(maxlen=MAX_EVENT_TIMES)
                while len(keys) >= self.max_event_keys:
                    del keys[next(iter(keys))]
                    rt.event_keys_evicted += 1
                    rt.last_eviction = self.clock.now()
            keys[key] = times
            rt.event_keys_peak = max(rt.event_keys_peak, len(keys))
            times.append(float(event.get("local_received") or self.clock.now()))

        return on_event

    # -- evaluation ------------------------------------------------------------------------

    def tick(self, now: float | None = None) -> list[Alert]:
        """Evaluate every group whose interval has elapsed; return the alerts that changed state."""
        now = self.clock.now() if now is None else now
        changed: list[Alert] = []
        gauges: Mapping[str, Mapping[Labels, float]] | None = None
        building = self.build_budget is not None and not self.values.build(
            self.runtimes.values(), now, time.perf_counter() + self.build_budget
        )
        for group in self.groups:
            due = self.next_eval.get(group.name, now)
            if now < due:
                continue
            # Stay on the interval grid; after a long pause, resume from now rather than catch up.
            nxt = due + group.interval
            self.next_eval[group.name] = nxt if nxt > now else now + group.interval
            if gauges is None:
                gauges = self.gauges(now)
            for rule in group.rules:
                rt = self.runtimes[rule.id]
                if building and not all(self.values.view(rt, m).built for m in windowed(rule)):
                    continue  # its windows are being built: evaluated at its group's next turn
                changed.extend(self._evaluate(rt, now, gauges))
        if gauges is not None:
            changed.extend(self.meta_alerts.evaluate(self.runtimes.values(), now))
        return changed

    def _evaluate(self, rt: RuleRuntime, now: float, gauges: Mapping[str, Mapping[Labels, float]]) -> list[Alert]:
        started = time.perf_counter()
        rule = rt.rule
        try:
            if rule.kind == "metric":
                values = self.values.metric(rt, now, gauges)
            elif rule.kind == "event":
                values = self.values.events(rt, now)
            else:
                values = self.values.absent(rule, gauges)
            rt.last_error = ""
        except Exception as e:  # one broken rule must not stop the others
            log.exception("rule %s failed", rule.name)
            rt.last_error = str(e)
            values = {}
        rt.last_evaluation = now
        if len(values) > self.max_series_per_rule:
            rt.limited = len(values) - self.max_series_per_rule
            values = dict(sorted(values.items())[: self.max_series_per_rule])
        else:
            rt.limited = 0
        rt.last_values = dict(list(values.items())[:100])
        changed = self.lifecycle.advance(rt, values, now)
        self.lifecycle.cap_resolved(rt)
        rt.evaluation_seconds = time.perf_counter() - started
        return changed

    def _details(self, rule: Rule, labels: Mapping[str, str]) -> Mapping[str, Any]:
        # Only gauges describe a current state worth detailing (the tasks a lost worker took).
        if self.details is None or rule.metric is None or rule.metric.kind is not Kind.GAUGE:
            return {}
        try:
            return self.details(rule.metric.name, labels)
        except Exception:  # a detail is a nicety: it must not stop the alert
            log.exception("details for rule %s failed", rule.name)
            return {}

    def _labels(self, rule: Rule, key: tuple[str, ...], value: float) -> dict[str, str]:
        labels = dict(zip(rule.spec.by, key, strict=True))
        if rule.kind == "absent" and rule.spec.absent is not None:
            labels["task"] = rule.spec.absent.task
        extra = render_all(rule.labels, labels, value, self._details(rule, labels) if rule.labels else None)
        # an empty label is no label (as in Prometheus): a template with nothing to say adds none
        return {"alertname": rule.name, **labels, **{k: v for k, v in extra.items() if v != ""}}

    @staticmethod
    def _alert(rule: Rule, st: SeriesState, now: float) -> Alert:
        return to_alert(rule, st, now)

    @property
    def resolved_evicted(self) -> int:
        """Resolved alerts dropped before their retention, past max_resolved (for /metrics)."""
        return self.lifecycle.resolved_evicted

    # -- views -----------------------------------------------------------------------------

    def alerts(self) -> list[Alert]:
        """Pending, firing and recently resolved alerts (resolved ones so the notifier can say so)."""
        now = self.clock.now()
        out = []
        for rt in self.runtimes.values():
            for st in (*rt.series.values(), *resolved_shown(rt)):
                out.append(self._alert(rt.rule, st, now))
        out.extend(self.meta_alerts.alerts(now))
        return out

    def rule_states(self) -> list[dict[str, Any]]:
        """For the API and the web page: each rule, its health, last values and alert counts."""
        return rule_states(self.runtimes.values())

    def export_state(self) -> dict[str, Any]:
        """Pending timers and firing alerts, keyed by rule identity, for the store."""
        return export_runtimes(self.runtimes)

    def import_state(self, state: Mapping[str, Any]) -> None:
        """Restore export_state() output; rules that changed meanwhile start fresh."""
        self.lifecycle.started_at = self.clock.now()  # restored alerts wait for their data from here
        import_runtimes(self.runtimes, state, self.max_event_keys)
