"""Event rules' subscriptions: callbacks by event type (or for every type), called with each
enriched event; a broken callback is logged and never stops ingestion."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from alertd.observe.fields import exception_class, trim_traceback

if TYPE_CHECKING:
    from alertd.observe.tasks import Task

log = logging.getLogger("alertd.observe.observer")  # where these were logged before they moved here

Watcher = Callable[[dict[str, Any]], None]


class Watchers:
    """Callbacks by event type (`by_type`) and for all types (`all`); both mutated in place, so
    the observer's hot path may hold them."""

    def __init__(self) -> None:
        self.by_type: dict[str, list[Watcher]] = {}
        self.all: list[Watcher] = []

    def watch(self, callback: Watcher, types: frozenset[str] | None = None) -> Callable[[], None]:
        """Call `callback` with each enriched event of `types` (all when None); returns unsubscribe."""
        if types is None:
            self.all.append(callback)
        else:
            for t in types:
                self.by_type.setdefault(t, []).append(callback)

        def unsubscribe() -> None:
            if types is None:
                if callback in self.all:
                    self.all.remove(callback)
            else:
                for t in types:
                    cbs = self.by_type.get(t, [])
                    if callback in cbs:
                        cbs.remove(callback)
                    if not cbs:
                        self.by_type.pop(t, None)

        return unsubscribe

    def notify(self, kind: str, enriched: dict[str, Any]) -> None:
        for cb in (*self.by_type.get(kind, ()), *self.all):
            try:
                cb(enriched)
            except Exception:  # a broken rule must not stop ingestion
                log.exception("event watcher failed")


def enrich(event: dict[str, Any], task: Task | None, tasks: Mapping[str, Task]) -> dict[str, Any]:
    """The event plus task name, queue, worker and exception class joined from the task table."""
    out = dict(event)
    uuid = event.get("uuid")
    if task is None and isinstance(uuid, str):
        task = tasks.get(uuid)
    out["task"] = event.get("name") or (task.name if task else "")
    out["queue"] = event.get("queue") or (task.queue if task else "")
    out["worker"] = event.get("hostname") or (task.worker if task else "")
    if "exception" in event:
        out["exception_repr"] = event.get("exception") or ""
        out["exception"] = exception_class(event.get("exception"), event.get("traceback"))
    if "traceback" in event:
        out["traceback"] = trim_traceback(event.get("traceback"))
    return out
