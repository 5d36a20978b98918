"""Beat schedule entries written inline in a rule test (`periodic:` in tests/rules/*.yaml)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, model_validator

from alertd.periodic.entries import Entry
from alertd.periodic.schedules import Interval, Schedule, Solar, crontab_from_text
from alertd.schema import Seconds


class SolarSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    event: str
    lat: float
    lon: float


class TestEntry(BaseModel):
    """One entry: exactly one of `every`, `crontab` or `solar`; args/kwargs as task-sent shows them."""

    __test__ = False  # not a pytest class
    model_config = ConfigDict(extra="forbid")
    name: str
    task: str
    every: Seconds | None = None
    crontab: str | None = None
    solar: SolarSpec | None = None
    timezone: str = "UTC"
    args: str = "()"
    kwargs: str = "{}"
    queue: str = "celery"
    enabled: bool = True

    @model_validator(mode="after")
    def _one_schedule(self) -> TestEntry:
        if sum(x is not None for x in (self.every, self.crontab, self.solar)) != 1:
            raise ValueError("give exactly one of `every`, `crontab` or `solar`")
        return self

    def schedule(self) -> Schedule:
        if self.every is not None:
            return Interval(self.every)
        if self.crontab is not None:
            return crontab_from_text(self.crontab, self.timezone)
        assert self.solar is not None
        return Solar(self.solar.event, self.solar.lat, self.solar.lon)

    def entry(self) -> Entry:
        return Entry(self.name, self.task, self.schedule(), self.args, self.kwargs, self.queue, self.enabled, "test")
