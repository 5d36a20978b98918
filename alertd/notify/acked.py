"""The "acknowledged" notice: receivers told that alerts are firing learn, once, that someone acked them.

Not a pipeline stage: an ack mutes its alerts, so the pipeline (mute, dedup) rightly has nothing
to send for them. Right after an ack is made (alertd.ack), each group holding acked alerts that
its receiver was told of (the notification log's `firing`) gets one message, reason
"acknowledged by <who>: <comment>", listing those alerts; receivers never told of them get none.
It is sent by the replica that took the ack, with the receiver's retries, and recorded in history
(kind `acknowledged`). Best effort: a failure is recorded, not retried later - the page it follows
up on went out already. Escalation steps that paged someone tell them too (they were woken for
it), and a receiver that keeps one message per incident (slack_api) updates that message and
replies in its thread rather than posting a new one.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import replace

from alertd.alert import AlertState
from alertd.notify.delivery import deliver
from alertd.notify.send import update_for
from alertd.notify.service import Notifier

log = logging.getLogger(__name__)


def reason(by: str, comment: str) -> str:
    return f"acknowledged by {by}" + (f": {comment}" if comment else "")


async def tell_acknowledged(notifier: Notifier, fingerprints: Collection[str], by: str, comment: str) -> int:
    """Send the notice to every receiver that was told these alerts fire; returns how many got one."""
    now = notifier.clock.now()
    why = reason(by, comment)
    told_receivers = 0
    for group in list(notifier.groups_by_key.values()):
        acked = [a for fp, a in group.alerts.items() if fp in fingerprints and a.state is AlertState.FIRING]
        if not acked:
            continue
        for name in (group.receiver, *(step.receiver for step in group.route.escalate)):
            receiver = notifier.receivers.get(name)
            if receiver is None:
                continue
            entry = await notifier.nflog.get(receiver.name, group.key)
            told = [a for a in acked if entry is not None and a.fingerprint in entry.firing]
            if entry is None or not told:
                continue  # this receiver never heard of them: an ack is no news to it
            message = notifier.renderer.render(receiver, group, told, [], why, now)
            result = await deliver(
                receiver,
                message.rendered,
                clock=notifier.clock,
                resolved=False,
                params=message.params,
                body_format=message.body_format,
                update=update_for(receiver, message, entry, why),
                acknowledge=True,  # PagerDuty: its incident acknowledged, not triggered again
            )
            if result.ok and receiver.api is not None and result.refs != entry.refs:
                # the message was posted anew (deleted in Slack): later notices update that one
                await notifier.nflog.put(replace(entry, refs=result.refs))
            await notifier.history.record(
                "acknowledged",
                receiver.name,
                group.key,
                why,
                "ok" if result.ok else result.error,
                sorted({a.name for a in told}),
                sorted(a.fingerprint for a in told),
                {"attempts": result.attempts},
            )
            told_receivers += result.ok
    return told_receivers
