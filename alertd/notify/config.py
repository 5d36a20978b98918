"""CONTRACT STUB (owned by the notifications work): models for receivers, the route tree,
inhibition rules and time intervals as they appear in alertd.yaml. alertd/config.py imports these
four names; keep them pydantic models with extra="forbid"."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class ReceiverConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    apprise: list[str] = []


class RouteConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    receiver: str | None = None
    routes: list[RouteConfig] = []
    extra: dict[str, Any] = {}


class InhibitRuleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source_matchers: list[str] = []
    target_matchers: list[str] = []
    equal: list[str] = []


class TimeIntervalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    time_intervals: list[dict[str, Any]] = []
