"""The rule test file as users write it (`alertd test`, like `promtool test rules`): rule files,
then tests of events, samples and the alerts expected at given times."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from alertd.periodic.testing import TestEntry
from alertd.schema import Seconds, Strict

T0 = 1_700_000_000.0  # virtual epoch of every test; a multiple of common bucket sizes


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
    periodic: list[TestEntry] = []  # beat schedule entries checked by the periodic_* gauges
    expect: list[Expectation]


class TestFile(Strict):
    rule_files: list[str]
    tests: list[TestCase]
