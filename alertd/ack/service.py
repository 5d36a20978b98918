"""Acknowledgement as the daemon runs it: the acks and the link signer, opened with the store and
ticked after each evaluation (alertd.daemon); the notifier's links, and its "acknowledged" notice
after each new ack (alertd.notify.acked), sent off the API request that made the ack."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from alertd.ack.book import Acks
from alertd.ack.links import LinkSigner
from alertd.ack.model import Ack
from alertd.alert import Alert
from alertd.clock import Clock
from alertd.config import Config
from alertd.notify.acked import tell_acknowledged
from alertd.notify.service import Notifier
from alertd.silence.silences import Silences
from alertd.store.base import Store, StoreUnavailable

log = logging.getLogger(__name__)


class Acknowledgement:
    def __init__(
        self, config: Config, silences: Silences, store: Store, clock: Clock, replica: str, notifier: Notifier
    ) -> None:
        self.config = config  # the daemon swaps in the reloaded one: external_url and link_ttl apply at once
        self.store, self.clock, self.replica = store, clock, replica
        self.acks = Acks(silences, clock, max_duration=config.acks.max_duration)
        secret_file = config.acks.link_secret_file
        self.links = LinkSigner(
            lambda: self.config.api.external_url,
            lambda: self.config.acks.link_ttl,
            secret_file=config.path(secret_file) if secret_file else None,
        )
        self.notifier = notifier
        notifier.links = self.links.links
        self.acks.on_new = self._tell
        self._telling: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        """The links' secret from the store (generated there by the first replica)."""
        await self.links.load(self.store, self.replica, self.clock.now())

    async def tick(self, alerts: Sequence[Alert]) -> Sequence[Alert]:
        """After an evaluation, before the flush: end the acks whose alerts resolved (so their
        resolved notice goes out now). A failure is retried next tick; the ack keeps muting only
        its own alerts meanwhile. Returns `alerts`, for the notifier."""
        try:
            if self.links.secret is None and self.store_up():  # started while the store was down
                await self.open()
            await self.acks.end_resolved(alerts)
        except StoreUnavailable:
            pass  # the store logged its outage once; retried next tick
        except Exception as e:
            log.warning("acknowledgements: %s (retried next tick)", e)
        return alerts

    def store_up(self) -> bool:
        return bool(getattr(self.store, "up", True))

    def _tell(self, ack: Ack) -> None:
        task = asyncio.create_task(self._send_notice(ack), name=f"ack-notice-{ack.id}")
        self._telling.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._telling.discard)

    async def _send_notice(self, ack: Ack) -> None:
        try:
            await tell_acknowledged(self.notifier, set(ack.fingerprints), ack.acked_by, ack.comment)
        except Exception as e:  # best effort: the page it follows up on went out already
            log.warning("the acknowledged notice for ack %s failed: %s", ack.id, e)

    async def settle(self) -> None:
        """Wait for the acknowledged notices in flight (tests; shutdown does not wait)."""
        await asyncio.gather(*self._telling, return_exceptions=True)
