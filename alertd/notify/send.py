"""Send: log the attempt, deliver with retries, fall back, log the outcome (and count it).

The attempt is in the notification log before the request leaves, so a crash mid-request still
owes the resolved notice later; the outcome is in the log the moment a delivery succeeds, before
history, so a crash right after a page does not send it again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from alertd.alert import Alert
from alertd.clock import Clock
from alertd.dispatch.groups import AlertGroup
from alertd.faults import crash_point
from alertd.nflog import Entry, NotificationLog
from alertd.notify.dedup import CATCH_UP, Plan
from alertd.notify.delivery import Receiver, Update, deliver
from alertd.notify.history import History
from alertd.notify.render import Message, Renderer
from alertd.notify.stage import Flush

log = logging.getLogger(__name__)

FIRST = "first notification"


def update_for(receiver: Receiver, message: Message, entry: Entry, reason: str) -> Update | None:
    """For a receiver that keeps one message per incident: the message to update, or none to post.

    A first notification is a new incident (the group had nothing firing that the receiver was
    told of, e.g. after everything resolved): it gets a new message, and the last one stays as
    the record of the incident before.
    """
    if receiver.api is None:
        return None
    return Update({} if reason == FIRST else entry.refs, message.context, frozenset(entry.firing))


@dataclass
class SendCounts:
    sent: int = 0
    failed: int = 0
    fallback: int = 0  # delivered by a fallback receiver (also counted in sent)
    possible_duplicates: int = 0  # re-sent after an attempt that may have reached the receiver

    def count_sent(self, possible_duplicate: bool) -> None:
        self.sent += 1
        if possible_duplicate:
            self.possible_duplicates += 1


class SendStage:
    def __init__(
        self,
        *,
        nflog: NotificationLog,
        history: History,
        renderer: Renderer,
        clock: Clock,
        replica: str,
        counts: SendCounts,
        receivers: Callable[[str], Receiver | None],
        forget: Callable[[AlertGroup, list[Alert]], None],
    ) -> None:
        self.nflog = nflog
        self.history = history
        self.renderer = renderer
        self.clock = clock
        self.replica = replica
        self.counts = counts
        self.receivers = receivers  # by name, for the fallback
        self.forget = forget  # resolved alerts whose notice went out leave their group

    async def __call__(self, flush: Flush) -> Flush | None:
        assert flush.plan is not None
        if await self.send(flush.receiver, flush.group, flush.plan, flush.now):
            self.forget(flush.group, flush.resolved)
            return flush
        return None

    async def send(self, receiver: Receiver, group: AlertGroup, plan: Plan, now: float) -> bool:
        kind = plan.kind
        firing, resolved, reason = plan.to_fire, plan.shown_resolved, plan.reason
        before = plan.entry or Entry(receiver.name, group.key)
        shown_resolved = {a.fingerprint for a in plan.shown_resolved}
        # An earlier attempt at this same news was cut short: the receiver may have it already.
        interrupted = before.attempted_at is not None and bool(
            set(plan.episodes) & set(before.maybe_firing) or shown_resolved & set(before.maybe_resolved)
        )
        attempt = replace(
            before,
            maybe_firing={**before.maybe_firing, **plan.episodes},
            maybe_resolved=sorted(set(before.maybe_resolved) | shown_resolved),
            attempted_at=now,
            attempted_by=self.replica,
        )
        await self.nflog.put(attempt)
        resolve_fps = {a.fingerprint for a in plan.owed_resolved}
        done = Entry(
            receiver.name,
            group.key,
            sorted({*plan.episodes, *plan.still_told}),
            sorted(resolve_fps),
            now,
            reason,
            starts={**plan.still_told, **plan.episodes},
            resolved_starts=plan.resolved_starts,
            replica=self.replica,
            maybe_firing={
                fp: s for fp, s in before.maybe_firing.items() if fp not in plan.episodes and fp not in resolve_fps
            },
            maybe_resolved=[fp for fp in before.maybe_resolved if fp not in resolve_fps and fp not in plan.episodes],
        )
        message = self.renderer.render(receiver, group, firing, resolved, reason, now)
        alertnames = sorted({a.name for a in (*firing, *resolved)})
        fps = sorted(a.fingerprint for a in (*firing, *resolved))
        detail: dict[str, Any] = {"firing": len(firing), "resolved": len(resolved)}
        if interrupted:
            # the receiver may have this already: an attempt was cut short (crash, timeout)
            detail["possible_duplicate"] = {"attempted_at": before.attempted_at, "by": before.attempted_by}

        async def retrying(attempt_no: int, error: str, backoff: float) -> None:
            await self.history.record(
                "retry",
                receiver.name,
                group.key,
                reason,
                error,
                alertnames,
                fps,
                {"attempt": attempt_no, "next_in": backoff},
            )

        crash_point("before-request", kind)
        result = await deliver(
            receiver,
            message.rendered,
            clock=self.clock,
            resolved=not firing,
            params=message.params,
            body_format=message.body_format,
            on_retry=retrying,
            update=update_for(receiver, message, before, reason),
        )
        if result.ok:
            crash_point("after-request", kind)
            done = replace(done, refs=result.refs if receiver.api is not None else before.refs)
            await self.nflog.put(done)
            self.counts.count_sent(interrupted)
            await self.history.record(
                "sent", receiver.name, group.key, reason, "ok", alertnames, fps, {"attempts": result.attempts, **detail}
            )
            return True
        if reason == CATCH_UP:
            # already told through the fallback: no dead letter and no second fallback each interval
            await self.history.record(
                "failed", receiver.name, group.key, reason, result.error, alertnames, fps, {"attempts": result.attempts}
            )
            return False
        self.counts.failed += 1
        await self.history.record(
            "dead_letter",
            receiver.name,
            group.key,
            reason,
            result.error,
            alertnames,
            fps,
            {"attempts": result.attempts, "title": message.rendered.title, "body": message.rendered.body[:4000]},
        )
        log.error("notification to %s failed after %d attempts: %s", receiver.name, result.attempts, result.error)
        fallback = self.receivers(receiver.config.fallback or "")
        if fallback is None or fallback is receiver:
            return False
        fb_message = self.renderer.render(fallback, group, firing, resolved, reason, now)
        fb = await deliver(
            fallback,
            fb_message.rendered,
            clock=self.clock,
            resolved=not firing,
            params=fb_message.params,
            body_format=fb_message.body_format,
            update=update_for(fallback, fb_message, Entry(fallback.name, group.key), FIRST),
        )
        await self.history.record(
            "fallback",
            fallback.name,
            group.key,
            reason,
            "ok" if fb.ok else fb.error,
            alertnames,
            fps,
            {"for": receiver.name, "attempts": fb.attempts},
        )
        if fb.ok:
            # told through the fallback: don't page again every interval; the receiver catches up
            # (its message, if it keeps one, is still the one to update)
            await self.nflog.put(replace(done, via=fallback.name, refs=before.refs))
            self.counts.fallback += 1
            self.counts.count_sent(interrupted)
        return fb.ok
