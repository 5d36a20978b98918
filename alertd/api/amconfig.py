"""alertd's routing as an Alertmanager config file: what GET /api/v2/status shows in `config.original`.

amtool (`config show`, `config routes`, `config routes test`) and Grafana's Alertmanager data
source parse that text with Alertmanager's own config loader, which refuses any key it does not
know and any duration that is not a Prometheus duration. So this is not alertd.yaml: it is the
route tree, receivers, inhibition rules and time intervals alertd runs, in Alertmanager's field
names and order, durations as Prometheus' model.Duration prints them (`10s`, `5m`, `4h`). The
whole alertd.yaml, redacted, is GET /api/alertd/v1/config.

Receivers deliver through Apprise, which Alertmanager has no integration for: each is rendered
by name only (a receiver with no integrations is valid there), so no URL, and with it no secret,
ever reaches this text.
"""

from __future__ import annotations

import math
from typing import Any

import yaml

from alertd.config import CONSOLE_RECEIVER, Config, RouteConfig, default_route
from alertd.dispatch.route import (
    DEFAULT_GROUP_INTERVAL,
    DEFAULT_GROUP_WAIT,
    DEFAULT_REPEAT_INTERVAL,
    GROUP_BY_ALL,
)
from alertd.inhibit import effective_rules
from alertd.matchers import parse_matcher
from alertd.timeinterval import TimeIntervalSpec, compile_interval

HEADER = (
    "# alertd's routing in Alertmanager's config format (amtool config routes / check-config read it).\n"
    "# Receivers deliver through Apprise and are listed by name; the full alertd.yaml, redacted,\n"
    "# is GET /api/alertd/v1/config.\n"
)

# model.Duration's units, largest first; years and weeks only when they divide exactly, as
# Prometheus prints them (90d, not 12w6d).
_UNITS_MS = (
    ("y", 365 * 86_400_000, True),
    ("w", 7 * 86_400_000, True),
    ("d", 86_400_000, False),
    ("h", 3_600_000, False),
    ("m", 60_000, False),
    ("s", 1000, False),
    ("ms", 1, False),
)


def go_duration(seconds: float) -> str:
    """Seconds as Prometheus' model.Duration.String() writes them: 10s, 5m, 4h, 1h30m, 1w, 250ms.

    model.Duration has millisecond resolution: alertd's float seconds are rounded to the nearest
    millisecond (not truncated, or 0.57 s would print as 569ms)."""
    if not math.isfinite(seconds):
        raise ValueError(f"not a finite duration: {seconds!r}")
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    sign, ms = ("-", -ms) if ms < 0 else ("", ms)
    out = ""
    for unit, size, exact in _UNITS_MS:
        if exact and ms % size:
            continue
        if ms >= size:
            out += f"{ms // size}{unit}"
            ms %= size
    return sign + out


def _matchers(texts: list[str]) -> list[str]:
    # canonical `name="value"` form: what alertd parsed, quoted as Alertmanager's parser expects
    return [str(parse_matcher(t)) for t in texts]


def _route(cfg: RouteConfig, *, root: bool) -> dict[str, Any]:
    # Only Alertmanager's fields: alertd's own `escalate` would make its loader refuse the whole
    # file, so escalation policies are left out here (GET /api/alertd/v1/config has them).
    out: dict[str, Any] = {}
    if cfg.receiver is not None:
        out["receiver"] = cfg.receiver
    if cfg.group_by:
        # `...` groups by every label whatever else is listed (alertd.dispatch.route); Alertmanager
        # refuses it beside other names
        out["group_by"] = [GROUP_BY_ALL] if GROUP_BY_ALL in cfg.group_by else list(cfg.group_by)
    # the root route matches everything and never continues (alertd ignores both there, and
    # Alertmanager refuses them), so they are left out of it
    if cfg.matchers and not root:
        out["matchers"] = _matchers(cfg.matchers)
    if cfg.mute_time_intervals and not root:
        out["mute_time_intervals"] = list(cfg.mute_time_intervals)
    if cfg.active_time_intervals and not root:
        out["active_time_intervals"] = list(cfg.active_time_intervals)
    out["continue"] = bool(cfg.continue_) and not root  # Alertmanager prints it on every route
    if cfg.routes:
        out["routes"] = [_route(c, root=False) for c in cfg.routes]
    # on the root, the timers in force (Alertmanager fills its defaults in there too); below it,
    # only what the route sets, the rest being inherited
    timers = (
        ("group_wait", cfg.group_wait, DEFAULT_GROUP_WAIT),
        ("group_interval", cfg.group_interval, DEFAULT_GROUP_INTERVAL),
        ("repeat_interval", cfg.repeat_interval, DEFAULT_REPEAT_INTERVAL),
    )
    for key, value, default in timers:
        if value is not None or root:
            out[key] = go_duration(default if value is None else value)
    return out


# Alertmanager counts weekdays from sunday, alertd from monday (alertd.timeinterval): alertd's
# `saturday:sunday` is a range Alertmanager refuses ("start day cannot be before end day").
AM_WEEKDAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")


def am_weekdays(spec: TimeIntervalSpec) -> list[str]:
    """The days alertd's weekday ranges cover, as Alertmanager ranges (sunday first, no wrapping)."""
    days = {(d + 1) % 7 for a, b in compile_interval(spec).weekdays for d in range(a, b + 1)}
    out: list[str] = []
    day = 0
    while day < 7:
        if day not in days:
            day += 1
            continue
        end = day
        while end + 1 in days:
            end += 1
        out.append(AM_WEEKDAYS[day] if end == day else f"{AM_WEEKDAYS[day]}:{AM_WEEKDAYS[end]}")
        day = end + 1
    return out


def _interval(spec: TimeIntervalSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if spec.times:
        out["times"] = [{"start_time": t.start_time, "end_time": t.end_time} for t in spec.times]
    if spec.weekdays:
        out["weekdays"] = am_weekdays(spec)
    for key in ("days_of_month", "months", "years"):
        values = getattr(spec, key)
        if values:
            out[key] = list(values)
    out["location"] = spec.location
    return out


def root_time_intervals(config: Config) -> list[str]:
    """Time intervals set on the root route: alertd applies them, Alertmanager's format cannot say so."""
    route = config.route or default_route()
    return [*route.mute_time_intervals, *route.active_time_intervals]


def alertmanager_config(config: Config) -> dict[str, Any]:
    """The routing alertd runs, as the document Alertmanager's config loader expects."""
    route = config.route or default_route()
    names = [r.name for r in config.receivers]
    if CONSOLE_RECEIVER not in names:  # always defined in alertd (alertd.notify.service)
        names.append(CONSOLE_RECEIVER)
    doc: dict[str, Any] = {"route": _route(route, root=True)}
    inhibit = effective_rules(config.inhibit_rules, builtin=config.builtin_inhibit_rules)
    if inhibit:
        doc["inhibit_rules"] = [
            {
                "source_matchers": _matchers(r.source_matchers),
                "target_matchers": _matchers(r.target_matchers),
                **({"equal": list(r.equal)} if r.equal else {}),
            }
            for r in inhibit
        ]
    doc["receivers"] = [{"name": n} for n in names]
    if config.time_intervals:
        doc["time_intervals"] = [
            {"name": t.name, "time_intervals": [_interval(s) for s in t.time_intervals]} for t in config.time_intervals
        ]
    return doc


def alertmanager_yaml(config: Config) -> str:
    """`alertmanager_config` as YAML text, with a header saying what it is and is not."""
    note = HEADER
    rooted = root_time_intervals(config)
    if rooted:
        note += (
            f"# The root route's time intervals ({', '.join(rooted)}) apply, but Alertmanager has no"
            " place for them on the root.\n"
        )
    return note + str(yaml.safe_dump(alertmanager_config(config), sort_keys=False, allow_unicode=True))
