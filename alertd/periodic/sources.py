"""Where the schedule comes from: the Celery app's beat_schedule, RedBeat's keys, django-celery-beat's
tables - each imported only when configured."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alertd.periodic.config import PeriodicConfig
from alertd.periodic.entries import Entry

EntryLoader = Callable[[], tuple[list[Entry], list[str]]]


def schedule_loader(config: PeriodicConfig) -> EntryLoader:
    """Entries from each source configured; a RedBeat entry replaces the app's of the same name
    (RedBeat copies beat_schedule into Redis, with the entry's last run)."""
    app: list[Any] = []

    def load() -> tuple[list[Entry], list[str]]:
        from alertd.periodic.beat import beat_entries, load_app

        entries: dict[str, Entry] = {}
        problems: list[str] = []
        timezone = config.timezone or "UTC"
        if config.app:
            if not app:
                app.append(load_app(config.app, config.app_path))
            timezone = config.timezone or str(app[0].timezone)
            found, problems = beat_entries(app[0])
            entries.update((e.name, e) for e in found)
        if config.redbeat is not None:
            from alertd.periodic.redbeat import redbeat_entries

            found, more = redbeat_entries(config.redbeat.url, config.redbeat.key_prefix, timezone)
            entries.update((e.name, e) for e in found)
            problems += more
        if config.django_celery_beat is not None:
            from alertd.periodic.django_beat import django_beat_entries

            found, more = django_beat_entries(config.django_celery_beat.dsn)
            entries.update((e.name, e) for e in found)
            problems += more
        return list(entries.values()), problems

    return load
