"""Rule unit tests, like `promtool test rules`, fed with Celery events on a virtual clock.

A test file names rule files, then lists tests: events (inline series or a capture), samples
(queues, workers, broker, stream), and the alerts expected to be firing at given times. The
evaluation harness `alertd run` uses runs on a VirtualClock: a 26-hour dead man's switch is
checked in a fraction of a second, and a test means what the daemon would do.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import re2

from alertd.alert import AlertState
from alertd.clock import VirtualClock
from alertd.config import Config
from alertd.durations import format_duration
from alertd.evaluation import Evaluation, captured_events
from alertd.matchers import RE2_OPTIONS
from alertd.observe.observer import Observer
from alertd.rules.engine import Engine
from alertd.rules.loader import load_rules
from alertd.ruletest.events import expand
from alertd.ruletest.spec import T0, Expectation, SampleItem, TestCase, TestFile
from alertd.samples import BrokerSample, QueueSample, WorkerSample
from alertd.sources.health import StreamHealth
from alertd.yamlfile import FileError, load_yaml, validate


@dataclass
class Result:
    file: str
    name: str
    ok: bool
    message: str = ""
    seconds: float = 0.0


def run_test_files(paths: Sequence[Path], run: str | None = None) -> list[Result]:
    """Run every test in the files (those whose name matches `run`). Load errors become failures."""
    # --run is RE2, as every regex alertd takes from a person is (promtool's, in Go, is too)
    try:
        pattern = re2.compile(run, RE2_OPTIONS) if run else None
    except re2.error as e:
        raise ValueError(f"--run: invalid regex {run!r}: {e.args[0].decode(errors='replace')}") from None
    results: list[Result] = []
    loaded: dict[tuple[Path, ...], Any] = {}  # test files naming the same rule files load them once
    for path in paths:
        try:
            doc = load_yaml(path)
            spec = validate(TestFile, doc)
            cases = [(i, c) for i, c in enumerate(spec.tests) if not pattern or pattern.search(c.name)]
            if not cases:
                continue  # none selected by --run: its rules need not even load
            rule_paths = tuple((path.parent / f).resolve() for f in spec.rule_files)
            if rule_paths not in loaded:
                loaded[rule_paths] = load_rules(list(rule_paths))
            rules = loaded[rule_paths]
        except FileError as e:
            results.append(Result(str(path), "(load)", False, "\n".join(str(p) for p in e.problems)))
            continue
        for i, case in cases:
            started = time.perf_counter()
            try:
                message = _run_case(path, case, rules, doc.line(("tests", i)) or 0)
            except FileError as e:
                message = "\n".join(str(p) for p in e.problems)
            results.append(Result(str(path), case.name, not message, message, time.perf_counter() - started))
    return results


def _run_case(path: Path, case: TestCase, rules: Any, line: int) -> str:
    clock = VirtualClock(start=T0)
    store = {"up": True}  # the daemon's own store_up gauge, which samples may turn down
    # Evaluated as `alertd run` evaluates, with its default settings (alertd.evaluation).
    evaluation = Evaluation(Config(), rules, clock, store_up=lambda: store["up"])
    health, observer, engine = evaluation.health, evaluation.observer, evaluation.engine
    health.transport = "test"
    health.mark_connected(T0)
    evaluation.periodic.set_entries([e.entry() for e in case.periodic], T0)

    timeline: list[tuple[float, int, Any]] = []
    for k, item in enumerate(case.events):
        for r in range(item.repeat):
            for ev in expand(item, item.at + r * item.every, f"{k}.{r}"):
                timeline.append((float(ev["local_received"]) - T0, 0, ev))
    if case.events_file:
        first: float | None = None
        for at, captured in captured_events(path.parent / case.events_file, health):
            first = at if first is None else first
            timeline.append((at - first, 0, {**captured, "local_received": T0 + at - first}))
    for s in case.samples:
        for r in range(s.repeat):
            timeline.append((s.at + r * s.every, 1, (s, r)))
    timeline.sort(key=lambda x: (x[0], x[1]))
    expects = sorted(case.expect, key=lambda e: e.at)
    end = expects[-1].at if expects else 0.0

    failures: list[str] = []
    i = 0
    step = 0
    while step <= end:
        now = T0 + step
        clock.set(now)
        batch = []
        while i < len(timeline) and timeline[i][0] <= step:
            _, kind, payload = timeline[i]
            if kind == 0:
                batch.append(payload)
            else:
                if batch:
                    _deliver(evaluation, batch)
                    batch = []
                _sample(observer, health, payload, now)
                if payload[0].store is not None:
                    store["up"] = payload[0].store == "up"
            i += 1
        if batch:
            _deliver(evaluation, batch)
        engine.tick(now)
        while expects and expects[0].at <= step:
            exp = expects.pop(0)
            msg = _compare(exp, engine)
            if msg:
                failures.append(f"at {format_duration(exp.at)}:\n{msg}")
        # Nothing changes between the next item, the next expectation and the next evaluation of
        # a rule group: go straight there, a second at a time as the daemon would see it, so a
        # 26-hour dead man's switch takes a few thousand steps instead of 93,600.
        upcoming = [end]
        if i < len(timeline):
            upcoming.append(math.ceil(timeline[i][0]))
        if expects:
            upcoming.append(math.ceil(expects[0].at))
        if engine.next_eval:
            upcoming.append(math.ceil(min(engine.next_eval.values()) - T0))
        step = max(step + 1, int(min(upcoming)))
    return "\n".join(failures)


def _deliver(evaluation: Evaluation, batch: list[dict[str, Any]]) -> None:
    evaluation.deliver(batch, max(float(e["local_received"]) for e in batch))


def _sample(observer: Observer, health: StreamHealth, payload: tuple[SampleItem, int], now: float) -> None:
    s, r = payload
    if s.queue is not None:
        observer.on_queue_sample(QueueSample(s.queue, s.messages, s.consumers, now))
    if s.worker is not None:
        cpu = None if s.cpu_seconds is None else s.cpu_seconds + r * s.cpu_per_sample
        mem = None if s.memory_bytes is None else s.memory_bytes + r * s.memory_per_sample
        observer.on_worker_sample(WorkerSample(s.worker, now, s.pool_size, mem, cpu))
    if s.broker_ok is not None:
        observer.on_broker_sample(BrokerSample(ok=s.broker_ok, at=now, error="" if s.broker_ok else "test"))
    if s.stream == "down":
        health.mark_disconnected(now, "test")
    elif s.stream == "up":
        health.mark_connected(now)


def _fmt(labels: dict[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def _compare(exp: Expectation, engine: Engine) -> str:
    firing = [a for a in engine.alerts() if a.state is AlertState.FIRING]
    got = sorted(_fmt(a.labels) for a in firing)
    want = sorted(_fmt(e.labels) for e in exp.alerts)
    lines: list[str] = []
    if got != want:
        lines.append("  firing alerts differ:")
        lines.extend(f"    - expected, not firing: {x}" for x in want if x not in got)
        lines.extend(f"    + firing, not expected: {x}" for x in got if x not in want)
        return "\n".join(lines)
    by_labels = {_fmt(a.labels): a for a in firing}
    for e in exp.alerts:
        if e.annotations is None:
            continue
        alert = by_labels[_fmt(e.labels)]
        for k, v in e.annotations.items():
            if alert.annotations.get(k) != v:
                lines.append(
                    f"  {_fmt(e.labels)} annotation {k}:\n    expected: {v!r}\n    got:      "
                    f"{alert.annotations.get(k)!r}"
                )
    return "\n".join(lines)
