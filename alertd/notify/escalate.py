"""Escalation: a route's policy pages more receivers while an incident stays unacknowledged.

An incident starts with the group's first page to the route's receiver after it had nothing
told firing (`since`: the time in that receiver's notification-log entry), and ends when that
receiver has been told everything resolved. Step `after: 15m` pages its receiver too once
`since + 15m` has come, unless by then the group's firing alerts were seen all silenced (an
acknowledgement: it stops the rest of the policy for the incident). A step receiver once paged
follows the incident like the route's own receiver - new alerts, repeats, the resolved notice.

A step is not a branch in the notifier: it is the route's own delivery (dedup, HA claim, send)
run for the step's receiver, whose notification-log entry is what makes it exactly-once across
replicas and restarts. The incident's start and acknowledgement are one small record in the
store beside the log. The stage runs after the mute stages and before the route receiver's
dedup; when a step falls due between the group's timers it asks the dispatcher to wake the group
then (`AlertGroup.wake`), and such a wake-up flush stops here, leaving the receiver's pace alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from alertd.dispatch.route import Step
from alertd.durations import format_duration
from alertd.nflog import Entry, NotificationLog
from alertd.notify import stage
from alertd.notify.delivery import Receiver
from alertd.notify.history import History
from alertd.notify.stage import Flush
from alertd.store.base import Store, StoreUnavailable

log = logging.getLogger(__name__)

KIND = "escalation"  # store kind of the incident records, keyed by group key
RETENTION = 5 * 86400.0  # as the notification log's


@dataclass
class Incident:
    """What the policy needs to remember of a group's incident (shared by replicas, kept on restart)."""

    since: float | None = None  # the first page to the route's receiver; None: no incident
    acked_at: float | None = None  # when the firing alerts were first seen all silenced

    def due_at(self, step: Step) -> float | None:
        return None if self.since is None else self.since + step.after


def told_firing(entry: Entry | None) -> bool:
    """Was (or may have been) this receiver paged about alerts not yet told resolved?"""
    return entry is not None and bool(entry.firing or entry.maybe_firing)


def first_page(entry: Entry) -> float:
    """When the receiver was paged: the send, or the attempt of one that never confirmed (a
    receiver that is down is the case escalation exists for)."""
    return entry.at if entry.firing else (entry.attempted_at or entry.at)


def acknowledged(flush: Flush) -> bool:
    """Someone has it: the group fires, nothing of it is left to send, and a silence is among
    what mutes it (inhibition alone is not an acknowledgement)."""
    return bool(flush.firing) and not flush.to_fire and any(s.kind == "silenced" for s in flush.suppressed.values())


def step_state(step: Step, incident: Incident, now: float, paged: bool) -> str:
    """paged (it follows the incident) | due | waiting | stopped (acknowledged before it was due) | idle."""
    due = incident.due_at(step)
    if due is None:
        return "idle"
    if paged:
        return "paged"
    if incident.acked_at is not None and incident.acked_at <= due:
        return "stopped"
    return "due" if now >= due else "waiting"


class StepReason:
    """The step's first page says why its receiver gets it."""

    def __init__(self, text: str) -> None:
        self.text = text

    async def __call__(self, flush: Flush) -> Flush | None:
        assert flush.plan is not None
        if not told_firing(flush.plan.entry) and flush.plan.to_fire:
            flush.plan.reason = self.text
        return flush


class EscalateStage:
    def __init__(
        self,
        *,
        store: Store,
        nflog: NotificationLog,
        history: History,
        receivers: Callable[[str], Receiver | None],
        deliver: Callable[[stage.Stage], list[stage.Stage]],
    ) -> None:
        self.store = store
        self.nflog = nflog
        self.history = history
        self.receivers = receivers
        # the route's delivery stages (dedup, claim, dedup, send) around a stage run before send
        self.deliver = deliver

    async def __call__(self, flush: Flush) -> Flush | None:
        steps = flush.group.route.escalate
        if steps:
            try:
                await self.escalate(flush, steps)
            except Exception:  # a bug here must not stop the route's own page
                log.exception("escalation of group %s failed", flush.group.key)
        return flush if flush.timer else None  # a wake-up was for the steps alone

    async def escalate(self, flush: Flush, steps: tuple[Step, ...]) -> None:
        group, now = flush.group, flush.now
        incident = await self.incident(flush)
        if incident.since is None and flush.to_fire:
            # the route's receiver is about to be paged (in this flush, after this stage): the
            # first step is due `after` from now; the wake-up reads the page's time from the log
            group.wake(now + steps[0].after)
        held: set[str] = set()
        for number, step in enumerate(steps, 1):
            receiver = self.receivers(step.receiver)
            if receiver is None:  # config validation names it; a reload may race
                log.error("escalation of %s names unknown receiver %r", group.key, step.receiver)
                continue
            entry = await self.nflog.get(step.receiver, group.key)
            state = step_state(step, incident, now, told_firing(entry))
            if state == "waiting":
                due = incident.due_at(step)
                assert due is not None
                group.wake(due)
            if not flush.timer and state != "due":
                continue  # a wake-up sends a step's first page; the rest keeps the group's pace
            if state in ("paged", "due"):
                done = await self.send(flush, receiver, step, number, incident, entry, fire=True)
            elif entry is not None and flush.resolved:
                done = await self.send(flush, receiver, step, number, incident, entry, fire=False)
            else:
                done = True
            if not done:
                held.update(a.fingerprint for a in flush.resolved)  # its resolved notice is still owed
        if flush.timer:
            group.held = held
        if incident.since is not None and not flush.firing:
            # nothing fires: the route's receiver may be told everything resolved in this flush,
            # which ends the incident; the group may then be gone, so see to it when the flush ends
            flush.on_release(lambda: self.incident_over(group.receiver, group.key))

    async def incident(self, flush: Flush) -> Incident:
        """The group's incident as the route receiver's log entry and this flush say it is now."""
        group = flush.group
        try:
            doc = await self.store.get(KIND, group.key)
        except StoreUnavailable:
            # fail open, as the notification log does through an outage (its cache answers): the
            # incident is taken from that log, so a step still pages (a late one rather than none)
            doc, writable = None, False
        else:
            writable = True
        before = Incident(doc.get("since"), doc.get("acked_at")) if doc else Incident()
        primary = await self.nflog.get(group.receiver, group.key)
        if not told_firing(primary):
            after = Incident()  # nothing told firing: no incident (or it ended)
        else:
            assert primary is not None
            after = Incident(before.since if before.since is not None else first_page(primary), before.acked_at)
            if after.acked_at is None and acknowledged(flush):
                after.acked_at = flush.now
                by = sorted({sid for s in flush.suppressed.values() if s.kind == "silenced" for sid in s.by})
                await self.history.record(
                    "escalation_stopped",
                    group.receiver,
                    group.key,
                    f"acknowledged: silenced by {', '.join(by)}",
                    "stopped",
                    sorted({a.name for a in flush.firing}),
                    sorted(a.fingerprint for a in flush.firing),
                    {"silenced_by": by, "since": after.since},
                )
        if after != before and writable:
            if after.since is None:
                await self.store.delete(KIND, group.key)
            else:
                await self.store.put(KIND, group.key, asdict(after), flush.now + RETENTION)
        return after

    async def incident_over(self, receiver: str, key: str) -> None:
        try:
            if not told_firing(await self.nflog.get(receiver, key)):
                await self.store.delete(KIND, key)
        except Exception as e:  # a store outage: the next incident's first flush closes it anyway
            log.warning("could not close the incident of %s: %s", key, e)

    async def send(
        self,
        flush: Flush,
        receiver: Receiver,
        step: Step,
        number: int,
        incident: Incident,
        entry: Entry | None,
        *,
        fire: bool,
    ) -> bool:
        """The route's delivery to the step's receiver; False when something is owed and not sent
        (a failure, or another replica holds the send and will)."""
        group = flush.group
        sub = Flush(
            group,
            receiver,
            flush.now,
            flush.firing if fire else [],
            flush.resolved,
            suppressed=flush.suppressed,
            route_muted=flush.route_muted,
        )
        reason = f"escalated: unacknowledged {format_duration(step.after)} after the first page"
        timer = group.next_flush
        out = await stage.run(self.deliver(StepReason(reason)), sub)
        if group.next_flush != timer:
            # dedup or claim asked to look again soon (another replica holds this send): a
            # wake-up does that for the step, and the route's receiver keeps its own timer
            group.wake(group.next_flush)
            group.next_flush = timer
        if out is not None and fire and not told_firing(entry) and sub.plan is not None and sub.plan.to_fire:
            detail: dict[str, Any] = {
                "step": number,
                "after": step.after,
                "since": incident.since,
                "from": group.receiver,
            }
            await self.history.record(
                "escalated",
                receiver.name,
                group.key,
                reason,
                "ok",
                sorted({a.name for a in sub.plan.to_fire}),
                sorted(a.fingerprint for a in sub.plan.to_fire),
                detail,
            )
        return out is not None or sub.plan is None
