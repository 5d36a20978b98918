"""Making acks, listing them, and ending each one when the engine says its alerts resolved.

An ack ends (its silence expires, `amtool silence query --expired` shows it) once none of its
alerts is firing the episode that was acked *and* this process's engine has itself seen each of
them: an alert merely absent (a daemon restarted without its saved state, whose engine has not
re-raised it) is not known to be over, so its ack stays until the alert fires anew or its
deadline. Restored alerts are held firing by the engine until their data is back, so a restart
with its state keeps acks too. Replicas sharing a store may both end an ack in the same second:
ending an ended ack is a no-op.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence

from alertd.ack import model
from alertd.ack.model import Ack, AckError
from alertd.alert import Alert, AlertState
from alertd.clock import Clock
from alertd.silence.silences import SilenceError, Silences, State

log = logging.getLogger(__name__)

DEFAULT_MAX_DURATION = 7 * 86400.0  # an ack's silence ends by then even if its alerts never resolve


class Acks:
    def __init__(self, silences: Silences, clock: Clock, *, max_duration: float = DEFAULT_MAX_DURATION) -> None:
        self.silences = silences
        self.clock = clock
        self.max_duration = max_duration
        self._seen: set[str] = set()  # fingerprints of live acks this process's engine has reported
        self.on_new: Callable[[Ack], None] | None = None  # told of each new ack (the "acknowledged" notice)

    # -- reads -----------------------------------------------------------------------------

    def all(self, *, include_expired: bool = True) -> list[Ack]:
        now = self.clock.now()
        out = [a for s in self.silences.query(include_expired=include_expired) if (a := Ack.of(s, now)) is not None]
        return sorted(out, key=lambda a: (a.state is not State.ACTIVE, -a.acked_at))

    def active_by_fingerprint(self) -> dict[str, Ack]:
        """The live ack of each acked alert (the page shows who acked and how long ago)."""
        out: dict[str, Ack] = {}
        for a in self.all(include_expired=False):
            if a.state is State.ACTIVE:
                for fp in a.fingerprints:
                    out.setdefault(fp, a)
        return out

    # -- writes ----------------------------------------------------------------------------

    async def ack(
        self,
        alerts: Sequence[Alert],
        *,
        group: str = "",
        group_labels: Mapping[str, str] | None = None,
        by: str,
        comment: str = "",
        until: float | None = None,
    ) -> Ack:
        """Ack these firing alerts (of `group`, if a group was acked): a silence on their fingerprints."""
        firing = [a for a in alerts if a.state is AlertState.FIRING]
        if not firing:
            raise AckError("nothing to acknowledge: none of these alerts is firing")
        await self.silences.refresh()
        fps = {a.fingerprint for a in firing}
        covered = self.active_by_fingerprint()
        if until is None and all(fp in covered for fp in fps):
            return covered[min(fps)]  # acked already (a second click, another replica's link): one ack
        now = self.clock.now()
        ends_at = now + self.max_duration if until is None else until
        if ends_at <= now:
            raise AckError("until is in the past")
        sid = await self.silences.upsert(
            model.matchers(group_labels or {}, firing),
            now,
            ends_at,
            created_by=by,
            comment=model.COMMENT_PREFIX + comment if comment else model.NO_COMMENT,
            author=by,
            annotations=model.ack_annotations(group, firing),
            internal=True,  # its fingerprints, one per alert: a big group's ack is still one ack
        )
        ack = Ack.of(self.silences.get(sid), now)
        assert ack is not None
        if self.on_new is not None:
            self.on_new(ack)
        return ack

    async def end_resolved(self, alerts: Iterable[Alert]) -> list[str]:
        """Expire each live ack none of whose alerts is firing any more; returns their IDs.

        `alerts`: everything the engine holds now (firing, pending, recently resolved).
        """
        now = self.clock.now()
        live = [a for a in self.all(include_expired=False) if a.state is State.ACTIVE]
        if not live:
            self._seen.clear()
            return []
        wanted = {fp for a in live for fp in a.fingerprints}
        firing_since: dict[str, float] = {}  # fingerprint -> start of the episode firing now
        for alert in alerts:
            if alert.fingerprint in wanted:
                self._seen.add(alert.fingerprint)
                if alert.state is AlertState.FIRING:
                    firing_since[alert.fingerprint] = alert.starts_at
        self._seen &= wanted  # only what live acks need: bounded by them
        ended = []
        for a in live:
            if any(fp not in self._seen for fp in a.fingerprints):
                continue
            # still the episode that was acked (it started before the ack): not over. One that
            # started after is news, even if this process never saw the acked one end.
            if any(firing_since.get(fp, math.inf) <= a.acked_at for fp in a.fingerprints):
                continue
            if await self._end(a.id, now):
                ended.append(a.id)
        return ended

    async def _end(self, ack_id: str, now: float) -> bool:
        await self.silences.refresh()  # another replica may have ended it already
        s = self.silences.get(ack_id)
        if s.state(now) is State.EXPIRED:
            return False
        s.annotations[model.ENDED] = "resolved"
        try:
            await self.silences.expire(ack_id, "alertd (acked alerts resolved)")
        except SilenceError:  # another replica ended it between the refresh and now
            return False
        log.info("ack %s ended: its alerts resolved", ack_id)
        return True
