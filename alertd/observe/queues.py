"""The queue table: the latest sample of each queue, since when it has not got shorter, and when
it was last found empty (a task sent before that is no longer in the broker)."""

from __future__ import annotations

from alertd.observe.waiting import Gauges
from alertd.observe.workers import SAMPLE_STALE_AFTER
from alertd.samples import QueueSample


class QueueTable:
    """Queues by name, least recently sampled first; at most `max_queues` of them."""

    def __init__(self, stats: dict[str, int], max_queues: int) -> None:
        self.max_queues = max_queues
        self._stats = stats
        self.queues: dict[str, QueueSample] = {}
        self.growing_since: dict[str, float] = {}  # queue -> since when it has not got shorter
        self.emptied: dict[str, float] = {}  # queue -> when a sample last found it empty

    def on_sample(self, s: QueueSample) -> None:
        """Latest length and consumers of a queue; notes since when it has not got shorter."""
        queues = self.queues
        prev = queues.pop(s.queue, None)  # re-inserted below: the least recently sampled goes first
        if prev is None and len(queues) >= self.max_queues:
            # Queue names are the workers' to choose; past max_queues the stalest is forgotten.
            gone = next(iter(queues))
            del queues[gone]
            self.growing_since.pop(gone, None)
            self.emptied.pop(gone, None)
            self._stats["queues_evicted"] += 1
        if s.messages == 0 or prev is None or s.messages < prev.messages:
            self.growing_since[s.queue] = s.at
        if s.messages == 0:
            self.emptied[s.queue] = s.at
        queues[s.queue] = s

    def gauges(self, g: Gauges, now: float) -> None:
        """The queue_* gauges of the samples; a queue no longer sampled is forgotten."""
        for q, s in list(self.queues.items()):
            if now - s.at > SAMPLE_STALE_AFTER:
                # No longer sampled (deleted, or no worker lists it): report nothing rather than a stale length.
                del self.queues[q]
                self.growing_since.pop(q, None)
                self.emptied.pop(q, None)
                continue
            g["queue_length"][(q,)] = float(s.messages)
            if s.consumers is not None:
                g["queue_consumers"][(q,)] = float(s.consumers)
                g["queue_stranded_messages"][(q,)] = float(s.messages) if s.consumers == 0 else 0.0
            since = self.growing_since.get(q, s.at)
            g["queue_not_draining_seconds"][(q,)] = s.at - since if s.messages > 0 else 0.0
