"""Time as an injected dependency.

The engine, the dispatcher and the notify pipeline never read the wall clock themselves: they are
handed a Clock. Production passes WallClock; tests and `alertd test` pass a VirtualClock and move
it by hand, so a 10-minute window is tested in microseconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol


class Clock(Protocol):
    """Seconds since the Unix epoch, as a float."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...

    def wakes_at(self, task: asyncio.Task[Any]) -> float | None:
        """When `task`'s sleep on this clock ends (None: it is not sleeping on it). Shutdown asks:
        a send asleep in a long retry backoff has nothing to finish and need not be waited for."""
        ...


class _Sleepers:
    """Which tasks sleep on a clock, and until when."""

    def __init__(self) -> None:
        self._until: dict[asyncio.Task[Any], float] = {}

    def wakes_at(self, task: asyncio.Task[Any]) -> float | None:
        return self._until.get(task)

    async def _sleep(self, until: float, sleep: Awaitable[None]) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._until[task] = until
        try:
            await sleep
        finally:
            if task is not None:
                self._until.pop(task, None)


class WallClock(_Sleepers):
    """The real clock."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await self._sleep(self.now() + max(0.0, seconds), asyncio.sleep(max(0.0, seconds)))


class VirtualClock(_Sleepers):
    """A clock that moves only when told to.

    `sleep` returns once `advance`/`set` has moved the clock past the deadline, so async code
    written against Clock runs unchanged on virtual time.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        super().__init__()
        self._now = start
        self._waiters: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self._now

    def set(self, t: float) -> None:
        if t < self._now:
            raise ValueError(f"virtual clock cannot go back from {self._now} to {t}")
        self._now = t
        self._wake()

    def advance(self, seconds: float) -> None:
        self.set(self._now + seconds)

    def next_deadline(self) -> float | None:
        """When the earliest sleeper wakes (None: nobody sleeps): a test moves time exactly there
        instead of guessing a step, so what it measures does not depend on the machine's speed."""
        return min((d for d, fut in self._waiters if not fut.done()), default=None)

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((self._now + seconds, fut))
        await self._sleep(self._now + seconds, fut)

    def _wake(self) -> None:
        still: list[tuple[float, asyncio.Future[None]]] = []
        for deadline, fut in self._waiters:
            if deadline <= self._now:
                if not fut.done():
                    fut.set_result(None)
            else:
                still.append((deadline, fut))
        self._waiters = still


async def every(
    clock: Clock,
    seconds: float,
    job: Callable[[], Awaitable[object]],
    *,
    on_error: Callable[[Exception], None],
    wait_first: bool = False,
) -> None:
    """Run `job` every `seconds` on `clock`, for ever: a background loop that one failure of
    `job` does not end (`on_error` logs or counts it). `wait_first`: the first run is one
    interval after start, not at once."""
    if wait_first:
        await clock.sleep(seconds)
    while True:
        try:
            await job()
        except Exception as e:
            on_error(e)
        await clock.sleep(seconds)
