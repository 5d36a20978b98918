"""Dedup: what a group owes its receiver, read from the notification log (Alertmanager's DedupStage).

Run before the HA claim (most flushes have nothing to say and take no lock) and again after it
(the other replica may have sent just before this one got the claim: decide on what it logged).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from alertd.alert import Alert, AlertState
from alertd.dispatch.groups import AlertGroup
from alertd.nflog import Entry, NotificationLog, dedup_reason
from alertd.notify.stage import Flush

CATCH_UP = "catch-up after fallback"


@dataclass
class Plan:
    """What a flush owes the receiver: decided from the notification log."""

    entry: Entry | None
    to_fire: list[Alert]
    shown_resolved: list[Alert]  # resolved alerts the message lists (none when send_resolved is off)
    reason: str
    episodes: dict[str, float]  # firing fingerprint -> starts_at of its episode
    owed_resolved: list[Alert]  # resolved alerts the receiver was (or may have been) told as firing
    # told as firing earlier and still firing, but silenced or inhibited now: left out of the
    # message, kept in the log, so that their resolved notice is still owed when they end
    still_told: dict[str, float] = field(default_factory=dict)
    resolved_starts: dict[str, float] = field(default_factory=dict)  # episodes told resolved, for the log

    @property
    def kind(self) -> str:
        return "firing" if self.to_fire else "resolved"


def resolved_starts(
    entry: Entry | None, group: AlertGroup, episodes: Mapping[str, float], resolving: list[Alert]
) -> dict[str, float]:
    """Episodes told resolved, so that a replica that sees the end later does not page them anew.

    Kept for alerts still in the group (a lagging replica's are); the rest is pruned, which keeps
    the entry as small as the group.
    """
    kept = {
        fp: s
        for fp, s in (entry.resolved_starts.items() if entry is not None else ())
        if fp in group.alerts and fp not in episodes
    }
    return kept | {a.fingerprint: a.starts_at for a in resolving}


class DedupStage:
    def __init__(self, nflog: NotificationLog, replica: str, forget: Callable[[AlertGroup, list[Alert]], None]) -> None:
        self.nflog = nflog
        self.replica = replica
        self.forget = forget  # resolved alerts dealt with: they leave their group

    async def __call__(self, flush: Flush) -> Flush | None:
        flush.plan = await self.plan(flush)
        return flush if flush.plan is not None else None

    async def plan(self, flush: Flush) -> Plan | None:
        """What this group owes its receiver now, according to the notification log; None if nothing."""
        group, receiver, now, to_fire, resolved = flush.group, flush.receiver, flush.now, flush.to_fire, flush.resolved
        entry = await self.nflog.get(receiver.name, group.key)
        cfg = receiver.config
        episodes = {a.fingerprint: a.starts_at for a in to_fire}
        # resolved alerts never told (or tried) as firing need no resolved notice: drop them quietly
        to_resolve = [a for a in resolved if entry is not None and entry.owes_resolve(a.fingerprint)]
        reason = dedup_reason(
            entry,
            episodes,
            {a.fingerprint for a in resolved},
            now=now,
            repeat_interval=group.route.repeat_interval,
            send_resolved=cfg.send_resolved,
            replica=self.replica,
            quiet={a.fingerprint: a.quiet_since for a in to_fire},
        )
        if reason is None and entry is not None and entry.via and cfg.catch_up_after_fallback and to_fire:
            reason = CATCH_UP  # the fallback told someone; the receiver itself still has to hear it once
        if reason is None:
            resolve_fps = {a.fingerprint for a in to_resolve}
            if entry is not None and not cfg.send_resolved and resolve_fps:
                # Nothing to say (send_resolved: false), but the log must forget the resolved
                # alerts, or one that fires again would look already told and never page.
                await self.nflog.put(
                    replace(
                        entry,
                        firing=[fp for fp in entry.firing if fp not in resolve_fps],
                        resolved=[],
                        starts={fp: s for fp, s in entry.starts.items() if fp not in resolve_fps},
                        maybe_firing={fp: s for fp, s in entry.maybe_firing.items() if fp not in resolve_fps},
                        maybe_resolved=[fp for fp in entry.maybe_resolved if fp not in resolve_fps],
                        resolved_starts=resolved_starts(entry, group, episodes, to_resolve),
                    )
                )
            self.forget(group, resolved)
            return None
        if (
            entry is not None
            and entry.firing
            and entry.replica not in ("", self.replica)
            and reason != "repeat elapsed"
        ):
            # Another replica sent last: group_interval runs from its send, not from this replica's
            # own timer, so a group that grew during group_wait is not paged by both (resolved
            # notices may go at once if the receiver asks for that). This replica's own sends are
            # paced by its timers, as in Alertmanager, restarts included.
            due = entry.at + group.route.group_interval
            if now < due and not (cfg.send_resolved_immediately and not to_fire):
                group.next_flush = due
                return None
        muted_firing = {a.fingerprint for a in group.alerts.values() if a.state is AlertState.FIRING} - set(episodes)
        still_told = (
            {fp: entry.starts.get(fp, 0.0) for fp in entry.firing if fp in muted_firing} if entry is not None else {}
        )
        return Plan(
            entry,
            to_fire,
            to_resolve if cfg.send_resolved else [],
            reason,
            episodes,
            to_resolve,
            still_told,
            resolved_starts(entry, group, episodes, to_resolve),
        )
