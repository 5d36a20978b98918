"""What a rule's condition is evaluated on: gauges (aggregated over labels not in `by`), counter
and ratio windows, distributions' statistics, event counts, and the age of a task's last success.

A rule's windows are read through views of the series store: each read merges only the buckets
that closed or left the window since the last one, grouped by the rule's key, so a tick costs
what changed, not the window times the series. A view also remembers each series' key, so
matchers run once per series rather than once per series per tick.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from alertd.alert import AlertState
from alertd.catalogue import CATALOGUE, Kind
from alertd.matchers import matches_all
from alertd.observe.series import CounterView, DistributionView, Labels, SeriesStore
from alertd.rules.loader import DEFAULT_RESOLVE_AFTER, Rule
from alertd.rules.state import Key, RuleRuntime, ViewKey


class Values:
    def __init__(self, series: SeriesStore) -> None:
        self.series = series
        # Views by what they read, shared by the rules that read the same and kept across
        # reloads, so a reload that changes a threshold or a label does not rebuild the windows.
        self.shared: dict[ViewKey, CounterView[Key] | DistributionView[Key]] = {}

    def keep_only(self, runtimes: Iterable[RuleRuntime]) -> None:
        """After a reload: forget the views no rule reads any more."""
        wanted = {view_key(rt.rule, m) for rt in runtimes for m in windowed(rt.rule)}
        self.shared = {k: v for k, v in self.shared.items() if k in wanted}

    def metric(
        self, rt: RuleRuntime, now: float, gauges: Mapping[str, Mapping[Labels, float]]
    ) -> dict[tuple[str, ...], float]:
        rule = rt.rule
        spec = rule.spec
        metric = rule.metric
        assert metric is not None
        by = spec.by
        if metric.kind is Kind.GAUGE:
            groups: dict[tuple[str, ...], list[float]] = {}
            for labels, v in self.select(metric.labels, gauges.get(metric.name, {}), rule):
                groups.setdefault(tuple(labels[b] for b in by), []).append(v)
            agg = spec.aggregate or "max"
            return {k: _AGGREGATES[agg](vs) for k, vs in groups.items()}
        if metric.kind is Kind.COUNTER:
            view = self.view(rt, metric.name)
            assert isinstance(view, CounterView)
            return view.read(now)
        if metric.kind is Kind.RATIO:
            num: dict[tuple[str, ...], float] = {}
            den: dict[tuple[str, ...], float] = {}
            for counter in metric.denominator:
                view = self.view(rt, counter)
                assert isinstance(view, CounterView)
                for key, v in view.read(now).items():
                    den[key] = den.get(key, 0.0) + v
                    if counter == metric.numerator:
                        num[key] = num.get(key, 0.0) + v
            return {k: num.get(k, 0.0) / d for k, d in den.items() if d > 0 and d >= spec.min_events}
        # distribution
        stat = spec.stat or "avg"
        dview = self.view(rt, metric.name)
        assert isinstance(dview, DistributionView)
        merged = dview.read(now)
        return {k: d.stat(stat) for k, d in merged.items() if d.count > 0 and d.count >= spec.min_events}

    # A rule's windows are read through views of the series store: each read merges only the
    # buckets that closed or left the window since the last one, grouped by the rule's key, so a
    # tick costs what changed, not the window times the series. A view also remembers each
    # series' key, so matchers run once per series rather than once per series per tick.

    def view(self, rt: RuleRuntime, metric: str) -> CounterView[Key] | DistributionView[Key]:
        view = rt.views.get(metric)
        if view is None or view.store is not self.series:
            key = view_key(rt.rule, metric)
            view = self.shared.get(key)
            if view is None or view.store is not self.series:
                window = rt.rule.spec.window or 0.0
                make = self.series.distribution_view if key[0] == "distribution" else self.series.counter_view
                view = self.shared[key] = make(metric, window, _key(rt.rule, metric))
            view = rt.views[metric] = view
        return view

    def build(self, runtimes: Iterable[RuleRuntime], now: float, deadline: float) -> bool:
        """Build the windows of rules just loaded, until the deadline; True when all are built."""
        for rt in runtimes:
            for metric in windowed(rt.rule):
                if not self.view(rt, metric).build(now, deadline):
                    return False
        return True

    @staticmethod
    def select(names: tuple[str, ...], data: Mapping[Labels, Any], rule: Rule) -> list[tuple[dict[str, str], Any]]:
        out = []
        for values, v in data.items():
            labels = dict(zip(names, values, strict=False))
            if matches_all(rule.matchers, labels):
                out.append((labels, v))
        return out

    def events(self, rt: RuleRuntime, now: float) -> dict[tuple[str, ...], float]:
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

    @staticmethod
    def absent(rule: Rule, gauges: Mapping[str, Mapping[Labels, float]]) -> dict[tuple[str, ...], float]:
        spec = rule.spec.absent
        assert spec is not None
        since = gauges.get("task_last_succeeded_seconds", {}).get((spec.task,))
        if since is not None and since > spec.within:
            return {(): since}
        return {}


def windowed(rule: Rule) -> tuple[str, ...]:
    """The counters and distributions a metric rule reads over its window."""
    metric = rule.metric
    if rule.kind != "metric" or metric is None or metric.kind is Kind.GAUGE:
        return ()
    return metric.denominator if metric.kind is Kind.RATIO else (metric.name,)


def view_key(rule: Rule, metric: str) -> ViewKey:
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


def text(v: Any) -> str:
    if v is None:
        return ""
    return v if isinstance(v, str) else str(v)
