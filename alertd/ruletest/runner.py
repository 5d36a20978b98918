"""Rule unit tests, like `promtool test rules`, fed with Celery events on a virtual clock.

A test file names rule files, then lists tests: events (inline series or a capture), samples
(queues, workers, broker, stream), and the alerts expected to be firing at given times. The
evaluation harness `alertd run` uses runs on a VirtualClock: a 26-hour dead man's switch is
checked in a fraction of a second, and a test means what the daemon would do.
"""

from __future__ import annotations

import asyncio
import functools
import math
import operator
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
from alertd.rules.engine import Engine
from alertd.rules.loader import load_rules
from alertd.ruletest.events import expand
from alertd.ruletest.spec import T0, Expectation, SampleItem, TestCase, TestFile
from alertd.samples import BrokerSample, QueueSample, WorkerSample
from alertd.stepper import Item, Stepper
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
    health, engine = evaluation.health, evaluation.engine
    health.transport = "test"
    health.mark_connected(T0)
    evaluation.periodic.set_entries([e.entry() for e in case.periodic], T0)

    events: list[tuple[float, Item]] = []
    for k, item in enumerate(case.events):
        for r in range(item.repeat):
            for ev in expand(item, item.at + r * item.every, f"{k}.{r}"):
                events.append((float(ev["local_received"]), ev))
    if case.events_file:
        first: float | None = None
        for at, captured in captured_events(path.parent / case.events_file, health):
            first = at if first is None else first
            received = T0 + at - first
            events.append((received, {**captured, "local_received": received}))
    samples: list[tuple[float, Item]] = []
    for s in case.samples:
        for r in range(s.repeat):
            samples.append((T0 + s.at + r * s.every, functools.partial(_sample, evaluation, store, s, r)))
    # A stable sort by time: at the same time events come before samples, as they always have.
    timeline = sorted(events + samples, key=operator.itemgetter(0))
    expects = sorted(case.expect, key=lambda e: e.at)
    failures: list[str] = []

    def compare(exp: Expectation) -> None:
        msg = _compare(exp, engine)
        if msg:
            failures.append(f"at {format_duration(exp.at)}:\n{msg}")

    async def step() -> None:
        engine.tick(clock.now())

    # Items are evaluated at the step of their time; the engine says when its next group is due,
    # so the stepper skips the seconds where nothing can change (alertd/stepper.py).
    stepper = Stepper(
        clock,
        evaluation.deliver,
        step=step,
        start=T0,
        at_step=True,
        idle_until=lambda: min(engine.next_eval.values(), default=None),
        alone=True,
    )
    checks = [(T0 + e.at, functools.partial(compare, e)) for e in expects]
    # to the step at or after the last expectation: one at 150.5 s is compared after the 151 s step
    # (stopping at 150.5 ran no step past 150, and never compared it)
    end = math.ceil(expects[-1].at) if expects else 0.0
    asyncio.run(stepper.run(timeline, until=T0 + end, checks=checks))
    return "\n".join(failures)


def _sample(evaluation: Evaluation, store: dict[str, bool], s: SampleItem, r: int) -> None:
    """The r-th repeat of a test's sample, taken now (at the step it is due)."""
    observer, health, now = evaluation.observer, evaluation.health, evaluation.clock.now()
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
    if s.store is not None:
        store["up"] = s.store == "up"


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
