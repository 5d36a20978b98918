"""Captures: the normalized event stream as JSON lines, one event per line.

`alertd capture` writes them; `alertd run --replay` and rule tests (`events_file:`) read them.
Each line is the event exactly as the observer received it, including `local_received`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

log = logging.getLogger(__name__)


class CaptureWriter:
    """Appends batches of events to a JSONL file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[bytes] = path.open("wb")
        self.events = 0

    def write(self, events: list[dict[str, Any]]) -> None:
        self._fh.write(b"".join(orjson.dumps(e, option=orjson.OPT_APPEND_NEWLINE) for e in events))
        self.events += len(events)

    def close(self) -> None:
        self._fh.close()


def read_capture(path: Path) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """(line number, event) for each line; event None where the line is not an event object."""
    with path.open("rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                yield lineno, None
                continue
            ok = isinstance(event, dict) and isinstance(event.get("type"), str)
            yield lineno, event if ok else None


def event_time(event: dict[str, Any]) -> float | None:
    """When alertd received the event (or, failing that, when it was sent)."""
    at = event.get("local_received", event.get("timestamp"))
    return float(at) if isinstance(at, int | float) else None
