"""The evaluator on a virtual clock: for, keep_firing_for, hysteresis, reload, restart, caps, sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from alertd.alert import AlertState
from alertd.clock import VirtualClock
from alertd.observe.observer import Observer
from alertd.observe.series import SeriesStore
from alertd.rules.engine import SERIES_LIMIT_ALERT, Engine
from alertd.rules.loader import load_rules
from alertd.rules.reload import RuleReloader
from alertd.rules.templating import Template
from alertd.samples import QueueSample
from tests.waiting import T0

QUEUE_RULE = """
groups:
  - name: q
    interval: 10s
    rules:
      - alert: QueueLong
        metric: queue_length
        by: [queue]
        above: 100
        for: 30s
        keep_firing_for: 20s
        recover_below: 50
        labels: {severity: warning, team: "{{ labels.queue }}-team"}
        annotations: {summary: "{{ labels.queue }} has {{ value | count }}"}
"""


class Harness:
    def __init__(self, tmp_path: Path, text: str = QUEUE_RULE, **engine_kw: object) -> None:
        self.clock = VirtualClock(start=T0)
        self.series = SeriesStore(bucket_seconds=5)
        self.observer = Observer(self.series, self.clock)
        self.path = tmp_path / "rules.yaml"
        self.path.write_text(text)
        self.engine = Engine(
            load_rules([self.path]),
            self.series,
            self.clock,
            gauges=self.observer.gauges,
            watch=self.observer.watch,
            expect_task=self.observer.expect_task,
            **engine_kw,  # type: ignore[arg-type]
        )

    def queue(self, name: str, messages: int) -> None:
        self.observer.on_queue_sample(QueueSample(name, messages, 1, self.clock.now()))

    def step(self, seconds: float) -> list[str]:
        """Advance, evaluating each second; return the transitions as 'state:queue'."""
        out = []
        for _ in range(int(seconds)):
            self.clock.advance(1)
            out += [f"{a.state.value}:{a.labels.get('queue')}" for a in self.engine.tick()]
        return out

    def firing(self) -> list[str]:
        return sorted(a.labels["queue"] for a in self.engine.alerts() if a.state is AlertState.FIRING)


def test_for_then_firing_with_templated_labels_and_annotations(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.queue("default", 150)
    # evaluations at t=1 (pending from here), 10, 20, 30 (29 s: not yet), 40
    assert h.step(39) == []
    assert [a.state for a in h.engine.alerts()] == [AlertState.PENDING]
    assert h.step(1) == ["firing:default"]
    (alert,) = h.engine.alerts()
    assert alert.labels == {"alertname": "QueueLong", "queue": "default", "severity": "warning", "team": "default-team"}
    assert alert.annotations == {"summary": "default has 150"}
    assert alert.value == 150


def test_pending_that_recovers_never_fires(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.queue("default", 150)
    h.step(20)
    h.queue("default", 10)
    assert h.step(60) == []
    assert h.engine.alerts() == []


def test_hysteresis_and_keep_firing_for(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.queue("default", 150)
    h.step(40)
    assert h.firing() == ["default"]
    h.queue("default", 80)  # below `above`, above `recover_below`: stays firing, no flapping
    assert h.step(60) == [] and h.firing() == ["default"]
    h.queue("default", 40)  # below recover_below: keep_firing_for (20 s) still holds it
    assert h.step(19) == []
    assert h.step(11) == ["resolved:default"]
    resolved = [a for a in h.engine.alerts() if a.state is AlertState.RESOLVED]
    assert len(resolved) == 1 and resolved[0].ends_at is not None


def test_resolved_alerts_are_kept_for_the_notifier_then_dropped(tmp_path: Path) -> None:
    h = Harness(tmp_path, resolved_retention=60.0)
    h.queue("default", 150)
    h.step(40)
    h.queue("default", 0)
    h.step(30)
    assert [a.state for a in h.engine.alerts()] == [AlertState.RESOLVED]
    h.step(70)
    assert h.engine.alerts() == []


def test_reload_keeps_state_of_unchanged_rules_and_resets_changed_ones(tmp_path: Path) -> None:
    text = (
        QUEUE_RULE
        + """
      - alert: QueueLongToo
        metric: queue_length
        by: [queue]
        above: 100
        for: 30s
"""
    )
    h = Harness(tmp_path, text)
    reloader = RuleReloader([str(h.path)], tmp_path, h.engine, h.clock)
    h.queue("default", 150)
    h.step(40)
    assert sorted(a.name for a in h.engine.alerts() if a.state is AlertState.FIRING) == ["QueueLong", "QueueLongToo"]

    h.path.write_text(
        text.replace(
            "alert: QueueLongToo\n        metric: queue_length\n        by: [queue]\n        above: 100",
            "alert: QueueLongToo\n        metric: queue_length\n        by: [queue]\n        above: 120",
        )
    )
    assert reloader.changed_on_disk()
    result = reloader.reload()
    assert result.ok and result.changed == 2  # the old QueueLongToo out, the new one in
    firing = {a.name: a for a in h.engine.alerts() if a.state is AlertState.FIRING}
    assert list(firing) == ["QueueLong"] and firing["QueueLong"].starts_at == T0 + 40

    h.path.write_text("groups: [{name: q, rules: [{alert: X, metric: nope, above: 1}]}]")
    result = reloader.reload()
    assert not result.ok and "unknown metric 'nope'" in str(result.problems[0])
    assert "QueueLong" in [a.name for a in h.engine.alerts()]  # old rules still run
    assert reloader.reload_failures_total == 1


FAILURES_RULE = """
groups:
  - name: t
    interval: 10s
    rules:
      - alert: TaskFailing
        metric: tasks_failed
        window: 10m
        by: [task]
        above: 50
"""


def _fail_every_5s(series: SeriesStore, start: float, stop: float, task: str = "t.pay") -> None:
    t = start
    while t < stop:
        series.count("tasks_failed", (task, "q", "celery@w", "ValueError"), t)
        t += 5.0


def test_a_rule_loaded_on_a_full_store_builds_its_window_over_ticks_then_reads_as_if_built_at_once(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, FAILURES_RULE, build_budget=0.0)  # 0 s a tick: one bucket per tick
    at_once = Engine(load_rules([h.path]), h.series, h.clock, gauges=h.observer.gauges)
    _fail_every_5s(h.series, T0 - 900, T0)  # a quarter of an hour before the rule was loaded
    (rt,) = h.engine.runtimes.values()
    (ref,) = at_once.runtimes.values()
    t = T0
    evaluated = []
    for _ in range(200):
        t += 1
        h.clock.set(t)
        if (t - T0) % 5 == 0:
            _fail_every_5s(h.series, t, t + 1)  # and failures go on, one a bucket
        h.engine.tick(t)
        at_once.tick(t)
        if rt.last_evaluation is not None:
            evaluated.append(t)
            if rt.last_evaluation == t:
                assert rt.last_values == ref.last_values and ref.last_values[("t.pay",)] in (119.0, 120.0)
    # 119 buckets before the open one, one per tick from the newest down, while the window's start
    # moves up one every 5 ticks: they meet after ~99 ticks, then it is its group's turn (every 10 s)
    assert ref.last_evaluation is not None and evaluated and T0 + 99 <= evaluated[0] <= T0 + 110
    assert [a.labels["task"] for a in h.engine.alerts()] == ["t.pay"]


def test_a_reload_that_changes_only_a_threshold_keeps_the_rules_window(tmp_path: Path) -> None:
    h = Harness(tmp_path, FAILURES_RULE)
    _fail_every_5s(h.series, T0 - 600, T0)
    h.step(1)
    (before,) = h.engine.runtimes.values()
    view = before.views["tasks_failed"]
    h.engine.replace_rules(load_rules([_write(h.path, FAILURES_RULE.replace("above: 50", "above: 200"))]))
    (after,) = h.engine.runtimes.values()
    assert after is not before  # a changed rule: its alert state starts over, its window does not
    h.step(10)
    assert after.views["tasks_failed"] is view and after.last_values == _failures(h, 600)
    h.engine.replace_rules(load_rules([_write(h.path, FAILURES_RULE.replace("window: 10m", "window: 5m"))]))
    h.step(10)
    (other,) = h.engine.runtimes.values()
    assert other.views["tasks_failed"] is not view and other.last_values == _failures(h, 300)


def _failures(h: Harness, window: float) -> dict[tuple[str, ...], float]:
    """What the rule should read at its last evaluation, by task, from the store's own per-series sums."""
    (rt,) = h.engine.runtimes.values()
    assert rt.last_evaluation is not None
    out: dict[tuple[str, ...], float] = {}
    for labels, v in h.series.sums("tasks_failed", window, rt.last_evaluation).items():
        out[labels[:1]] = out.get(labels[:1], 0.0) + v
    return out


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_state_survives_a_restart(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.queue("default", 150)
    h.step(20)  # pending
    saved = h.engine.export_state()
    h2 = Harness(tmp_path)
    h2.clock.set(h.clock.now())
    h2.engine.import_state(saved)
    h2.queue("default", 150)
    # the pending timer carried over: firing 30 s after it first became true, not 30 s after restart
    assert h2.step(20) == ["firing:default"]


def test_series_cap_raises_a_meta_alert_instead_of_growing(tmp_path: Path) -> None:
    h = Harness(tmp_path, QUEUE_RULE.replace("for: 30s", "for: 0s"), max_series_per_rule=3)
    for i in range(5):
        h.queue(f"q{i}", 500)
    h.step(1)
    names = sorted(a.name for a in h.engine.alerts() if a.state is AlertState.FIRING)
    assert names.count("QueueLong") == 3 and SERIES_LIMIT_ALERT in names
    meta = next(a for a in h.engine.alerts() if a.name == SERIES_LIMIT_ALERT)
    assert meta.labels["rule"] == "QueueLong" and meta.value == 2
    states = {s["name"]: s for s in h.engine.rule_states()}
    assert states["QueueLong"]["series_over_limit"] == 2


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ labels.__class__.__init__.__globals__ }}",
        "{{ value.__class__.__base__.__subclasses__() }}",
    ],
)
def test_templates_cannot_reach_python_internals(source: str) -> None:
    out = Template(source).render({"queue": "q"}, 1.0)
    assert out.startswith("<template error") or out == ""
    assert "subclasses" not in out and "function" not in out
