"""A worker's losses: the record of one gone process, and when alertd could have seen one.

A loss is judged from missing heartbeats only while alertd's own event stream was up to carry
them (alertd.observe.workers judges; this says since when it could see): silence during our
own outage, or just after it while the workers reconnect too, is our blindness, not a death.
"""

from __future__ import annotations

import math
from typing import Any

from alertd.sources.health import StreamHealth

# Workers cut off by the same broker outage reconnect on kombu's backoff (2 s, 4 s, 6 s ... apart,
# at most 30 s): after a gap in our stream they may come back up to this long after we do.
WORKER_RECONNECT_MAX = 30.0
LOSS_NAMES_SHOWN = 10  # task names listed in a loss's summary; the rest are counted


class Loss:
    """One process of a worker gone: how, when, and the tasks it held."""

    __slots__ = ("at", "cause", "pages", "pid", "redelivered", "tasks")

    def __init__(self, at: float, cause: str, pid: int, tasks: dict[tuple[str, str], int], pages: bool) -> None:
        self.at = at
        self.cause = cause  # "heartbeats" (silence), "restart" (new pid, no goodbye) or "offline" (goodbye)
        self.pid = pid
        self.tasks = tasks  # (task name, "started" | "received") -> how many
        self.pages = pages  # no goodbye, and alertd was watching: a real loss, not its own blindness
        self.redelivered = 0  # of those tasks, received again since (acks_late, or reserved ones)

    def orphaned(self) -> int:
        return sum(self.tasks.values())

    def summary(self) -> str:
        """'1 t.sleep (running), 3 t.add (reserved)', the most numerous first."""
        parts = sorted(self.tasks.items(), key=lambda kv: (-kv[1], kv[0]))
        words = [
            f"{n} {name or '(unnamed)'} ({'running' if state == 'started' else 'reserved'})"
            for (name, state), n in parts[:LOSS_NAMES_SHOWN]
        ]
        rest = sum(n for _, n in parts[LOSS_NAMES_SHOWN:])
        if rest:
            words.append(f"{rest} more")
        return ", ".join(words)

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "cause": self.cause,
            "pid": self.pid,
            "orphaned": self.orphaned(),
            "running": sum(n for (_, s), n in self.tasks.items() if s == "started"),
            "reserved": sum(n for (_, s), n in self.tasks.items() if s == "received"),
            "redelivered": self.redelivered,
            "tasks": [{"task": name, "state": s, "count": n} for (name, s), n in sorted(self.tasks.items())],
        }


def seeing_since(h: StreamHealth | None) -> float | None:
    """From when on missing heartbeats count: None while the stream is down (nobody is judged).

    After a reconnect (and after alertd's own start) silence counts from the reconnect, plus
    the time the workers cut off by the same outage may take to reconnect themselves.
    """
    if h is None:
        return -math.inf
    if not h.connected or h.connected_since is None:
        return None
    since = h.connected_since
    if h.gaps and h.gaps[-1][1] == since:
        since += min(since - h.gaps[-1][0], WORKER_RECONNECT_MAX)
    return since


def watched_since(h: StreamHealth | None, t: float) -> bool:
    """Whether the stream has been up without a gap since `t`: no event since then was missed."""
    if h is None:
        return True
    return h.connected and h.connected_since is not None and h.connected_since <= t
