"""The notification pipeline's shape, as Alertmanager's notify.Stage: a flush in, a flush or nothing out.

Each stage is one small module (mute, dedup, claim, send); `run` passes a flush through them in
order and stops at the first that returns None (nothing left to say, or not this replica's turn).
What a stage holds for later ones (a claim, a background renewal) it registers on the flush:
releases run when the pipeline ends or fails, background tasks are cancelled in any case - a
cancelled flush (shutdown) keeps its claim, which stop() hands back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from alertd.alert import Alert, AlertState
from alertd.dispatch.groups import AlertGroup
from alertd.notify.delivery import Receiver

if TYPE_CHECKING:
    from alertd.notify.dedup import Plan


@dataclass
class Suppression:
    """Why an alert is not sent: `kind` is inhibited | muted | silenced, `by` what did it."""

    kind: str
    by: list[str]


@dataclass
class Flush:
    """One flush of one group to its receiver, as it moves through the stages."""

    group: AlertGroup
    receiver: Receiver
    now: float
    firing: list[Alert]
    resolved: list[Alert]
    suppressed: dict[str, Suppression] = field(default_factory=dict)  # fingerprint -> why not sent
    route_muted: list[str] = field(default_factory=list)  # time intervals muting the whole route
    plan: Plan | None = None  # what the receiver is owed, once dedup has read the log
    # False when the dispatcher woke the group between its timers for a stage's own deadline (an
    # escalation step): that stage acts and stops the flush, so the receiver's pace is unchanged
    timer: bool = True
    _releases: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    _background: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def of(cls, group: AlertGroup, receiver: Receiver, now: float, *, timer: bool = True) -> Flush:
        alerts = list(group.alerts.values())
        return cls(
            group,
            receiver,
            now,
            [a for a in alerts if a.state is AlertState.FIRING],
            [a for a in alerts if a.state is AlertState.RESOLVED],
            timer=timer,
        )

    @property
    def to_fire(self) -> list[Alert]:
        """Firing alerts nothing mutes."""
        return [a for a in self.firing if a.fingerprint not in self.suppressed]

    def on_release(self, release: Callable[[], Awaitable[None]]) -> None:
        self._releases.append(release)

    def in_background(self, task: asyncio.Task[None]) -> None:
        self._background.append(task)

    async def release(self) -> None:
        releases, self._releases = self._releases, []
        for release in releases:
            await release()


class Stage(Protocol):
    async def __call__(self, flush: Flush) -> Flush | None: ...


async def run(stages: Sequence[Stage], flush: Flush) -> Flush | None:
    """Pass `flush` through `stages`; None as soon as one has nothing more to do."""
    try:
        current: Flush | None = flush
        for stage in stages:
            assert current is not None
            current = await stage(current)
            if current is None:
                break
    except Exception:
        await flush.release()  # a bug in this flush must not hold the group
        raise
    finally:
        for task in flush._background:
            task.cancel()
    await flush.release()
    return current
