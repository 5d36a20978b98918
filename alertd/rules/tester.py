"""Rule unit tests, like `promtool test rules`, fed with Celery events on a virtual clock.

A test file names rule files, then lists tests: events (inline series or a capture), samples
(queues, workers, broker, stream), and the alerts expected to be firing at given times. The real
observer, series store and engine run on a VirtualClock: a 26-hour dead man's switch is checked in
a fraction of a second, and a test means what the daemon would do.
"""

from __future__ import annotations

import time
import uuid as uuidlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import re2
from pydantic import Field

from alertd.alert import AlertState
from alertd.clock import VirtualClock
from alertd.durations import format_duration
from alertd.matchers import RE2_OPTIONS
from alertd.observe.observer import Observer
from alertd.observe.series import SeriesStore
from alertd.rules.engine import Engine
from alertd.rules.loader import load_rules
from alertd.samples import BrokerSample, QueueSample, WorkerSample
from alertd.schema import Seconds, Strict
from alertd.sources.health import StreamHealth
from alertd.sources.jsonl import event_time, read_capture
from alertd.yamlfile import FileError, Problem, load_yaml, validate

T0 = 1_700_000_000.0  # virtual epoch of every test; a multiple of common bucket sizes
PRODUCER = "producer@test"


class EventItem(Strict):
    at: Seconds
    repeat: int = Field(1, ge=1, le=1_000_000)
    every: Seconds = 1.0
    type: str
    task: str = "app.task"
    queue: str = "celery"
    worker: str = Field("celery@test", alias="hostname")
    exception: str | None = None  # e.g. "ValueError('bad input')" for task-failed / task-retried
    traceback: str = ""
    runtime: float = 0.1  # seconds from started to the final event
    wait: float = 0.0  # queue wait: seconds from sent to started
    # of that wait, how long a worker held it (prefetched) before it started; the rest it spent in
    # the broker. Default: all of it (received as soon as sent).
    prefetched: Seconds | None = None
    eta: Seconds | None = None  # seconds after sent; makes the task an ETA/countdown task
    freq: float = 2.0  # worker events
    active: int = 0
    raw: bool = False  # emit only this event, not the task's earlier events
    fields: dict[str, Any] = {}  # extra raw event fields


class SampleItem(Strict):
    at: Seconds
    repeat: int = Field(1, ge=1, le=1_000_000)
    every: Seconds = 15.0
    queue: str | None = None
    messages: int = 0
    consumers: int | None = None
    worker: str | None = None
    pool_size: int | None = None
    memory_bytes: int | None = None
    cpu_seconds: float | None = None
    cpu_per_sample: float = 0.0  # added to cpu_seconds on each repeat: a steady CPU load
    memory_per_sample: int = 0  # added to memory_bytes on each repeat: a leak
    broker_ok: bool | None = None
    stream: str | None = Field(None, pattern="^(up|down)$")
    store: str | None = Field(None, pattern="^(up|down)$")  # alertd's state store (the store_up gauge)


class ExpectedAlert(Strict):
    labels: dict[str, str]
    annotations: dict[str, str] | None = None


class Expectation(Strict):
    at: Seconds
    alerts: list[ExpectedAlert] = []


class TestCase(Strict):
    name: str
    events: list[EventItem] = []
    events_file: str | None = None
    samples: list[SampleItem] = []
    expect: list[Expectation]


class TestFile(Strict):
    rule_files: list[str]
    tests: list[TestCase]


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
    for path in paths:
        try:
            doc = load_yaml(path)
            spec = validate(TestFile, doc)
            rule_paths = [(path.parent / f).resolve() for f in spec.rule_files]
            rules = load_rules(rule_paths)
        except FileError as e:
            results.append(Result(str(path), "(load)", False, "\n".join(str(p) for p in e.problems)))
            continue
        for i, case in enumerate(spec.tests):
            if pattern and not pattern.search(case.name):
                continue
            started = time.perf_counter()
            try:
                message = _run_case(path, case, rules, doc.line(("tests", i)) or 0)
            except FileError as e:
                message = "\n".join(str(p) for p in e.problems)
            results.append(Result(str(path), case.name, not message, message, time.perf_counter() - started))
    return results


def _run_case(path: Path, case: TestCase, rules: Any, line: int) -> str:
    clock = VirtualClock(start=T0)
    series = SeriesStore(bucket_seconds=5.0, retention_seconds=6 * 3600)
    health = StreamHealth(transport="test")
    health.mark_connected(T0)
    observer = Observer(series, clock, health=health)
    store_up: dict[tuple[str, ...], float] = {(): 1.0}

    def gauges(now: float) -> dict[str, Mapping[tuple[str, ...], float]]:
        # as the daemon does: its own store_up merged into the observer's gauges
        return {**observer.gauges(now), "store_up": store_up}

    engine = Engine(
        rules,
        series,
        clock,
        gauges=gauges,
        watch=observer.watch,
        expect_task=observer.expect_task,
        details=observer.details,
    )

    timeline: list[tuple[float, int, Any]] = []
    for k, item in enumerate(case.events):
        for r in range(item.repeat):
            for ev in _expand(item, item.at + r * item.every, f"{k}.{r}"):
                timeline.append((float(ev["local_received"]) - T0, 0, ev))
    if case.events_file:
        first: float | None = None
        for lineno, captured in read_capture(path.parent / case.events_file):
            at = event_time(captured) if captured else None
            if captured is None or at is None:
                raise FileError([Problem(case.events_file, lineno, "", "not a captured event")])
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
                    _deliver(observer, health, batch)
                    batch = []
                _sample(observer, health, payload, now)
                if payload[0].store is not None:
                    store_up[()] = 1.0 if payload[0].store == "up" else 0.0
            i += 1
        if batch:
            _deliver(observer, health, batch)
        engine.tick(now)
        while expects and expects[0].at <= step:
            exp = expects.pop(0)
            msg = _compare(exp, engine)
            if msg:
                failures.append(f"at {format_duration(exp.at)}:\n{msg}")
        step += 1
    return "\n".join(failures)


def _deliver(observer: Observer, health: StreamHealth, batch: list[dict[str, Any]]) -> None:
    observer.on_events(batch)
    health.events += len(batch)
    health.last_event_at = max(float(e["local_received"]) for e in batch)


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


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def _expand(item: EventItem, at: float, n: str) -> list[dict[str, Any]]:
    """One item occurrence as the Celery events a real deployment would send for it."""
    t = T0 + at
    if item.type.startswith("worker-"):
        return [
            {
                "type": item.type,
                "hostname": item.worker,
                "freq": item.freq,
                "active": item.active,
                "timestamp": t,
                "local_received": t,
                **item.fields,
            }
        ]
    uid = str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"alertd-test:{n}"))
    state = item.type.removeprefix("task-")
    started = t - item.runtime if state in ("succeeded", "failed", "retried") else t
    sent = started - item.wait
    received = sent if item.prefetched is None else max(sent, started - item.prefetched)
    eta = _iso(sent + item.eta) if item.eta is not None else None
    if state in ("rejected", "revoked"):
        started = sent = t
    final: dict[str, Any] = {
        "type": item.type,
        "uuid": uid,
        "hostname": item.worker,
        "timestamp": t,
        "local_received": t,
    }
    if state == "succeeded":
        final["runtime"] = item.runtime
    if state in ("failed", "retried"):
        final["exception"] = item.exception or "Exception()"
        final["traceback"] = item.traceback
    final.update(item.fields)
    if item.raw or state == "sent":
        if state == "sent":
            final.update(name=item.task, queue=item.queue, hostname=PRODUCER, eta=eta)
        return [final]
    chain: list[dict[str, Any]] = [
        {
            "type": "task-sent",
            "uuid": uid,
            "name": item.task,
            "queue": item.queue,
            "hostname": PRODUCER,
            "eta": eta,
            "timestamp": sent,
            "local_received": sent,
        },
        {
            "type": "task-received",
            "uuid": uid,
            "name": item.task,
            "hostname": item.worker,
            "eta": eta,
            "timestamp": received,
            "local_received": received,
        },
    ]
    if state == "received":
        chain[1].update(timestamp=t, local_received=t)
        return chain
    if state in ("rejected", "revoked"):
        return [*chain, final]
    chain.append(
        {"type": "task-started", "uuid": uid, "hostname": item.worker, "timestamp": started, "local_received": started}
    )
    if state == "started":
        return chain
    return [*chain, final]


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


def junit_xml(results: Sequence[Result]) -> bytes:
    """JUnit XML, one testsuite per file, for CI systems."""
    root = ET.Element("testsuites")
    by_file: dict[str, list[Result]] = {}
    for r in results:
        by_file.setdefault(r.file, []).append(r)
    for file, rs in by_file.items():
        suite = ET.SubElement(root, "testsuite", name=file, tests=str(len(rs)), failures=str(sum(not r.ok for r in rs)))
        for r in rs:
            case = ET.SubElement(suite, "testcase", classname=file, name=r.name, time=f"{r.seconds:.3f}")
            if not r.ok:
                ET.SubElement(
                    case, "failure", message=r.message.splitlines()[0] if r.message else "failed"
                ).text = r.message
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))
