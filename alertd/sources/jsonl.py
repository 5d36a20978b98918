"""Captures: what a live daemon's sources delivered, as JSON lines, one a line.

`alertd capture` writes them; `alertd run --replay`, rule tests (`events_file:`) and ReplaySource
read them. Two kinds of line:

- an event, exactly as the observer received it, including `local_received` (any object with a
  string `type`; a capture of events only is what every version wrote);
- a record of alertd's own, an object with an `alertd` key naming what it is, at time `at`:
  `queue`, `worker` and `broker` are the sampler's samples (alertd/samples.py, field for field),
  `stream` is the event stream's connectivity (`connected` true/false, `error`), as
  sources/health.py StreamHealth was told it. Readers that want events only skip them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from alertd.clock import Clock, VirtualClock
from alertd.samples import BrokerSample, QueueSample, WorkerSample
from alertd.sources.health import StreamHealth
from alertd.stepper import Item, Stepper

log = logging.getLogger(__name__)

RECORD_KEY = "alertd"


@dataclass(frozen=True, slots=True)
class StreamMark:
    """The event stream connected (or reconnected), or lost its connection, at `at`."""

    connected: bool
    at: float
    error: str = ""


Sample = QueueSample | WorkerSample | BrokerSample
Record = Sample | StreamMark
_KINDS: dict[str, type[Record]] = {
    "queue": QueueSample,
    "worker": WorkerSample,
    "broker": BrokerSample,
    "stream": StreamMark,
}
_NAMES = {cls: name for name, cls in _KINDS.items()}


def record_line(record: Record) -> bytes:
    """One JSON line for a sample or stream mark."""
    return orjson.dumps(
        {RECORD_KEY: _NAMES[type(record)], **dataclasses.asdict(record)}, option=orjson.OPT_APPEND_NEWLINE
    )


def parse_record(obj: dict[str, Any]) -> Record | None:
    """The sample or stream mark of a record line; None when it is not one this version knows."""
    cls = _KINDS.get(obj.get(RECORD_KEY))  # type: ignore[arg-type]
    if cls is None:
        return None
    fields = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in obj.items() if k in fields}
    if cls is WorkerSample and isinstance(values.get("queues"), list):
        values["queues"] = tuple(str(q) for q in values["queues"])
    if not isinstance(values.get("at"), int | float):
        return None
    values["at"] = float(values["at"])
    try:
        return cls(**values)
    except TypeError:  # a required field missing
        return None


class CaptureWriter:
    """Appends batches of events, samples and stream marks to a JSONL file, in arrival order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[bytes] = path.open("wb")
        self.events = 0
        self.records = 0

    def write(self, events: list[dict[str, Any]]) -> None:
        self._fh.write(b"".join(orjson.dumps(e, option=orjson.OPT_APPEND_NEWLINE) for e in events))
        self.events += len(events)

    def write_record(self, record: Record) -> None:
        self._fh.write(record_line(record))
        self.records += 1
        # Samples come every few seconds: flushing with them lets a capture be read while it runs
        # (tail -f) without a write per event.
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


class RecordingHealth(StreamHealth):
    """StreamHealth that also writes each connect and disconnect to a capture, as a stream mark."""

    def __init__(self, writer: CaptureWriter) -> None:
        super().__init__()
        self.writer = writer

    def mark_connected(self, now: float) -> None:
        super().mark_connected(now)
        self.writer.write_record(StreamMark(True, now))

    def mark_disconnected(self, now: float, error: str) -> None:
        # A source retrying a dead broker reports each failed attempt: one mark per outage.
        if self.connected or not self.gaps or self.gaps[-1][1] is not None:
            self.writer.write_record(StreamMark(False, now, error))
        super().mark_disconnected(now, error)


def read_lines(path: Path) -> Iterator[tuple[int, dict[str, Any] | Record | None]]:
    """(line number, item) for each line: an event dict, a Record, or None for a line that is neither."""
    with path.open("rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                yield lineno, None
                continue
            if not isinstance(obj, dict):
                yield lineno, None
            elif RECORD_KEY in obj:
                yield lineno, parse_record(obj)
            else:
                yield lineno, obj if isinstance(obj.get("type"), str) else None


def read_capture(path: Path) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """(line number, event) for each event line; event None where the line is not an event object.

    Samples and stream marks are skipped without complaint: readers of events only (rule tests,
    old replays) read a new capture as the events-only capture it contains.
    """
    for lineno, item in read_lines(path):
        if item is None or isinstance(item, dict):
            yield lineno, item


def skip_malformed(health: StreamHealth, path: Path, lineno: int) -> None:
    """The one policy for a line of a capture that is not an event or record (replay, rule tests'
    events_file): counted as the live sources count one, logged the first ten times and then every
    thousandth, skipped. A capture of garbage must not flood the log."""
    health.malformed += 1
    if health.malformed <= 10 or health.malformed % 1000 == 0:
        log.warning("%s:%d: not a captured event, skipped", path, lineno)


def event_time(event: dict[str, Any]) -> float | None:
    """When alertd received the event (or, failing that, when it was sent)."""
    at = event.get("local_received", event.get("timestamp"))
    return float(at) if isinstance(at, int | float) else None


def item_time(item: dict[str, Any] | Record) -> float | None:
    return event_time(item) if isinstance(item, dict) else item.at


class ReplaySource:
    """Feeds a capture through the handlers a live daemon's sources would feed, then sets `done`.

    Events go to `handler` (the observer's on_events), samples to `on_queue`/`on_worker`/`on_broker`
    (the observer's on_*_sample, as the Sampler calls them; not given: skipped), stream marks to
    `health` (mark_connected / mark_disconnected, as the live source does), each at its recorded
    time. On a VirtualClock (alertd/stepper.py steps it) the clock is set to each line's time
    before it is delivered, so windows, `for` and timers see the recording as it happened,
    deterministically and at full speed; `step` (the daemon's tick: rules, then notifications) is
    then awaited every `step_seconds` of recorded time in between, as the live tick loop would
    have run, and for `tail` seconds after the last line. On the wall clock lines are delivered
    as fast as possible, or paced by `speed` (2.0 = twice as fast as recorded). Lines are never
    rewritten: they keep their recorded times (a line stamped before the clock is delivered at
    the clock's time).
    """

    def __init__(
        self,
        path: Path,
        handler: Callable[[list[dict[str, Any]]], None],
        clock: Clock,
        health: StreamHealth,
        *,
        speed: float | None = None,
        max_batch: int = 1000,
        on_queue: Callable[[QueueSample], None] | None = None,
        on_worker: Callable[[WorkerSample], None] | None = None,
        on_broker: Callable[[BrokerSample], None] | None = None,
        step: Callable[[], Awaitable[object]] | None = None,
        step_seconds: float = 1.0,
        tail: float = 0.0,
    ) -> None:
        if speed is not None and speed <= 0:
            raise ValueError(f"replay speed must be positive, got {speed}")
        if step_seconds <= 0:
            raise ValueError(f"replay step must be positive, got {step_seconds}")
        self.path = path
        self.handler = handler
        self.clock = clock
        self.health = health
        self.speed = speed
        self.max_batch = max_batch
        self.on_queue = on_queue
        self.on_worker = on_worker
        self.on_broker = on_broker
        self.step = step
        self.step_seconds = step_seconds
        self.tail = tail
        self.samples = 0
        self.done = asyncio.Event()
        self.health.transport = "replay"
        self.health.broker = str(path)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such capture file")
        self._task = asyncio.create_task(self._run(), name="replay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def wait_connected(self, timeout: float = 10.0) -> None:
        """A file is there from the start: nothing to wait for."""

    async def wait_done(self, timeout: float | None = None) -> None:
        """Returns once every line of the capture has been delivered (or skipped)."""
        await asyncio.wait_for(self.done.wait(), timeout)

    async def _run(self) -> None:
        self.health.mark_connected(self.clock.now())
        try:
            if isinstance(self.clock, VirtualClock):
                stepper = Stepper(
                    self.clock,
                    self._handle,
                    step=self.step,
                    step_seconds=self.step_seconds,
                    max_batch=self.max_batch,
                )
                await stepper.run(self._items(), tail=self.tail)
            else:
                await self._run_wall()
        finally:
            self.done.set()

    def _items(self) -> Iterator[tuple[float, Item]]:
        """(recorded time, event or hook delivering a record) of each line; others skipped."""
        health = self.health
        for lineno, item in read_lines(self.path):
            at = item_time(item) if item is not None else None
            if isinstance(item, dict) or item is None:
                health.messages += 1
            if item is None or at is None:
                skip_malformed(health, self.path, lineno)
            elif isinstance(item, dict):
                yield at, item
            else:
                yield at, functools.partial(self._record, item)

    async def _run_wall(self) -> None:
        """On the wall clock: as fast as possible, or paced by `speed`. Not virtual time."""
        # Events received together (one task.multi, one read) share a time: they stay one batch
        # when time matters (paced), as they were when recorded.
        paced = self.speed
        batch: list[dict[str, Any]] = []
        batch_at = 0.0
        first: tuple[float, float] | None = None  # (recorded time, wall time) of the first line
        for at, item in self._items():
            if batch and (
                not isinstance(item, dict) or (paced is not None and at != batch_at) or len(batch) >= self.max_batch
            ):
                await self._deliver(batch, batch_at)
                batch = []
            if not batch and paced is not None:
                first = first or (at, self.clock.now())
                await self.clock.sleep(first[1] + (at - first[0]) / paced - self.clock.now())
            if isinstance(item, dict):
                if not batch:
                    batch_at = at
                batch.append(item)
            else:
                item()
        if batch:
            await self._deliver(batch, batch_at)

    def _record(self, record: Record) -> None:
        if isinstance(record, StreamMark):
            if record.connected:
                self.health.mark_connected(record.at)
            else:
                self.health.mark_disconnected(record.at, record.error)
            return
        self.samples += 1
        if isinstance(record, QueueSample):
            if self.on_queue is not None:
                self.on_queue(record)
        elif isinstance(record, WorkerSample):
            if self.on_worker is not None:
                self.on_worker(record)
        elif self.on_broker is not None:
            self.on_broker(record)

    def _handle(self, batch: list[dict[str, Any]], at: float) -> None:
        self.health.events += len(batch)
        self.health.last_event_at = at
        self.handler(batch)

    async def _deliver(self, batch: list[dict[str, Any]], at: float) -> None:
        self._handle(batch, at)
        # Let whatever the clock or the batch woke (timers, rule ticks) run before the next one.
        await asyncio.sleep(0)
