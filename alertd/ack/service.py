"""Acknowledgement as the daemon runs it: the acks and the link signer, opened with the store and
ticked after each evaluation (alertd.daemon), so the daemon needs three lines for it."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from alertd.ack.book import Acks
from alertd.ack.links import LinkSigner
from alertd.alert import Alert
from alertd.clock import Clock
from alertd.config import Config
from alertd.silence.silences import Silences
from alertd.store.base import Store

log = logging.getLogger(__name__)


class Acknowledgement:
    def __init__(self, config: Config, silences: Silences, store: Store, clock: Clock, replica: str) -> None:
        self.config = config  # the daemon swaps in the reloaded one: external_url and link_ttl apply at once
        self.store, self.clock, self.replica = store, clock, replica
        self.acks = Acks(silences, clock, max_duration=config.acks.max_duration)
        secret_file = config.acks.link_secret_file
        self.links = LinkSigner(
            lambda: self.config.api.external_url,
            lambda: self.config.acks.link_ttl,
            secret_file=config.path(secret_file) if secret_file else None,
        )

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
        except Exception as e:
            log.warning("acknowledgements: %s (retried next tick)", e)
        return alerts

    def store_up(self) -> bool:
        return bool(getattr(self.store, "up", True))
