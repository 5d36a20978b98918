"""Entries from a Celery app's `beat_schedule`, the app imported as `celery -A` (and Flower) do.

Importing the user's app runs their code (Django settings, task modules): it happens in a
thread, never on the event loop, and a failure is reported, never fatal. The module is imported
once; `app.conf.beat_schedule` is read again at every reload (a schedule changed in code needs
a restart of alertd as it does of beat).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from alertd.periodic.entries import Entry, beat_args_repr, beat_kwargs_repr
from alertd.periodic.schedules import from_celery

log = logging.getLogger(__name__)


class ScheduleProblem(Exception):
    """An entry or an app alertd cannot read; the message names it."""


def load_app(spec: str, path: str | None = None) -> Any:
    """The Celery app `spec` ("proj.celery:app", "proj.celery" or "proj") names."""
    from celery.app.utils import find_app

    if path and path not in sys.path:
        sys.path.insert(0, path)
    try:
        return find_app(spec)
    except Exception as e:  # ImportError, AttributeError, anything their module raises
        raise ScheduleProblem(f"periodic.app {spec!r}: cannot import it: {type(e).__name__}: {e}") from e


def beat_entries(app: Any) -> tuple[list[Entry], list[str]]:
    """The app's beat_schedule as entries, and a problem line for each entry that cannot be read."""
    timezone = str(app.timezone)
    route = _router(app)
    entries: list[Entry] = []
    problems: list[str] = []
    for name, spec in dict(app.conf.beat_schedule or {}).items():
        try:
            entries.append(_entry(str(name), spec, timezone, route))
        except (ValueError, TypeError, KeyError) as e:
            problems.append(f"beat_schedule[{name!r}]: {e}")
    return entries, problems


def _router(app: Any) -> Any:
    """The queue a send of (task, options) goes to, as the app's task_routes decide."""
    default = str(app.conf.task_default_queue or "celery")

    def route(task: str, options: dict[str, Any], args: Any, kwargs: Any) -> str:
        try:
            queue = app.amqp.router.route(dict(options), task, args, kwargs).get("queue")
        except Exception:  # a router of theirs that raises: the queue seen in task-sent is used
            return ""
        return str(getattr(queue, "name", queue) or default)

    return route


def _entry(name: str, spec: Any, timezone: str, route: Any) -> Entry:
    if not isinstance(spec, dict) or "task" not in spec or "schedule" not in spec:
        raise ValueError("expected a mapping with `task` and `schedule`")
    options = spec.get("options") or {}
    if not isinstance(options, dict):
        raise ValueError("`options` must be a mapping")
    queue = route(str(spec["task"]), options, spec.get("args") or (), spec.get("kwargs") or {})
    return Entry(
        name=name,
        task=str(spec["task"]),
        schedule=from_celery(spec["schedule"], timezone),
        args_repr=beat_args_repr(spec.get("args")),
        kwargs_repr=beat_kwargs_repr(spec.get("kwargs")),
        queue=queue,
    )
