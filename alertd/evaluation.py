"""The evaluation harness: stream health, series store, observer and rules engine, wired once.

`alertd run` (the daemon), `alertd run --replay` and `alertd test` all evaluate through this, so
a rule behaves the same live, replayed and under test: the same gauges (the observer's plus the
daemon's own store_up), the same engine options, and one policy for a capture line that is not
an event - counted as malformed, logged with file and line, skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alertd.alert import Alert
from alertd.clock import Clock, VirtualClock
from alertd.config import Config
from alertd.observe.observer import Observer
from alertd.observe.series import SeriesStore
from alertd.periodic.checks import Periodic
from alertd.redact import redact_url
from alertd.rules.engine import Engine
from alertd.rules.loader import RuleSet
from alertd.sources import EventSource, open_event_source
from alertd.sources.health import StreamHealth
from alertd.sources.jsonl import ReplaySource, event_time, read_capture, skip_malformed
from alertd.sources.sampler import Sampler

log = logging.getLogger("alertd")

Gauges = dict[str, Mapping[tuple[str, ...], float]]


class Evaluation:
    """What turns Celery events and samples into alerts, on an injected clock."""

    def __init__(
        self,
        config: Config,
        rules: RuleSet,
        clock: Clock,
        *,
        store_up: Callable[[], bool] = lambda: True,
        owes_resolved: Callable[[str, float | None], bool] | None = None,
        evictions: Callable[[], dict[str, int]] | None = None,
        build_budget: float | None = None,
    ) -> None:
        observe = config.observe
        self.clock = clock
        self.store_up = store_up
        self.health = StreamHealth(broker=redact_url(config.broker))
        self.series = SeriesStore(
            bucket_seconds=observe.bucket, retention_seconds=observe.retention, max_series=observe.max_series
        )
        self.observer = Observer(
            self.series,
            clock,
            max_tasks=observe.max_tasks,
            max_workers=observe.max_workers,
            worker_lost_after=observe.worker_lost_after,
            heartbeat_misses=observe.heartbeat_misses,
            restart_grace=observe.restart_grace,
            recent_starts=observe.recent_starts,
            max_clock_skew=observe.max_clock_skew,
            health=self.health,
            max_task_names=observe.max_task_names,
            max_orphans=observe.max_orphans,
            max_senders=observe.max_senders,
            max_queues=config.sampler.max_queues,
        )
        for task in observe.expect_tasks:
            self.observer.expect_task(task)
        self.periodic = Periodic.watching(config.periodic, self.observer, clock)  # docs/periodic.md
        self.engine = Engine(
            rules,
            self.series,
            clock,
            gauges=self.gauges,
            watch=self.observer.watch,
            expect_task=self.observer.expect_task,
            max_event_keys=observe.max_event_keys,
            details=self.observer.details,
            build_budget=build_budget,
            max_resolved=observe.max_resolved_alerts,
            owes_resolved=owes_resolved,
            evictions=evictions,
        )

    def ingest(self, config: Config) -> tuple[EventSource, Sampler]:
        """The event source and the sampler that feed this evaluation, as alertd.yaml sets them
        (not started: the daemon starts and stops them)."""
        events, sampler = config.events, config.sampler
        options = config.broker_transport_options or None
        source = open_event_source(
            config.broker,
            self.observer.on_events,
            self.clock,
            self.health,
            transport_options=options,
            durable_queue=events.durable_queue,
            durable_queue_ttl=events.durable_queue_ttl,
            reconnect_max=events.reconnect_max,
            transport=events.transport,
            exchange=events.exchange,
            queue_ttl=events.queue_ttl,
            queue_expires=events.queue_expires,
            decode=events.decode,
        )
        return source, Sampler(
            config.broker,
            self.clock,
            on_queue=self.observer.on_queue_sample,
            on_worker=self.observer.on_worker_sample,
            on_broker=self.observer.on_broker_sample,
            queues=list(sampler.queues),
            interval=sampler.interval,
            inspect=sampler.inspect,
            inspect_timeout=sampler.inspect_timeout,
            transport_options=options,
            max_queues=sampler.max_queues,
        )

    def gauges(self, now: float) -> Gauges:
        """The observer's gauges plus the daemon's own, for the rules engine."""
        gauges: Gauges = dict(self.observer.gauges(now))
        gauges["store_up"] = {(): 1.0 if self.store_up() else 0.0}
        gauges.update(self.periodic.gauges(now))
        return gauges

    def deliver(self, batch: list[dict[str, Any]], at: float) -> None:
        """Events already stamped with their receive time (a capture, a test), as a source would."""
        self.observer.on_events(batch)
        self.health.events += len(batch)
        self.health.last_event_at = at


def captured_events(path: Path, health: StreamHealth) -> Iterator[tuple[float, dict[str, Any]]]:
    """(receive time, event) of each event in a capture; other lines counted, logged, skipped."""
    for lineno, event in read_capture(path):
        at = event_time(event) if event is not None else None
        if event is None or at is None:
            skip_malformed(health, path, lineno)
            continue
        yield at, event


@dataclass
class ReplaySummary:
    events: int = 0
    malformed: int = 0
    transitions: list[Alert] = field(default_factory=list)


async def replay(
    evaluation: Evaluation,
    path: Path,
    tick: Callable[[], Awaitable[list[Alert]]],
    *,
    step: float,
    tail: float = 0.0,
) -> ReplaySummary:
    """Feed a capture through on virtual time, calling `tick` every `step` as a live daemon would.

    The clock must be a VirtualClock: rule windows, `for` and group timers then behave as they
    did when the events were recorded, in a fraction of the time. The capture's samples and
    stream marks, where it has them, go to the observer and the stream health at their times.
    """
    clock = evaluation.clock
    if not isinstance(clock, VirtualClock):
        raise TypeError("replay needs a VirtualClock")
    health, observer = evaluation.health, evaluation.observer
    summary = ReplaySummary()
    events_before, malformed_before = health.events, health.malformed

    async def ticked() -> None:
        summary.transitions.extend(await tick())

    source = ReplaySource(
        path,
        observer.on_events,
        clock,
        health,
        on_queue=observer.on_queue_sample,
        on_worker=observer.on_worker_sample,
        on_broker=observer.on_broker_sample,
        step=ticked,
        step_seconds=step,
        tail=tail,
    )
    await source.start()
    try:
        await source.wait_done()
    finally:
        await source.stop()
    summary.events = health.events - events_before
    summary.malformed = health.malformed - malformed_before
    return summary
