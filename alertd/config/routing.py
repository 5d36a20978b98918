"""Receivers, the route tree and inhibition rules as they appear in alertd.yaml.

Shapes follow Alertmanager's configuration so its users read them without a manual; durations
accept the same units. Cross-references (a route naming a missing receiver, an unknown time
interval) are checked by alertd.config.settings, which knows the lines. Time intervals are
modelled beside their evaluation, in alertd.timeinterval (as in Alertmanager).
"""

from __future__ import annotations

import itertools

from pydantic import Field, field_validator, model_validator

from alertd.matchers import MatcherError, parse_matcher
from alertd.schema import Seconds, Strict

BUILTIN_TEMPLATES = ("slack", "email", "pagerduty", "generic", "json")
CONSOLE_RECEIVER = "console"  # prints notifications; always defined, and the default route's receiver


def _check_matchers(v: list[str]) -> list[str]:
    for text in v:
        try:
            parse_matcher(text)
        except MatcherError as e:
            raise ValueError(str(e)) from None
    return v


class SlackApiConfig(Strict):
    """Slack's Web API with a bot token: one message per incident, updated in place, with a thread."""

    token: str | None = None  # a bot token (xoxb-...); ${VAR} is expanded from the environment at load
    token_file: str | None = None  # a file holding the token: keeps it out of alertd.yaml
    channel: str = Field(min_length=1)  # "#ops" or a channel id (C0123...)
    api_url: str = "https://slack.com/api/"  # overridable for a proxy (and tests)

    @model_validator(mode="after")
    def _one_token(self) -> SlackApiConfig:
        if (self.token is None) == (self.token_file is None):
            raise ValueError("slack_api needs exactly one of token and token_file")
        return self


class ReceiverConfig(Strict):
    name: str = Field(min_length=1)
    # Apprise URLs; ${VAR} is expanded from the environment at load time. An empty list (or
    # console://) prints notifications on the console.
    apprise: list[str] = []
    apprise_file: str | None = None  # a file with one URL per line: keeps secrets out of alertd.yaml
    slack_api: SlackApiConfig | None = None  # Slack's Web API instead of Apprise (alertd.notify.slack_api)
    template: str = "generic"  # slack | email | pagerduty | generic | json | a path to a .j2 file
    send_resolved: bool = True
    send_resolved_immediately: bool = False  # all alerts of a group resolved: don't wait for group_interval
    fallback: str | None = None  # receiver that gets the notification when every retry failed
    # after a fallback delivered, the receiver itself gets one notification once it answers again
    catch_up_after_fallback: bool = True
    timeout: Seconds = 10.0  # bounds each attempt, connect and read included
    retries: int = Field(3, ge=0, le=20)
    retry_backoff: Seconds = 2.0  # first retry after this; doubles up to 60 s

    @model_validator(mode="after")
    def _one_transport(self) -> ReceiverConfig:
        if self.slack_api is not None and (self.apprise or self.apprise_file):
            raise ValueError("a receiver sends through slack_api or through apprise URLs, not both")
        return self


class EscalationStep(Strict):
    """One step of a route's escalation policy: page `receiver` too if the incident is still
    firing and unacknowledged `after` its first page (alertd.notify.escalate)."""

    after: Seconds = Field(gt=0)
    receiver: str = Field(min_length=1)


def _check_steps(v: list[EscalationStep]) -> list[EscalationStep]:
    # a policy reads top to bottom in time; the same receiver twice would be paged once anyway
    for before, step in itertools.pairwise(v):
        if step.after <= before.after:
            raise ValueError(f"each step's `after` must be later than the one before ({step.receiver!r})")
    names = [s.receiver for s in v]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"receiver {name!r} is in the escalation policy twice")
    return v


class RouteConfig(Strict):
    receiver: str | None = None
    matchers: list[str] = []
    continue_: bool = Field(False, alias="continue")
    group_by: list[str] | None = None  # ['...'] groups by every label
    group_wait: Seconds | None = None
    # Alertmanager refuses 0 for these two (a group flushed in a loop); so does alertd, so that
    # the config /api/v2/status shows passes `amtool check-config`
    group_interval: Seconds | None = Field(None, gt=0)
    repeat_interval: Seconds | None = Field(None, gt=0)
    active_time_intervals: list[str] = []
    mute_time_intervals: list[str] = []
    # not Alertmanager's: the receivers paged too while an incident stays unacknowledged
    # (docs/routing.md); not inherited by child routes, like the time intervals
    escalate: list[EscalationStep] = []
    routes: list[RouteConfig] = []

    _matchers = field_validator("matchers")(_check_matchers)
    _steps = field_validator("escalate")(_check_steps)


class InhibitRuleConfig(Strict):
    source_matchers: list[str] = Field(min_length=1)
    target_matchers: list[str] = Field(min_length=1)
    equal: list[str] = []

    _source = field_validator("source_matchers")(_check_matchers)
    _target = field_validator("target_matchers")(_check_matchers)


RouteConfig.model_rebuild()


def default_route() -> RouteConfig:
    """With no route configured: everything to the console, grouped by alert name, quickly."""
    return RouteConfig(
        receiver=CONSOLE_RECEIVER,
        group_by=["alertname"],
        group_wait=10.0,
        group_interval=60.0,
        repeat_interval=4 * 3600.0,
    )
