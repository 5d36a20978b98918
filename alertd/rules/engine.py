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
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from alertd.alert import Alert, AlertState, fingerprint
from alertd.catalogue import CATALOGUE, Kind
from alertd.clock import Clock
from alertd.durations import format_duration
from alertd.evictions import KEYS_EVICTED_ALERT, MAPS, EvictionCounts, EvictionWatch
from alertd.matchers import Matcher, matches_all
from alertd.observe.series import CounterView, DistributionView, Labels, SeriesStore
from alertd.rules.loader import DEFAULT_RESOLVE_AFTER, Group, Rule, RuleSet
from alertd.rules.templating import render_all

log = logging.getLogger(__name__)

Key = tuple[str, ...]  # the values of a rule's `by` labels
ViewKey = tuple[str, str, float, tuple[str, ...], tuple[Matcher, ...]]  # kind, metric, window, by, matchers
GaugeReader = Callable[[float], Mapping[str, Mapping[Labels, float]]]
Watch = Callable[[Callable[[dict[str, Any]], None], frozenset[str] | None], Callable[[], None]]
# (metric, labels of the alert) -> what annotations may say beyond labels and value, as `details`
DetailReader = Callable[[str, Mapping[str, str]], Mapping[str, Any]]

SERIES_LIMIT_ALERT = "AlertdRuleSeriesLimit"
SERIES_DROPPED_ALERT = "AlertdSeriesDropped"
MAX_EVENT_TIMES = 10_000  # per event-rule series: the count is exact up to this, then saturates
EVENT_KEYS_ALERT = "AlertdEventKeysEvicted"
EVICTION_ALERT_FOR = 600.0  # the meta-alert fires while keys were evicted within this, then resolves
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
    unsubscribe: Callable[[], None] | None = None
    # metric rules: the store's incremental window per metric read (a ratio reads several),
    # grouped by this rule's matchers and `by`
    views: dict[str, CounterView[Key] | DistributionView[Key]] = field(default_factory=dict)


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
        self.max_resolved = max_resolved
        self.owes_resolved = owes_resolved
        self.resolved_evicted = 0
        external = evictions
        self._evictions = EvictionWatch(
            lambda: {**(external() if external is not None else {}), "resolved_alerts": self.resolved_evicted}
        )
        # After a restart the series store is empty and gauges arrive with the first samples and
        # heartbeats: an alert restored from the store is held until its data is back, for up to
        # this long (gauges, absence) or its window (counters, distributions), not resolved at the
        # first tick - which would send a wrong resolved notice, then page again once `for` is met.
        self.restore_grace = restore_grace
        self.started_at = clock.now()
        # Seconds per tick for building the windows of rules just loaded on a full store (a
        # reload): such a rule is evaluated once its windows are built, so that no tick pays for
        # a whole window at once. None builds them at their first evaluation (tests, `alertd test`).
        self.build_budget = build_budget
        # Views by what they read, shared by the rules that read the same and kept across reloads,
        # so a reload that changes a threshold or a label does not rebuild the rule's windows.
        self._views: dict[ViewKey, CounterView[Key] | DistributionView[Key]] = {}
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
        self.meta: dict[tuple[str, str], SeriesState] = {}  # (alertname, subject) -> state
        self.replace_rules(rules)

    # -- rules -----------------------------------------------------------------------------

    def replace_rules(self, rules: RuleSet) -> None:
        """Install a new rule set; rules whose definition is unchanged keep their state."""
        old = self.runtimes
        new: dict[str, RuleRuntime] = {}
        for rule in rules.rules():
            rt = old.pop(rule.id, None)
            if rt is None:
                rt = RuleRuntime(rule)
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
        wanted = {_view_key(rt.rule, m) for rt in new.values() for m in _windowed(rt.rule)}
        self._views = {k: v for k, v in self._views.items() if k in wanted}
        self.groups = rules.groups
        now = self.clock.now()
        self.next_eval = {g.name: self.next_eval.get(g.name, now) for g in self.groups}

    def _event_callback(self, rt: RuleRuntime) -> Callable[[dict[str, Any]], None]:
        rule = rt.rule
        matchers = rule.matchers
        by = rule.spec.by

        def on_event(event: dict[str, Any]) -> None:
            labels = {k: _text(event.get(k)) for k in {m.name for m in matchers}}
            if not matches_all(matchers, labels):
                return
            key = tuple(_text(event.get(b)) for b in by)
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
        building = self.build_budget is not None and not self._build(now, time.perf_counter() + self.build_budget)
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
                if building and not all(self._view(rt, m).built for m in _windowed(rule)):
                    continue  # its windows are being built: evaluated at its group's next turn
                changed.extend(self._evaluate(rt, now, gauges))
        if gauges is not None:
            changed.extend(self._meta_alerts(now))
        return changed

    def _evaluate(self, rt: RuleRuntime, now: float, gauges: Mapping[str, Mapping[Labels, float]]) -> list[Alert]:
        started = time.perf_counter()
        rule = rt.rule
        try:
            if rule.kind == "metric":
                values = self._metric_values(rt, now, gauges)
            elif rule.kind == "event":
                values = self._event_values(rt, now)
            else:
                values = self._absent_values(rule, gauges)
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
        changed = self._advance(rt, values, now)
        self._cap_resolved(rt)
        rt.evaluation_seconds = time.perf_counter() - started
        return changed

    def _metric_values(
        self, rt: RuleRuntime, now: float, gauges: Mapping[str, Mapping[Labels, float]]
    ) -> dict[tuple[str, ...], float]:
        rule = rt.rule
        spec = rule.spec
        metric = rule.metric
        assert metric is not None
        by = spec.by
        if metric.kind is Kind.GAUGE:
            groups: dict[tuple[str, ...], list[float]] = {}
            for labels, v in self._select(metric.labels, gauges.get(metric.name, {}), rule):
                groups.setdefault(tuple(labels[b] for b in by), []).append(v)
            agg = spec.aggregate or "max"
            return {k: _AGGREGATES[agg](vs) for k, vs in groups.items()}
        if metric.kind is Kind.COUNTER:
            view = self._view(rt, metric.name)
            assert isinstance(view, CounterView)
            return view.read(now)
        if metric.kind is Kind.RATIO:
            num: dict[tuple[str, ...], float] = {}
            den: dict[tuple[str, ...], float] = {}
            for counter in metric.denominator:
                view = self._view(rt, counter)
                assert isinstance(view, CounterView)
                for key, v in view.read(now).items():
                    den[key] = den.get(key, 0.0) + v
                    if counter == metric.numerator:
                        num[key] = num.get(key, 0.0) + v
            return {k: num.get(k, 0.0) / d for k, d in den.items() if d > 0 and d >= spec.min_events}
        # distribution
        stat = spec.stat or "avg"
        dview = self._view(rt, metric.name)
        assert isinstance(dview, DistributionView)
        merged = dview.read(now)
        return {k: d.stat(stat) for k, d in merged.items() if d.count > 0 and d.count >= spec.min_events}

    # A rule's windows are read through views of the series store: each read merges only the
    # buckets that closed or left the window since the last one, grouped by the rule's key, so a
    # tick costs what changed, not the window times the series. A view also remembers each
    # series' key, so matchers run once per series rather than once per series per tick.

    def _view(self, rt: RuleRuntime, metric: str) -> CounterView[Key] | DistributionView[Key]:
        view = rt.views.get(metric)
        if view is None or view.store is not self.series:
            key = _view_key(rt.rule, metric)
            view = self._views.get(key)
            if view is None or view.store is not self.series:
                window = rt.rule.spec.window or 0.0
                make = self.series.distribution_view if key[0] == "distribution" else self.series.counter_view
                view = self._views[key] = make(metric, window, _key(rt.rule, metric))
            view = rt.views[metric] = view
        return view

    def _build(self, now: float, deadline: float) -> bool:
        """Build the windows of rules just loaded, until the deadline; True when all are built."""
        for rt in self.runtimes.values():
            for metric in _windowed(rt.rule):
                if not self._view(rt, metric).build(now, deadline):
                    return False
        return True

    @staticmethod
    def _select(names: tuple[str, ...], data: Mapping[Labels, Any], rule: Rule) -> list[tuple[dict[str, str], Any]]:
        out = []
        for values, v in data.items():
            labels = dict(zip(names, values, strict=False))
            if matches_all(rule.matchers, labels):
                out.append((labels, v))
        return out

    def _event_values(self, rt: RuleRuntime, now: float) -> dict[tuple[str, ...], float]:
        spec = rt.rule.spec
        resolve_after = spec.resolve_after if spec.resolve_after is not None else DEFAULT_RESOLVE_AFTER
        window = spec.window if spec.window is not None else resolve_after
        out: dict[tuple[str, ...], float] = {}
        for key, times in list(rt.event_times.items()):
            while times and times[0] <= now - max(window, resolve_after):
                times.popleft()
            if not times:
                del rt.event_times[key]
                continue
            recent = sum(1 for t in times if t > now - window)
            current = rt.series.get(key)
            firing = current is not None and current.state is AlertState.FIRING
            if recent >= spec.min_count or (firing and times[-1] > now - resolve_after):
                out[key] = float(recent)
        if len(rt.event_times) * 4 < rt.event_keys_peak:
            # a dict keeps the table it grew to after its keys go: copying gives the memory back
            rt.event_times = dict(rt.event_times)
            rt.event_keys_peak = len(rt.event_times)
        return out

    def _absent_values(self, rule: Rule, gauges: Mapping[str, Mapping[Labels, float]]) -> dict[tuple[str, ...], float]:
        spec = rule.spec.absent
        assert spec is not None
        since = gauges.get("task_last_succeeded_seconds", {}).get((spec.task,))
        if since is not None and since > spec.within:
            return {(): since}
        return {}

    def _condition(self, rule: Rule, value: float, state: SeriesState | None) -> bool:
        spec = rule.spec
        if rule.kind != "metric":
            return True  # event and absence values are only present when the condition holds
        if math.isnan(value):
            return False
        firing = state is not None and state.state is AlertState.FIRING
        if spec.above is not None:
            level = spec.recover_below if firing and spec.recover_below is not None else spec.above
            return value > level if level == spec.above else value >= level
        assert spec.below is not None
        level = spec.recover_above if firing and spec.recover_above is not None else spec.below
        return value < level if level == spec.below else value <= level

    def _advance(self, rt: RuleRuntime, values: dict[tuple[str, ...], float], now: float) -> list[Alert]:
        rule = rt.rule
        spec = rule.spec
        flap = rule.flapping
        changed: list[Alert] = []
        for key, value in values.items():
            st = rt.series.get(key)
            if not self._condition(rule, value, st):
                continue
            if st is None:
                labels = self._labels(rule, key, value)
                st = rt.series[key] = SeriesState(labels=labels, active_since=now)
                # a label set that was flapping when its pending episode ended is still flapping
                st.flapping = flap is not None and len(rt.drops.get(key, ())) >= flap.threshold
            st.value = value
            st.last_true = now
            st.restored = False
            st.annotations = render_all(rule.annotations, st.labels, value, self._details(rule, st.labels))
            if st.state is AlertState.PENDING and now - st.active_since >= spec.for_:
                st.state = AlertState.FIRING
                st.starts_at = now
                # Labels are settled when the alert fires, the first time anyone is told of it:
                # a label from `details` (the lost worker that served a queue) may be known only
                # by then. They stay fixed for the episode - they are its identity.
                st.labels = self._labels(rule, key, value)
                changed.append(self._alert(rule, st, now))
        for key, st in list(rt.series.items()):
            if st.last_true == now:
                continue
            if key in values:
                st.restored = False  # its data is back, and says the condition is false
                if rule.kind == "metric":
                    st.value = values[key]
            elif st.restored and now - self.started_at < self._restore_hold(rule):
                continue  # no data yet since the restart: unknown, not recovered
            if flap is not None and st.last_drop < st.last_true:  # true at the last evaluation: a drop
                st.last_drop = now
                st.flapping = self._dropped(rt, key, now) or st.flapping
            # Flapping: a drop neither resets `for` nor resolves, until a whole window is quiet.
            hold = flap.window if flap is not None and st.flapping else 0.0
            if st.state is AlertState.PENDING:
                if now - st.last_true >= hold:
                    del rt.series[key]
            elif now - st.last_true >= max(spec.keep_firing_for, hold):
                del rt.series[key]
                if st.flapping:  # quiet for a whole window: its next episode starts afresh
                    rt.drops.pop(key, None)
                st.state = AlertState.RESOLVED
                st.ends_at = now
                rt.resolved.append(st)
                changed.append(self._alert(rule, st, now))
        if flap is not None and rt.drops:
            horizon = now - flap.window
            for key in [k for k, d in rt.drops.items() if d[-1] <= horizon]:
                del rt.drops[key]
        rt.resolved = [s for s in rt.resolved if s.ends_at is not None and now - s.ends_at < self.resolved_retention]
        return changed

    def _restore_hold(self, rule: Rule) -> float:
        """How long after the start a restored alert waits for its data before it may resolve."""
        if rule.kind != "metric":
            return 0.0  # event times and last successes are restored with the alert: its data is back
        if _windowed(rule) and rule.spec.window:
            return max(self.restore_grace, rule.spec.window)  # a rate needs its window refilled
        return self.restore_grace

    def _dropped(self, rt: RuleRuntime, key: tuple[str, ...], now: float) -> bool:
        """Count a drop of `key`'s condition; true when that makes it flapping."""
        flap = rt.rule.flapping
        assert flap is not None
        drops = rt.drops.pop(key, None)  # re-inserted last: the least recently dropped go first
        if drops is None:
            drops = deque(maxlen=flap.threshold)
            while len(rt.drops) >= self.max_series_per_rule:  # keys from outside: bounded
                del rt.drops[next(iter(rt.drops))]
        drops.append(now)
        while drops and drops[0] <= now - flap.window:
            drops.popleft()
        rt.drops[key] = drops
        return len(drops) >= flap.threshold

    def _cap_resolved(self, rt: RuleRuntime) -> None:
        """Past max_resolved, the oldest resolved alerts that owe no notice leave before their retention.

        Distinct label sets from the outside (a task name each) would otherwise keep one alert
        each for resolved_retention. One that may still owe a notice stays: alerting is
        at-least-once, and the notifier deals with it at its group's next flush.
        """
        extra = len(rt.resolved) - self.max_resolved
        if extra <= 0:
            return
        owes = self.owes_resolved
        fps = [fingerprint(st.labels) for st in rt.resolved]
        latest = dict(zip(fps, rt.resolved, strict=True))  # an older episode is never shown: owes nothing
        kept: list[SeriesState] = []
        for fp, st in zip(fps, rt.resolved, strict=True):  # oldest first
            if extra > 0 and (owes is None or latest[fp] is not st or not owes(fp, st.ends_at)):
                extra -= 1
                rt.resolved_evicted += 1
                self.resolved_evicted += 1
            else:
                kept.append(st)
        rt.resolved = kept

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

    def _alert(self, rule: Rule, st: SeriesState, now: float) -> Alert:
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
        )

    # -- meta-alerts: alertd telling on itself ---------------------------------------------

    def _meta_alerts(self, now: float) -> list[Alert]:
        active: dict[tuple[str, str], tuple[dict[str, str], dict[str, str], float]] = {}
        for rt in self.runtimes.values():
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
                changed.append(self._meta_alert(st, now))
            st.value, st.last_true = value, now
        for key, st in list(self.meta.items()):
            if key not in active and st.state is AlertState.FIRING:
                st.state, st.ends_at = AlertState.RESOLVED, now
                changed.append(self._meta_alert(st, now))
            elif (
                st.state is AlertState.RESOLVED
                and st.ends_at is not None
                and now - st.ends_at >= self.resolved_retention
            ):
                del self.meta[key]
        return changed

    @staticmethod
    def _meta_alert(st: SeriesState, now: float) -> Alert:
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

    # -- views -----------------------------------------------------------------------------

    def alerts(self) -> list[Alert]:
        """Pending, firing and recently resolved alerts (resolved ones so the notifier can say so)."""
        now = self.clock.now()
        out = []
        for rt in self.runtimes.values():
            for st in (*rt.series.values(), *self._resolved_shown(rt)):
                out.append(self._alert(rt.rule, st, now))
        out.extend(self._meta_alert(st, now) for st in self.meta.values())
        return out

    @staticmethod
    def _resolved_shown(rt: RuleRuntime) -> list[SeriesState]:
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

    def rule_states(self) -> list[dict[str, Any]]:
        """For the API and the web page: each rule, its health, last values and alert counts."""
        out = []
        for rt in self.runtimes.values():
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

    def export_state(self) -> dict[str, Any]:
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
                for rid, rt in self.runtimes.items()
                if rt.series or rt.resolved or rt.event_times
            },
        }

    def import_state(self, state: Mapping[str, Any]) -> None:
        """Restore export_state() output; rules that changed meanwhile start fresh."""
        self.started_at = self.clock.now()  # restored alerts wait for their data from here
        for rid, saved in (state.get("rules") or {}).items():
            rt = self.runtimes.get(rid)
            if rt is None:
                continue
            by = rt.rule.spec.by
            for d in saved.get("series", []):
                st = SeriesState.from_dict(d)
                st.restored = True
                key = tuple(st.labels.get(b, "") for b in by)
                rt.series.setdefault(key, st)
            rt.resolved.extend(SeriesState.from_dict(d) for d in saved.get("resolved", []))
            for key, times in saved.get("events", [])[-self.max_event_keys :]:  # the most recent last
                rt.event_times[tuple(key)] = deque((float(t) for t in times), maxlen=MAX_EVENT_TIMES)


def _windowed(rule: Rule) -> tuple[str, ...]:
    """The counters and distributions a metric rule reads over its window."""
    metric = rule.metric
    if rule.kind != "metric" or metric is None or metric.kind is Kind.GAUGE:
        return ()
    return metric.denominator if metric.kind is Kind.RATIO else (metric.name,)


def _view_key(rule: Rule, metric: str) -> ViewKey:
    return (CATALOGUE[metric].kind.value, metric, rule.spec.window or 0.0, tuple(rule.spec.by), rule.matchers)


def _key(rule: Rule, metric: str) -> Callable[[Labels], Key | None]:
    """A series' key for the rule (its `by` labels), or None when the rule's matchers leave it out."""
    names = CATALOGUE[metric].labels
    matchers, by = rule.matchers, rule.spec.by

    def key(values: Labels) -> Key | None:
        labels = dict(zip(names, values, strict=False))
        if not matches_all(matchers, labels):
            return None
        return tuple(labels[b] for b in by)

    return key


def _avg(xs: list[float]) -> float:
    return sum(xs) / len(xs)


_AGGREGATES: dict[str, Callable[[list[float]], float]] = {"max": max, "min": min, "sum": sum, "avg": _avg}


def _text(v: Any) -> str:
    if v is None:
        return ""
    return v if isinstance(v, str) else str(v)
