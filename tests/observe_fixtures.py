"""Celery events shaped exactly as a real worker publishes them, for observer tests on a virtual clock.

The field sets below were recorded once from a Celery 5.7 prefork worker (tests/celeryapp.py on
Redis) through alertd's source, which adds `local_received`. Tests build events with these
helpers so the observer is fed what it will really see, not a convenient subset.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from celery import Celery

from alertd.clock import VirtualClock
from alertd.observe.observer import Observer
from alertd.observe.series import SeriesStore
from tests.waiting import (
    T0,
    wait_for,  # noqa: F401 (tests import it from here too)
)

PRODUCER = "gen28271@web"

TIMEOUT_TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/venv/lib/python3.11/site-packages/billiard/pool.py", line 745, in on_hard_timeout\n'
    "    raise TimeLimitExceeded(job._timeout)\n"
    "billiard.exceptions.TimeLimitExceeded: TimeLimitExceeded(1,)\n"
)


def value_error_traceback(frames: int = 3) -> str:
    lines = ["Traceback (most recent call last):"]
    for i in range(frames):
        lines += [f'  File "/app/frame{i}.py", line {i + 1}, in f{i}', f"    f{i + 1}()"]
    return "\n".join([*lines, "ValueError: x", ""])


class Events:
    """Builds events at the clock's time; `skew` moves the senders' clocks (timestamp), not ours."""

    def __init__(self, clock: VirtualClock, skew: float = 0.0) -> None:
        self.clock = clock
        self.skew = skew
        self._n = 0

    def _base(self, type: str, hostname: str) -> dict[str, Any]:
        self._n += 1
        now = self.clock.now()
        return {
            "hostname": hostname,
            "utcoffset": 0.0,
            "pid": 28272,
            "clock": self._n,
            "timestamp": now + self.skew,
            "type": type,
            "local_received": now,
        }

    @staticmethod
    def uuid() -> str:
        return str(uuidlib.uuid4())

    def eta_in(self, seconds: float) -> str:
        """Celery's eta field: ISO 8601 with the producer's UTC offset."""
        return datetime.fromtimestamp(self.clock.now() + self.skew + seconds, UTC).isoformat()

    def sent(
        self, uuid: str, name: str, queue: str = "celery", eta: str | None = None, retries: int = 0
    ) -> dict[str, Any]:
        return {
            **self._base("task-sent", PRODUCER),
            "uuid": uuid,
            "root_id": uuid,
            "parent_id": None,
            "name": name,
            "args": "(1, 2)",
            "kwargs": "{}",
            "retries": retries,
            "eta": eta,
            "expires": None,
            "queue": queue,
            "exchange": "",
            "routing_key": queue,
        }

    def received(
        self, uuid: str, name: str, worker: str = "celery@w1", eta: str | None = None, retries: int = 0
    ) -> dict[str, Any]:
        return {
            **self._base("task-received", worker),
            "uuid": uuid,
            "name": name,
            "args": "(1, 2)",
            "kwargs": "{}",
            "root_id": uuid,
            "parent_id": None,
            "retries": retries,
            "eta": eta,
            "expires": None,
        }

    def started(self, uuid: str, worker: str = "celery@w1") -> dict[str, Any]:
        return {**self._base("task-started", worker), "uuid": uuid}

    def succeeded(self, uuid: str, worker: str = "celery@w1", runtime: float = 0.01) -> dict[str, Any]:
        return {**self._base("task-succeeded", worker), "uuid": uuid, "result": "3", "runtime": runtime}

    def failed(
        self,
        uuid: str,
        worker: str = "celery@w1",
        exception: str = "ValueError('x')",
        traceback: str | None = None,
    ) -> dict[str, Any]:
        tb = value_error_traceback() if traceback is None else traceback
        return {**self._base("task-failed", worker), "uuid": uuid, "exception": exception, "traceback": tb}

    def retried(
        self, uuid: str, worker: str = "celery@w1", exception: str = "ConnectionError('transient')"
    ) -> dict[str, Any]:
        tb = "Traceback (most recent call last):\n  File x\nConnectionError: transient\n"
        return {**self._base("task-retried", worker), "uuid": uuid, "exception": exception, "traceback": tb}

    def revoked(self, uuid: str, worker: str = "celery@w1") -> dict[str, Any]:
        return {
            **self._base("task-revoked", worker),
            "uuid": uuid,
            "terminated": True,
            "signum": 15,
            "expired": False,
        }

    def rejected(self, uuid: str, worker: str = "celery@w1") -> dict[str, Any]:
        return {**self._base("task-rejected", worker), "uuid": uuid, "requeue": False}

    def worker(
        self, type: str, hostname: str = "celery@w1", freq: float = 2.0, active: int = 0, processed: int = 0
    ) -> dict[str, Any]:
        """worker-online, worker-heartbeat or worker-offline."""
        return {
            **self._base(type, hostname),
            "freq": freq,
            "active": active,
            "processed": processed,
            "loadavg": [0.45, 0.56, 0.54],
            "sw_ident": "py-celery",
            "sw_ver": "5.7.0",
            "sw_sys": "Linux",
        }

    def lifecycle(self, name: str, queue: str = "celery", worker: str = "celery@w1") -> list[dict[str, Any]]:
        """sent, received and started at the same instant (for tests that only need a task in flight)."""
        u = self.uuid()
        return [self.sent(u, name, queue), self.received(u, name, worker), self.started(u, worker)]


@pytest.fixture(name="clock")
def clock_fixture() -> VirtualClock:
    return VirtualClock(start=T0)


@pytest.fixture(name="series")
def series_fixture() -> SeriesStore:
    return SeriesStore(bucket_seconds=1, retention_seconds=3600)


@pytest.fixture(name="events")
def events_fixture(clock: VirtualClock) -> Events:
    return Events(clock)


@pytest.fixture(name="observer")
def observer_fixture(series: SeriesStore, clock: VirtualClock) -> Observer:
    return Observer(series, clock, worker_lost_after=10.0, heartbeat_misses=2.5)


@pytest.fixture(name="producer")
def producer_fixture() -> Iterator[Callable[..., Celery]]:
    """make(broker, keyprefix="") -> a producer app with task-sent events on, closed at the end.

    A private `global_keyprefix` (the same for worker, producer and source) keeps other tests'
    events on the shared Redis db 13 out of a test's stream.
    """
    apps: list[Celery] = []

    def make(broker: str, keyprefix: str = "") -> Celery:
        app = Celery("observe-producer", broker=broker, set_as_current=False)
        app.conf.task_send_sent_event = True
        if keyprefix:
            app.conf.broker_transport_options = {"global_keyprefix": keyprefix}
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()
