"""The clocks of the event senders, as seen from ours: what makes a duration across two senders right.

Liveness and ages are measured on alertd's receive clock, immune to anyone's skew. Durations are
Celery's own, from event timestamps, and a queue wait spans two clocks: the producer's (sent, ETA)
and the worker's (started). Each sender's offset is estimated from its events as the largest
timestamp - receive time over a minute: the least delayed event shows its clock best, and a backlog
on our side (which delays every event) does not pass for skew. Offsets under `max_clock_skew`
apart are taken for transit noise and change nothing.
"""

from __future__ import annotations

CLOCK_WINDOW = 60.0  # an offset estimate is the best of this long; then a new window starts
MAX_SENDERS = 10_000  # producers and workers whose clocks are followed; past it the oldest goes


class Clocks(dict[str, tuple[float, float]]):
    """hostname -> (offset estimate, start of its window), at most `max_senders` of them.

    Producers' hostnames come from the outside (every task-sent names one): past the cap the
    oldest entry goes, counted in `evicted`.
    """

    def __init__(self, max_senders: int = MAX_SENDERS) -> None:
        super().__init__()
        self.max_senders = max_senders
        self.evicted = 0


def note(clocks: Clocks, host: str, offset: float, now: float) -> tuple[float, float]:
    """Fold one event's `timestamp - receive time` of `host` into its estimate; the estimate."""
    current = clocks.get(host)
    if current is None:
        if len(clocks) >= clocks.max_senders:
            del clocks[next(iter(clocks))]
            clocks.evicted += 1
        current = clocks[host] = (offset, now)
    elif now - current[1] > CLOCK_WINDOW:
        current = clocks[host] = (offset, now)
    elif offset > current[0]:
        current = clocks[host] = (offset, current[1])
    return current
