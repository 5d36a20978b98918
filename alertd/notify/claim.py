"""HA: one replica at a time sends for a group.

The claim is a lock on the group, not on one notification: the replica that waits reads what the
other one logged (the dedup stage after this one), so a group that grew during group_wait is not
paged twice. A replica that dies holding it is recognised when it comes back (its identity is
stable); otherwise the claim expires. It is renewed while the send lives - retries can outlast
claim_ttl - so a dead sender's claim expires within claim_ttl, whatever backoff it was in.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from alertd.clock import Clock
from alertd.faults import crash_point
from alertd.notify.stage import Flush
from alertd.store.base import Store

log = logging.getLogger(__name__)

CLAIM_RECHECK_SECONDS = 5.0  # a group whose send another replica holds is looked at again this soon


class Claims:
    """The send claims this replica holds, handed back on stop."""

    def __init__(self, store: Store, clock: Clock, replica: str, ttl: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock
        self.replica = replica
        self.ttl = ttl  # the configured claim_ttl (it may change on reload)
        self.held: set[str] = set()

    async def take(self, key: str, now: float) -> bool:
        if not await self.store.claim(key, self.replica, self.ttl(), now):
            return False
        self.held.add(key)
        return True

    async def renew(self, key: str) -> None:
        ttl = self.ttl()
        while True:
            await self.clock.sleep(ttl / 3)
            try:
                await self.store.claim(key, self.replica, ttl, self.clock.now())
            except Exception as e:
                log.warning("could not renew claim %s: %s", key, e)

    async def release(self, key: str) -> None:
        self.held.discard(key)
        try:
            await self.store.release(key, self.replica)
        except Exception as e:  # it expires by itself; a failed release only delays the other replica
            log.warning("could not release claim %s: %s", key, e)

    async def release_all(self) -> None:
        """A graceful stop hands its claims back, so the other replica (or this one, restarted)
        sends what is owed at once instead of waiting for the claims to expire."""
        for key in list(self.held):
            await self.release(key)


class ClaimStage:
    def __init__(self, claims: Claims) -> None:
        self.claims = claims

    async def __call__(self, flush: Flush) -> Flush | None:
        assert flush.plan is not None
        kind, group, receiver, now = flush.plan.kind, flush.group, flush.receiver, flush.now
        key = f"send:{receiver.name}:{group.key}"
        crash_point("before-claim", kind)
        if not await self.claims.take(key, now):
            recheck = now + min(group.route.group_interval, CLAIM_RECHECK_SECONDS)
            group.next_flush = min(group.next_flush, recheck)
            log.info(
                "group %s: another replica holds the send to %s; checking again in %.0fs",
                group.key,
                receiver.name,
                recheck - now,
            )
            return None
        # Released when the pipeline ends or fails. A cancelled send (shutdown) keeps its claim
        # until stop() hands it back; a crashed one keeps it until it expires or this replica,
        # restarted, takes it again.
        flush.on_release(lambda: self.claims.release(key))
        crash_point("after-claim", kind)
        flush.in_background(asyncio.create_task(self.claims.renew(key), name=f"claim {key}"))
        return flush
