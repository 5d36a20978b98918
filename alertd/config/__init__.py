"""alertd.yaml, in one home: the settings object and its sections (settings), and the routing
models - receivers, the route tree, inhibition rules (routing). Time intervals are modelled
beside their evaluation in alertd.timeinterval, which this package imports and nothing here
imports back: timeinterval <- config <- dispatch / inhibit / silence <- notify <- daemon."""

from alertd.config.routing import (
    BUILTIN_TEMPLATES,
    CONSOLE_RECEIVER,
    EscalationStep,
    InhibitRuleConfig,
    ReceiverConfig,
    RouteConfig,
    SlackApiConfig,
    default_route,
)
from alertd.config.settings import (
    DEFAULT_PATHS,
    ApiConfig,
    Config,
    EventsConfig,
    HaConfig,
    ObserveConfig,
    SamplerConfig,
    SilencesConfig,
    find_config,
    load_config,
)
from alertd.schema import Seconds

__all__ = [
    "BUILTIN_TEMPLATES",
    "CONSOLE_RECEIVER",
    "DEFAULT_PATHS",
    "ApiConfig",
    "Config",
    "EscalationStep",
    "EventsConfig",
    "HaConfig",
    "InhibitRuleConfig",
    "ObserveConfig",
    "ReceiverConfig",
    "RouteConfig",
    "SamplerConfig",
    "Seconds",
    "SilencesConfig",
    "SlackApiConfig",
    "default_route",
    "find_config",
    "load_config",
]
