"""The lifecycle of one label set of a rule, per evaluation: inactive -> pending (condition true,
waiting out `for`) -> firing -> resolved, with `keep_firing_for`, hysteresis (`recover_below` /
`recover_above`), flapping (a condition that keeps dropping is one held alert), the hold of
alerts restored after a restart until their data is back, and the cap on retained resolved
alerts (only those that owe no notice leave early)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from alertd.alert import Alert, AlertState, fingerprint
from alertd.rules.loader import Rule
from alertd.rules.state import RuleRuntime, SeriesState
from alertd.rules.templating import render_all
from alertd.rules.values import windowed


class Lifecycle:
    def __init__(
        self,
        *,
        labels: Callable[[Rule, tuple[str, ...], float], dict[str, str]],
        details: Callable[[Rule, Mapping[str, str]], Mapping[str, Any]],
        alert: Callable[[Rule, SeriesState, float], Alert],
        started_at: float,
        max_series_per_rule: int,
        resolved_retention: float,
        restore_grace: float,
        max_resolved: int,
        owes_resolved: Callable[[str, float | None], bool] | None,
    ) -> None:
        self.labels, self.details, self.alert = labels, details, alert
        self.started_at = started_at
        self.max_series_per_rule = max_series_per_rule
        self.resolved_retention = resolved_retention
        self.restore_grace = restore_grace
        self.max_resolved = max_resolved
        self.owes_resolved = owes_resolved
        self.resolved_evicted = 0

    @staticmethod
    def _condition(rule: Rule, value: float, state: SeriesState | None) -> bool:
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

    def advance(self, rt: RuleRuntime, values: dict[tuple[str, ...], float], now: float) -> list[Alert]:
        rule = rt.rule
        spec = rule.spec
        flap = rule.flapping
        changed: list[Alert] = []
        for key, value in values.items():
            st = rt.series.get(key)
            if not self._condition(rule, value, st):
                continue
            if st is None:
                labels = self.labels(rule, key, value)
                st = rt.series[key] = SeriesState(labels=labels, active_since=now)
                st.quiet_since = rt.last_ends.get(key, max(self.started_at, rt.ends_known_since))
                # a label set that was flapping when its pending episode ended is still flapping
                st.flapping = flap is not None and len(rt.drops.get(key, ())) >= flap.threshold
            st.value = value
            st.last_true = now
            st.restored = False
            st.annotations = render_all(rule.annotations, st.labels, value, self.details(rule, st.labels))
            if st.state is AlertState.PENDING and now - st.active_since >= spec.for_:
                st.state = AlertState.FIRING
                st.starts_at = now
                # Labels are settled when the alert fires, the first time anyone is told of it:
                # a label from `details` (the lost worker that served a queue) may be known only
                # by then. They stay fixed for the episode - they are its identity.
                st.labels = self.labels(rule, key, value)
                changed.append(self.alert(rule, st, now))
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
                note_end(rt, key, now)
                changed.append(self.alert(rule, st, now))
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
        if windowed(rule) and rule.spec.window:
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

    def cap_resolved(self, rt: RuleRuntime) -> None:
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


MAX_ENDS_KEPT = 10_000  # label sets whose last episode's end a rule remembers


def note_end(rt: RuleRuntime, key: tuple[str, ...], now: float) -> None:
    """`key`'s episode ended now; past the bound the oldest end is forgotten, and kept as a
    floor (ends_known_since): a label set not found was quiet at least since then."""
    ends = rt.last_ends
    ends.pop(key, None)
    ends[key] = now
    if len(ends) > MAX_ENDS_KEPT:
        oldest = next(iter(ends))
        rt.ends_known_since = max(rt.ends_known_since, ends.pop(oldest))
