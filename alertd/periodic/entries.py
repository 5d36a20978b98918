"""A periodic entry as alertd checks it, whatever scheduler it came from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alertd.periodic.schedules import Schedule


@dataclass(frozen=True)
class Entry:
    name: str  # the beat_schedule key (RedBeat / django-celery-beat: the entry's name)
    task: str
    schedule: Schedule
    args_repr: str = "()"  # as Celery's task-sent event shows them (saferepr), to tell entries apart
    kwargs_repr: str = "{}"
    queue: str = ""  # options.queue; else the queue its task-sent events name
    enabled: bool = True
    source: str = "beat_schedule"
    last_run_at: float | None = None  # when the scheduler stores it (RedBeat, django-celery-beat)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task": self.task,
            "schedule": self.schedule.as_dict(),
            "schedule_text": self.schedule.describe(),
            "args": self.args_repr,
            "kwargs": self.kwargs_repr,
            "queue": self.queue,
            "enabled": self.enabled,
            "source": self.source,
        }


def call_repr(value: Any, limit: int = 1024) -> str:
    """What Celery puts in task-sent's args/kwargs for `value` (celery.utils.saferepr, 1024 chars)."""
    from celery.utils.saferepr import saferepr

    return str(saferepr(value, limit))


def beat_args_repr(args: Any) -> str:
    """The args repr of beat's sends of an entry: beat hands apply_async a list (a tuple when empty).

    "" (matches any) when an argument is a BeatLazyFunc: its value is computed at each send.
    """
    if not args:
        return call_repr(())
    values = list(args)
    if any(type(v).__name__ == "BeatLazyFunc" for v in values):
        return ""
    return call_repr(values)


def beat_kwargs_repr(kwargs: Any) -> str:
    """The kwargs repr of beat's sends ("" when a value is a BeatLazyFunc)."""
    values = dict(kwargs or {})
    if any(type(v).__name__ == "BeatLazyFunc" for v in values.values()):
        return ""
    return call_repr(values)


def same_call(entry_repr: str, event_repr: Any) -> bool:
    """Whether an event's args (or kwargs) repr is the entry's. Celery truncates long ones with '...'."""
    if not isinstance(event_repr, str) or not entry_repr:
        return True  # an event without the field (protocol 1, or a stripped capture): cannot tell
    if event_repr == entry_repr:
        return True
    for a, b in ((event_repr, entry_repr), (entry_repr, event_repr)):
        if a.endswith("...") and b.startswith(a[:-3]):
            return True
    return False
