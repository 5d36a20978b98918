"""Captures: the normalized event stream as JSON lines, one event per line.

`alertd capture` writes them; `alertd run --replay`, rule tests (`events_file:`) and ReplaySource
read them.
Each line is the event exactly as the observer received it, including `local_received`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from alertd.clock import Clock, VirtualClock
from alertd.sources.health import StreamHealth

log = logging.getLogger(__name__)


class CaptureWriter:
    """Appends batches of events to a JSONL file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[bytes] = path.open("wb")
        self.events = 0

    def write(self, events: list[dict[str, Any]]) -> None:
        self._fh.write(b"".join(orjson.dumps(e, option=orjson.OPT_APPEND_NEWLINE) for e in events))
        self.events += len(events)

    def close(self) -> None:
        self._fh.close()


def read_capture(path: Path) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """(line number, event) for each line; event None where the line is not an event object."""
    with path.open("rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                yield lineno, None
                continue
            ok = isinstance(event, dict) and isinstance(event.get("type"), str)
            yield lineno, event if ok else None


def event_time(event: dict[str, Any]) -> float | None:
    """When alertd received the event (or, failing that, when it was sent)."""
    at = event.get("local_received", event.get("timestamp"))
    return float(at) if isinstance(at, int | float) else None


class ReplaySource:
    """Feeds a capture through the handler a live source would feed, then sets `done`.

    On a VirtualClock the clock is set to each event's time before it is delivered, so windows,
    `for` and timers see the recording as it happened, deterministically and at full speed. On
    the wall clock events are delivered as fast as possible, or paced by `speed` (2.0 = twice
    as fast as recorded). Events are never rewritten: they keep their recorded times.
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
    ) -> None:
        if speed is not None and speed <= 0:
            raise ValueError(f"replay speed must be positive, got {speed}")
        self.path = path
        self.handler = handler
        self.clock = clock
        self.health = health
        self.speed = speed
        self.max_batch = max_batch
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
        virtual = self.clock if isinstance(self.clock, VirtualClock) else None
        # Events received together (one task.multi, one read) share a time: they stay one batch
        # whenever time matters, as they were when recorded.
        by_time = virtual is not None or self.speed is not None
        health = self.health
        health.mark_connected(self.clock.now())
        batch: list[dict[str, Any]] = []
        batch_at = 0.0
        first: tuple[float, float] | None = None  # (recorded time, wall time) of the first event
        try:
            for lineno, event in read_capture(self.path):
                health.messages += 1
                at = event_time(event) if event is not None else None
                if event is None or at is None:
                    health.malformed += 1
                    if health.malformed <= 10 or health.malformed % 1000 == 0:
                        log.warning("%s:%d: not a captured event, skipped", self.path, lineno)
                    continue
                if batch and ((by_time and at != batch_at) or len(batch) >= self.max_batch):
                    await self._deliver(batch, batch_at)
                    batch = []
                if not batch:
                    batch_at = at
                    if virtual is not None:
                        if at > virtual.now():
                            virtual.set(at)
                            # Timers due by now fire before the events at this time, as live.
                            await asyncio.sleep(0)
                    elif self.speed is not None:
                        first = first or (at, self.clock.now())
                        await self.clock.sleep(first[1] + (at - first[0]) / self.speed - self.clock.now())
                batch.append(event)
            if batch:
                await self._deliver(batch, batch_at)
        finally:
            self.done.set()

    async def _deliver(self, batch: list[dict[str, Any]], at: float) -> None:
        self.health.events += len(batch)
        self.health.last_event_at = at
        self.handler(batch)
        # Let whatever the clock or the batch woke (timers, rule ticks) run before the next one.
        await asyncio.sleep(0)
