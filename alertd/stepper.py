"""Virtual time, stepped in one place: `alertd run --replay` and `alertd test` both run on this.

A Stepper takes time-ordered items - events (dicts, delivered in batches) and hooks (anything
else: a sample, a stream mark, a test's store going down, as a no-argument callable) - moves a
VirtualClock through them, and runs a step (the daemon's tick, or the rules engine alone) on a
grid of `step_seconds` in between, then checks (a rule test's expectations) after the step due
at their time.

Two choices differ between its callers, each on purpose:

- Where an item lands relative to the step of its second. A replay (`at_step=False`) delivers
  each line at its recorded time, after the step due at or before it: the live tick loop ran,
  then the source read. A rule test (`at_step=True`) delivers an item at the first step at or
  after its time, before that step runs: what happened by 5s is what the evaluation at 5s sees,
  as promtool's tests read.
- Whether steps may be skipped. With `idle_until` (the rule-test runner passes the engine's next
  group evaluation) nothing can change before the earliest of the next item, the next check and
  that time, so the clock goes straight to the first step on the grid at or after it: a 26-hour
  dead man's switch takes a few thousand steps, not 93,600. A replay passes none and steps
  every `step_seconds`: the daemon's tick also flushes the notifier, whose group and retry timers
  (and silences, store retries) no single "next change" names, and a replay must do what the
  live daemon did.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from alertd.clock import VirtualClock

Event = dict[str, Any]
Hook = Callable[[], None]
Item = Event | Hook


class Stepper:
    """Moves `clock` through items, steps and checks, once; see the module's docstring."""

    def __init__(
        self,
        clock: VirtualClock,
        on_events: Callable[[list[Event], float], None],
        *,
        step: Callable[[], Awaitable[object]] | None = None,
        step_seconds: float = 1.0,
        start: float | None = None,
        at_step: bool = False,
        idle_until: Callable[[], float | None] | None = None,
        max_batch: int | None = None,
        alone: bool = False,
    ) -> None:
        """`on_events(batch, at)` gets each batch, `at` the time of its last event. `start` is the
        first step (None: the first item's time, or the clock's if that is later); the grid of
        steps is `start + k * step_seconds`. `alone`: nothing else runs on the event loop (a rule
        test, whose step is the engine's tick), so there is nothing to let run between steps."""
        if step_seconds <= 0:
            raise ValueError(f"step must be positive, got {step_seconds}")
        self.clock = clock
        self.on_events = on_events
        self.step = step
        self.step_seconds = step_seconds
        self.at_step = at_step
        self.idle_until = idle_until
        self.max_batch = max_batch
        # A yield per step and batch (a coroutine call even when it does not yield) is most of a
        # rule test's time besides the engine, and there it lets nothing run.
        self.alone = alone
        self._origin = start  # of the grid; None until the first item
        self._next_step = start
        self._checks: deque[tuple[float, Hook]] = deque()

    async def run(
        self,
        items: Iterable[tuple[float, Item]],
        *,
        until: float | None = None,
        tail: float = 0.0,
        checks: Iterable[tuple[float, Hook]] = (),
    ) -> None:
        """Deliver every item, then step on to `until` (items after it are not delivered) or,
        without one, for `tail` seconds after the last step due by the last item."""
        self._checks = deque(sorted(checks, key=lambda c: c[0]))
        batch: list[Event] = []
        batch_due = batch_at = 0.0
        reached: float | None = None  # advancing there again would do nothing
        for at, item in items:
            due = self._due(at)
            if until is not None and due > until:
                break
            # Events due together stay one batch: in a replay those received together (one
            # task.multi, one read), as they were when recorded; in a rule test, those of a step.
            if batch and (
                not isinstance(item, dict)
                or due != batch_due
                or (self.max_batch is not None and len(batch) >= self.max_batch)
            ):
                await self._deliver(batch, batch_at)
                batch = []
            if not batch and due != reached:
                await self._advance(due, inclusive=not self.at_step)
                reached = due
            if isinstance(item, dict):
                batch_due = due
                batch_at = at
                batch.append(item)
            else:
                item()
        if batch:
            await self._deliver(batch, batch_at)
        if until is None and self.step is not None and self._next_step is not None:
            until = self._next_step - self.step_seconds + tail
        if until is not None:
            await self._advance(until, inclusive=True)

    def _due(self, at: float) -> float:
        """When an item at `at` is delivered."""
        if not self.at_step:
            return at
        origin = self._origin if self._origin is not None else self._begin(at)
        return origin if at <= origin else origin + math.ceil((at - origin) / self.step_seconds) * self.step_seconds

    def _begin(self, at: float) -> float:
        """The grid's origin, set by the first item when `start` is not given."""
        if self._origin is None:
            self._origin = self._next_step = max(at, self.clock.now())
        return self._origin

    async def _advance(self, to: float, *, inclusive: bool) -> None:
        """Move the clock to `to`, running each step due before it (and at it, if `inclusive`)."""
        clock, step, alone = self.clock, self.step, self.alone
        if step is not None:
            origin = self._begin(to)
            at = self._next_step
            assert at is not None  # set by _begin
            while at < to or (inclusive and at == to):
                if at > clock.now():
                    clock.set(at)
                    if not alone:
                        await asyncio.sleep(0)
                await step()
                if not alone:
                    await asyncio.sleep(0)  # let what the step woke (group timers) run
                checks = self._checks
                while checks and checks[0][0] <= at:
                    checks.popleft()[1]()
                at = self._following(at, to, origin)
            self._next_step = at
        if to > clock.now():
            clock.set(to)
            # Timers due by now fire before the items at this time, as live.
            if not alone:
                await asyncio.sleep(0)

    def _following(self, at: float, to: float, origin: float) -> float:
        """The step after the one at `at`: the next on the grid, or the first that can see a
        change (the next item, the next check, what `idle_until` says) when told what can."""
        following = at + self.step_seconds
        if self.idle_until is None:
            return following
        change = to
        if self._checks and self._checks[0][0] < change:
            change = self._checks[0][0]
        idle = self.idle_until()
        if idle is not None and idle < change:
            change = idle
        change = origin + math.ceil((change - origin) / self.step_seconds) * self.step_seconds
        return following if following > change else change

    async def _deliver(self, batch: list[Event], at: float) -> None:
        self.on_events(batch, at)
        # Let whatever the clock or the batch woke (timers, rule ticks) run before the next one.
        if not self.alone:
            await asyncio.sleep(0)
