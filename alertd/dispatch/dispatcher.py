"""The dispatcher, as in Alertmanager: alerts into aggregation groups, groups flushed on their timers.

A new group waits group_wait (and never less than the start delay after start), then flushes
every group_interval while it has alerts; what a flush does - mute, dedup, send - is the
notification pipeline's business, handed in as `flush`. This module knows nothing of receivers.
A stage may also ask for a group to be woken between its timers (`AlertGroup.wake`: an
escalation step due): that flush is told it is a wake-up (`timer=False`) and moves no timer.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable

from alertd.alert import Alert, AlertState
from alertd.clock import Clock
from alertd.dispatch.groups import AlertGroup, current_alerts, group_key
from alertd.dispatch.route import Route

log = logging.getLogger(__name__)

Flush = Callable[[AlertGroup, bool], Awaitable[None]]  # (group, timer): False for a wake-up


class Dispatcher:
    def __init__(
        self,
        root: Route,
        clock: Clock,
        flush: Flush,
        *,
        resolve_at_once: Callable[[str], bool] = lambda receiver: False,
        start_delay: float = 0.0,
    ) -> None:
        self.root = root
        self.clock = clock
        self._flush_group = flush
        # receiver name -> whether a group whose alerts all resolved flushes at once
        self.resolve_at_once = resolve_at_once
        self.dispatch_from = clock.now() + start_delay  # no flush before this
        self.groups_by_key: dict[str, AlertGroup] = {}
        self.alerts_by_fp: dict[str, Alert] = {}
        self._finished: dict[str, float | None] = {}  # resolved alerts already dealt with -> ends_at
        self._held_resolved: set[str] = set()  # resolved alerts some group has yet to flush
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()

    def rebind(self, root: Route) -> None:
        """A new route tree (reload): groups whose route still exists keep their alerts and timers."""
        self.root = root
        routes = {r.id: r for r in root.walk()}
        kept = {}
        for key, g in self.groups_by_key.items():
            if g.route.id in routes:
                g.route = routes[g.route.id]
                kept[key] = g
        self.groups_by_key = kept

    # -- alerts in -------------------------------------------------------------------------

    def put(self, alerts: Iterable[Alert] | dict[str, Alert]) -> None:
        """All current alerts (firing and recently resolved; pending ones are ignored). Idempotent."""
        now = self.clock.now()
        current = alerts if isinstance(alerts, dict) else current_alerts(alerts)
        self.alerts_by_fp = current
        # forget finished alerts the engine no longer reports; skip those it still does
        self._finished = {fp: end for fp, end in self._finished.items() if fp in current}
        for alert in current.values():
            if alert.state is AlertState.RESOLVED and self._finished.get(alert.fingerprint) == alert.ends_at:
                continue  # its resolution was already handled
            for route in self.root.match(alert.labels):
                labels = route.group_labels(alert.labels)
                key = group_key(route, labels)
                group = self.groups_by_key.get(key)
                if group is None:
                    # Resolved alerts get a group too: after a restart the notification log may
                    # say a resolved notice is owed; if nothing was ever said, the flush drops them.
                    first = max(now + route.group_wait, self.dispatch_from)
                    group = self.groups_by_key[key] = AlertGroup(route, labels, key, next_flush=first)
                    self._wake.set()
                group.alerts[alert.fingerprint] = alert
        held: set[str] = set()
        for group in self.groups_by_key.values():
            # An alert the engine no longer reports (retention passed) leaves its group.
            for fp in [fp for fp in group.alerts if fp not in current]:
                del group.alerts[fp]
            held.update(fp for fp, a in group.alerts.items() if a.state is AlertState.RESOLVED)
            if (
                group.alerts
                and group.last_flush is not None
                and group.next_flush > now
                and all(a.state is AlertState.RESOLVED for a in group.alerts.values())
                and self.resolve_at_once(group.receiver)
            ):
                group.next_flush = now
                self._wake.set()
        self._held_resolved = held

    def owes_resolved(self, fingerprint: str, ends_at: float | None) -> bool:
        """Whether this resolved episode may still need a notice (or a decision that none is owed).

        The engine keeps a resolved alert while this says so: once every group it was routed to
        has flushed it, nothing is lost by forgetting it. Until the dispatcher has seen it at all,
        or while a group still holds it (a failed send, another replica's claim), it is owed.
        """
        return self._finished.get(fingerprint, -1.0) != ends_at or fingerprint in self._held_resolved

    def forget_resolved(self, group: AlertGroup, resolved: list[Alert]) -> None:
        """Resolved alerts are done once their notice went out (or none was owed).

        Only those this flush decided on: an alert that resolved while the flush awaited the store
        or the receiver (the tick that resolves it can land while its page is in flight) still owes
        its resolved notice to the next flush.
        """
        for a in resolved:
            if a.fingerprint in group.held:
                continue  # another receiver of the group still owes its notice
            current = group.alerts.get(a.fingerprint)
            if current is not None and current.state is AlertState.RESOLVED and current.ends_at == a.ends_at:
                del group.alerts[a.fingerprint]
                self._finished[a.fingerprint] = a.ends_at

    # -- timers ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Flush each group when its timer is due, for ever (the notifier's background task)."""
        while True:
            now = self.clock.now()
            due = [g.due_at() for g in self.groups_by_key.values() if g.key not in self._inflight]
            wait = max(0.0, min(due) - now) if due else 3600.0
            self._wake.clear()
            sleeper = asyncio.ensure_future(self.clock.sleep(wait))
            waker = asyncio.ensure_future(self._wake.wait())
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            sleeper.cancel()
            waker.cancel()
            await self.flush_due(wait=False)

    async def flush_due(self, *, wait: bool = True) -> None:
        """Flush every group whose timer is due (tests call this after moving a virtual clock)."""
        now = self.clock.now()
        started = []
        for group in list(self.groups_by_key.values()):
            if group.due(now) and group.key not in self._inflight:
                task = asyncio.create_task(self._flush(group))
                self._inflight[group.key] = task
                task.add_done_callback(functools.partial(self._done, group.key))
                started.append(task)
        if wait and started:
            await asyncio.gather(*started, return_exceptions=True)

    async def settle(self) -> None:
        """Wait for the flushes in flight to finish (tests, which stamp each send with its time)."""
        while self._inflight:
            await asyncio.gather(*list(self._inflight.values()), return_exceptions=True)

    async def drain(self, timeout: float) -> None:
        """At shutdown: give flushes in flight `timeout`, then cancel the rest. A flush asleep on
        the clock past that (a send in a long retry backoff) is not waited for: its attempt is
        logged, and a restart or the other replica retries it."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while self._inflight and (left := end - loop.time()) > 0:
            horizon = self.clock.now() + left
            busy = [t for t in self._inflight.values() if (w := self.clock.wakes_at(t)) is None or w <= horizon]
            if not busy:
                break
            await asyncio.wait(busy, timeout=min(left, 0.1), return_when=asyncio.FIRST_COMPLETED)
        left_tasks = list(self._inflight.values())
        for t in left_tasks:
            t.cancel()
        await asyncio.gather(*left_tasks, return_exceptions=True)

    def _done(self, key: str, _task: asyncio.Task[None]) -> None:
        self._inflight.pop(key, None)
        self._wake.set()  # the run loop skipped this group while it was in flight: reschedule it

    async def _flush(self, group: AlertGroup) -> None:
        now = self.clock.now()
        timer = group.next_flush <= now
        if group.wake_at is not None and group.wake_at <= now:
            group.wake_at = None  # the stage that asked sets it again if it needs another
        if timer:
            group.last_flush = now
            group.next_flush = now + group.route.group_interval
        try:
            await self._flush_group(group, timer)
        except Exception:  # a bug in one group's flush must not stop the others
            log.exception("notification for group %s failed", group.key)
        if not group.alerts:
            self.groups_by_key.pop(group.key, None)
