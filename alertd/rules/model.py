"""The rule file as users write it: groups of metric, event and absence rules (pydantic, strict).

Field shapes are checked here; what needs the catalogue or several fields at once (a `by` label
the metric lacks, `recover_below` above `above`, ...) is checked by the loader, which knows the
line of every field.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from alertd.schema import Seconds, Strict

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"


class AbsentSpec(Strict):
    task: str = Field(min_length=1)  # the task name that must keep succeeding
    within: Seconds  # fires when it has not succeeded for this long


class FlappingSpec(Strict):
    """When a label set's condition drops `threshold` times within `window`, it is flapping.

    A flapping alert pages once: short drops neither reset its `for` nor resolve it, and it
    resolves only once its condition has been false for a whole `window`.
    """

    threshold: int = Field(3, ge=2)
    window: Seconds = Field(600.0, gt=0)


class RuleSpec(Strict):
    alert: str = Field(pattern=NAME_PATTERN)
    # exactly one of metric / event / absent
    metric: str | None = None
    event: str | list[str] | None = None
    absent: AbsentSpec | None = None

    stat: str | None = None  # distributions: avg, max, min, count, sum, p50, p75, p90, p95, p99
    aggregate: Literal["max", "min", "sum", "avg"] | None = None  # gauges, across labels not in `by`
    matchers: list[str] = []
    window: Seconds | None = None
    by: list[str] = []
    above: float | None = None
    below: float | None = None
    min_events: int = Field(0, ge=0)
    for_: Seconds = Field(0.0, alias="for", ge=0)
    keep_firing_for: Seconds = Field(0.0, ge=0)
    recover_below: float | None = None
    recover_above: float | None = None
    # event rules
    min_count: int = Field(1, ge=1)
    resolve_after: Seconds | None = None
    # None: the group's `flapping` (off when the group has none); false: off for this rule
    flapping: FlappingSpec | Literal[False] | None = None

    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}


class GroupSpec(Strict):
    name: str = Field(min_length=1)
    interval: Seconds = 15.0
    flapping: FlappingSpec | None = None  # the default of the group's rules
    rules: list[RuleSpec]


class RuleFileSpec(Strict):
    groups: list[GroupSpec]
