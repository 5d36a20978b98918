"""The `periodic:` section of alertd.yaml: where the beat schedule is read from, and how often."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from alertd.schema import Seconds


class RedBeatSource(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str  # the Redis RedBeat uses (redbeat_redis_url, else the broker)
    key_prefix: str = "redbeat:"  # redbeat_key_prefix


class DjangoBeatSource(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # postgresql://user:pass@host:5432/db or mysql://user:pass@host:3306/db (MariaDB too); a user
    # with SELECT on the django_celery_beat_* tables is enough
    dsn: str


class PeriodicConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The Celery app whose beat_schedule is checked, as `celery -A` takes it: "proj.celery:app".
    app: str | None = None
    # Prepended to sys.path before the import (the directory `celery -A` would be run from).
    app_path: str | None = None
    redbeat: RedBeatSource | None = None  # RedBeat's entries in Redis (the `redbeat` extra)
    django_celery_beat: DjangoBeatSource | None = None  # its tables (the `django-celery-beat` extra)
    # The timezone of crontabs read from RedBeat (default: the app's when `app` is set, else UTC).
    timezone: str | None = None
    reload: Seconds = Field(60.0, gt=0)  # the schedule is read again this often
    # Runs of each entry kept for the API (the checks only need the last two).
    history: int = Field(5, ge=2, le=100)
