"""The building blocks of every file alertd reads (alertd.yaml, rule files): strict pydantic
models and the duration type, defined once."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict

from alertd.durations import parse_duration

Seconds = Annotated[float, BeforeValidator(parse_duration)]
"""A duration field: accepts `30s`, `5m`, `1h30m` or a number of seconds."""


class Strict(BaseModel):
    """Unknown keys are errors (a typo must not be silently ignored); aliases or names both work."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
