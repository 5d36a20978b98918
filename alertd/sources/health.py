"""Health of the event stream: the daemon's own vital signs.

CONTRACT (written by sources/, read by observe/ for the events_silence_seconds and
event_stream_up gauges, by the API and by /metrics). Keep these attribute names.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StreamHealth:
    broker: str = ""  # redacted URL (no password)
    transport: str = ""  # "redis-fast" | "amqp-fast" | "kombu" | "replay"
    # where messages are decoded: "process" (Redis: a child, alertd.sources.decode_process),
    # "loop" (the event loop), "thread" (kombu's receiver thread); "" for a replay
    decoder: str = ""
    connected: bool = False
    connected_since: float | None = None
    last_event_at: float | None = None  # local receive time of the newest event
    events: int = 0  # events decoded (task.multi bodies count each event)
    messages: int = 0  # broker messages read
    malformed: int = 0  # messages or events skipped because they could not be decoded
    reconnects: int = 0
    last_error: str = ""  # redacted
    # (disconnected_at, reconnected_at) of recent outages: the gap in the stream, for the API and tests
    gaps: deque[tuple[float, float | None]] = field(default_factory=lambda: deque(maxlen=50))

    def received(self, batch: list[dict[str, Any]], now: float) -> None:
        """Stamp decoded events with our receive time and count them, before they go to the observer.

        Liveness and ages are judged on alertd's clock, never the sender's: every source stamps
        `local_received` here, the same way.
        """
        for event in batch:
            event["local_received"] = now
        self.events += len(batch)
        self.last_event_at = now

    def mark_connected(self, now: float) -> None:
        if self.gaps and self.gaps[-1][1] is None:
            self.gaps[-1] = (self.gaps[-1][0], now)
            self.reconnects += 1
        self.connected = True
        self.connected_since = now

    def mark_disconnected(self, now: float, error: str) -> None:
        if self.connected or not self.gaps or self.gaps[-1][1] is not None:
            self.gaps.append((now, None))
        self.connected = False
        self.connected_since = None
        self.last_error = error

    def to_dict(self) -> dict[str, object]:
        return {
            "broker": self.broker,
            "transport": self.transport,
            "decoder": self.decoder,
            "connected": self.connected,
            "connected_since": self.connected_since,
            "last_event_at": self.last_event_at,
            "events": self.events,
            "messages": self.messages,
            "malformed": self.malformed,
            "reconnects": self.reconnects,
            "last_error": self.last_error,
            "gaps": [list(g) for g in self.gaps],
        }
