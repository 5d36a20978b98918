"""History: every suppression, send, retry, failure, fallback and dead letter, written to the store."""

from __future__ import annotations

import logging
from typing import Any

from alertd.clock import Clock
from alertd.store.base import HistoryEntry, Store

log = logging.getLogger(__name__)


class History:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def record(
        self,
        kind: str,
        receiver: str,
        group_key: str,
        reason: str,
        outcome: str,
        alertnames: list[str],
        fps: list[str],
        detail: dict[str, Any],
    ) -> None:
        try:
            await self.store.record(
                HistoryEntry(
                    ts=self.clock.now(),
                    kind=kind,
                    receiver=receiver,
                    group_key=group_key,
                    reason=reason,
                    outcome=outcome,
                    alertnames=alertnames,
                    fingerprints=fps,
                    detail=detail,
                )
            )
        except Exception as e:  # history must never stop a page from going out
            log.warning("could not record %s in history: %s", kind, e)
