"""One run of a periodic entry, followed by uuid from task-sent (beat) to its outcome."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

FINAL = frozenset({"succeeded", "failed", "revoked", "rejected"})
FINISHED = frozenset({"succeeded", "failed"})  # an outcome the checks judge (revoked is an operator's act)
RUNNING = frozenset({"started"})
WAITING = frozenset({"sent", "received", "retried"})  # a retried run waits for its next attempt


@dataclass
class Run:
    uuid: str
    sent_at: float | None  # None: first seen from task-received (beat sends no task-sent events)
    received_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    state: str = "sent"  # sent received started retried succeeded failed revoked rejected lost
    worker: str = ""
    exception: str = ""
    retries: int = 0
    due_at: float | None = None  # when this run was expected (next after the run before it)
    next_due: float = math.inf  # when the run after it is due: still running then = overran

    @property
    def at(self) -> float:
        """When beat sent it (or a worker received it, when task-sent is off)."""
        at = self.sent_at if self.sent_at is not None else self.received_at
        return at if at is not None else 0.0

    @property
    def in_flight(self) -> bool:
        return self.state in RUNNING or self.state in WAITING

    def runtime(self, now: float) -> float | None:
        if self.started_at is None or self.state == "lost":
            return None
        end = self.finished_at if self.finished_at is not None else now
        return max(0.0, end - self.started_at) if self.state in RUNNING or self.state in FINISHED else None

    def overran(self, now: float) -> bool:
        """Still running when the next run was due, or finished after it was."""
        if self.state in RUNNING:
            return now >= self.next_due
        return self.state in FINISHED and self.finished_at is not None and self.finished_at > self.next_due

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["next_due"] = None if math.isinf(self.next_due) else self.next_due
        return d

    @classmethod
    def from_dict(cls, d: Any) -> Run | None:
        """A saved run; None when it does not parse (skipped, never fatal)."""
        if not isinstance(d, dict) or not isinstance(d.get("uuid"), str):
            return None
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        try:
            run = cls(**kw)
        except TypeError:
            return None
        if run.next_due is None:
            run.next_due = math.inf
        for k in ("sent_at", "received_at", "started_at", "finished_at", "due_at", "next_due"):
            v = getattr(run, k)
            if v is not None and (not isinstance(v, int | float) or isinstance(v, bool)):
                return None
        return run
