"""alertd.yaml: one settings object for the whole daemon.

Every section has a default, so `alertd run` with no file works: local Redis broker, SQLite state
next to the working directory, the rule pack in ./rules, console delivery. Errors name file, line
and field (alertd.yamlfile). Routing sections are modelled in alertd.config.routing, time
intervals in alertd.timeinterval.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from alertd.config.routing import InhibitRuleConfig, ReceiverConfig, RouteConfig
from alertd.periodic.config import PeriodicConfig
from alertd.schema import Seconds
from alertd.timeinterval import TimeIntervalConfig
from alertd.yamlfile import Document, FileError, Problem, load_yaml, validate

DEFAULT_PATHS = ("alertd.yaml", "/etc/alertd/alertd.yaml")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ApiConfig(Section):
    listen: str = "127.0.0.1:9093"  # loopback by default: exposing the API is a deliberate choice
    tokens_file: str | None = None  # lines "role:token" or "role:sha256:<hex>"; roles read, silence, admin
    basic_auth_file: str | None = None  # lines "user:role:sha256:<hex>" for tools that only speak basic auth
    max_body_bytes: int = 256 * 1024
    external_url: str = ""  # used in links in notifications
    cors_origins: list[str] = []
    # basic auth: a client (address) with this many wrong passwords within the window gets 429s
    # until the window has passed, without alertd spending a password hash on it
    max_login_failures: int = Field(10, ge=1)
    login_failure_window: Seconds = 60.0
    # slow or half-open clients: a request head (line and headers) must arrive within
    # header_timeout of connecting or of the previous response, a body within body_timeout;
    # connections past max_connections get a 503 at once
    header_timeout: Seconds = Field(10.0, gt=0)
    body_timeout: Seconds = Field(30.0, gt=0)
    max_connections: int = Field(256, ge=1)
    # client addresses whose failed logins are counted at once; past it the oldest is forgotten
    # (counted, AlertdKeysEvicted{map="login_clients"}): an attacker cycling addresses cannot grow it
    max_login_clients: int = Field(10_000, ge=1)


class EventsConfig(Section):
    durable_queue: str | None = None  # AMQP: a named durable event queue survives alertd restarts
    durable_queue_ttl: Seconds = 3600.0  # how long queued events may wait for alertd
    reconnect_max: Seconds = 30.0
    # AMQP: alertd's own reader in the event loop ("auto"), or Celery's EventReceiver in a thread
    # ("kombu", also what every broker other than Redis and RabbitMQ uses).
    transport: Literal["auto", "kombu"] = "auto"
    # Redis: where messages are decoded - a child process ("process"; "auto" when alertd may use
    # two CPUs or more, by its affinity and CPU quota), or the event loop ("inline").
    decode: Literal["auto", "process", "inline"] = "auto"
    # As the Celery app sets them (event_exchange, event_queue_ttl, event_queue_expires).
    exchange: str = "celeryev"
    queue_ttl: Seconds | None = 5.0
    queue_expires: Seconds | None = 60.0


class SamplerConfig(Section):
    interval: Seconds = 15.0
    queues: list[str] = ["celery"]  # plus queues discovered from workers (inspect active_queues)
    inspect: bool = True
    inspect_timeout: Seconds = 2.0
    # queue names sampled per round, the configured ones first, then those workers consume (a
    # worker decides those); past it the rest are not sampled and the least recently sampled
    # queue is forgotten, both counted (AlertdKeysEvicted{map="queues"})
    max_queues: int = Field(1_000, ge=1)


class ObserveConfig(Section):
    max_tasks: int = Field(100_000, ge=100)
    max_workers: int = Field(5_000, ge=1)
    worker_lost_after: Seconds = 10.0  # floor; the real timeout is max(this, heartbeat freq x misses)
    heartbeat_misses: float = Field(2.5, gt=1)
    # a worker back under its hostname this soon after its goodbye was restarted (a deploy): no page
    restart_grace: Seconds = Field(120.0, ge=0)
    # queue_latency_p95_seconds counts the waits of tasks started this recently with those still waiting
    recent_starts: Seconds = Field(60.0, gt=0)
    # producers' and workers' clocks further apart than this are corrected for in queue waits, and
    # a worker this far from alertd's clock is flagged in the worker view (never dropped)
    max_clock_skew: Seconds = Field(2.0, ge=0)
    bucket: Seconds = 5.0  # resolution of rule windows
    retention: Seconds = 3600.0  # longest window any rule may use
    max_series: int = Field(10_000, ge=10)
    # per event rule: distinct `by` keys (task names, exceptions...) it counts at once; past it
    # the least recently matched is evicted, counted, and AlertdEventKeysEvicted fires
    max_event_keys: int = Field(10_000, ge=1)
    # per rule: resolved alerts kept (resolved_retention, 15m) for their notices and the API; past
    # it the oldest already notified go early, counted; one whose notice is still owed always stays
    max_resolved_alerts: int = Field(10_000, ge=1)
    # task names whose last success is kept (absent-task rules read it); least recent goes first
    max_task_names: int = Field(10_000, ge=1)
    # tasks of lost or stopped workers kept by uuid, so that a redelivery is recognised
    max_orphans: int = Field(10_000, ge=1)
    # hostnames of producers and workers whose clock offsets are followed (queue-wait correction)
    max_senders: int = Field(10_000, ge=1)
    expect_tasks: list[str] = []  # periodic tasks watched from start even before the first run


class SilencesConfig(Section):
    retention: Seconds = 5 * 86400.0  # expired silences kept this long, as in Alertmanager
    # Alertmanager 0.28's --silences.max-silences and --silences.max-silence-size-bytes (0: no
    # limit), here with limits by default: every silence is matched against every alert.
    max_silences: int = Field(1000, ge=0)  # active and pending; as many maintenance windows
    max_silence_bytes: int = Field(32 * 1024, ge=0)  # one silence as stored (matchers, comment, ...)


class AcksConfig(Section):
    """Acknowledgements (docs/acknowledge.md)."""

    max_duration: Seconds = Field(7 * 86400.0, gt=0)  # an ack with no `until` ends by then (its resolve ends it sooner)
    link_ttl: Seconds = Field(86400.0, gt=0)  # how long a notification's ack / silence link works
    link_silence_for: Seconds = Field(7200.0, gt=0)  # how long a notification's silence link silences
    # the links' HMAC key: a file holding it, else $ALERTD_LINK_SECRET, else one generated and kept in the store
    link_secret_file: str | None = None


class HaConfig(Section):
    replica: str = ""  # defaults to $ALERTD_REPLICA, else hostname:API port (stable across restarts)
    claim_ttl: Seconds = 60.0


class Config(Section):
    broker: str = "redis://localhost:6379/0"
    broker_transport_options: dict[str, Any] = {}
    rule_files: list[str] = ["rules/*.yaml"]
    store: str = "sqlite:///alertd-state.db"
    templates_dir: str | None = None  # overrides templates by file name
    api: ApiConfig = ApiConfig()
    events: EventsConfig = EventsConfig()
    sampler: SamplerConfig = SamplerConfig()
    observe: ObserveConfig = ObserveConfig()
    silences: SilencesConfig = SilencesConfig()
    acks: AcksConfig = AcksConfig()
    ha: HaConfig = HaConfig()
    periodic: PeriodicConfig = PeriodicConfig()  # docs/periodic.md
    receivers: list[ReceiverConfig] = []
    route: RouteConfig | None = None
    inhibit_rules: list[InhibitRuleConfig] = []
    builtin_inhibit_rules: bool = True  # one page per cause for the default pack (docs/routing.md)
    # Alertmanager 0.30's --dispatch.start-delay: no group is flushed sooner than this after
    # start, so every inhibition source is known before its targets are sent. alertd's sources
    # are its own rules, evaluated (restored alerts held until their data is back) before the
    # first dispatch, so 0 is safe; raise it if your inhibition sources need samples to settle.
    dispatch_start_delay: Seconds = Field(0.0, ge=0)
    time_intervals: list[TimeIntervalConfig] = []

    # Where the file was found; relative paths in it (rule_files, tokens_file, templates_dir,
    # sqlite store) are resolved against this directory.
    base_dir: Path = Field(default_factory=Path.cwd, exclude=True, init=False)
    source: str = Field("<defaults>", exclude=True, init=False)

    @field_validator("broker")
    @classmethod
    def _broker_scheme(cls, v: str) -> str:
        scheme = v.split("://", 1)[0] if "://" in v else ""
        known = {"redis", "rediss", "sentinel", "amqp", "amqps", "pyamqp", "memory"}
        if scheme not in known:
            raise ValueError("expected a broker URL such as redis://host:6379/0 or amqp://user:pass@host//")
        return v

    def path(self, p: str) -> Path:
        """Resolve a path from the config file against the file's directory."""
        q = Path(os.path.expanduser(p))
        return q if q.is_absolute() else self.base_dir / q


def find_config(explicit: str | None = None) -> Path | None:
    """The config file to use: --config, $ALERTD_CONFIG, ./alertd.yaml, /etc/alertd/alertd.yaml."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("ALERTD_CONFIG")
    if env:
        return Path(env)
    for candidate in DEFAULT_PATHS:
        if Path(candidate).is_file():
            return Path(candidate)
    return None


def load_config(path: str | Path | None = None, *, text: str | None = None) -> Config:
    """Load and validate alertd.yaml; defaults when path is None. Raises FileError."""
    if path is None and text is None:
        return Config()
    name = str(path) if path is not None else "<config>"
    doc: Document = load_yaml(name, text)
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        raise FileError([Problem(name, 1, "", "expected a mapping of settings at the top level")])
    cfg = validate(Config, doc, data)
    problems = _cross_check(cfg, doc)
    if problems:
        raise FileError(problems)
    base = Path(path).resolve().parent if path is not None else Path.cwd()
    return cfg.model_copy(update={"base_dir": base, "source": name})


def _cross_check(cfg: Config, doc: Document) -> list[Problem]:
    """Names that must refer to something defined elsewhere in the file."""
    problems: list[Problem] = []
    receivers = [r.name for r in cfg.receivers]
    known = set(receivers) | {"console"}
    seen: set[str] = set()
    for i, name in enumerate(receivers):
        if name in seen:
            problems.append(doc.problem(("receivers", i, "name"), f"receiver {name!r} is defined twice"))
        seen.add(name)
    for i, r in enumerate(cfg.receivers):
        if r.fallback is not None and r.fallback not in known:
            problems.append(doc.problem(("receivers", i, "fallback"), f"no receiver named {r.fallback!r}"))
    intervals = {t.name for t in cfg.time_intervals}

    def walk(route: RouteConfig | None, loc: tuple[str | int, ...]) -> None:
        if route is None:
            return
        if route.receiver is not None and route.receiver not in known:
            hint = f" (defined: {', '.join(sorted(known))})"
            problems.append(doc.problem((*loc, "receiver"), f"no receiver named {route.receiver!r}{hint}"))
        for j, step in enumerate(route.escalate):
            if step.receiver not in known:
                hint = f" (defined: {', '.join(sorted(known))})"
                where = (*loc, "escalate", j, "receiver")
                problems.append(doc.problem(where, f"no receiver named {step.receiver!r}{hint}"))
            elif step.receiver == route.receiver:
                problems.append(
                    doc.problem((*loc, "escalate", j, "receiver"), f"{step.receiver!r} is the route's own receiver")
                )
        for field in ("active_time_intervals", "mute_time_intervals"):
            for j, name in enumerate(getattr(route, field)):
                if name not in intervals:
                    problems.append(doc.problem((*loc, field, j), f"no time interval named {name!r}"))
        for j, child in enumerate(route.routes):
            walk(child, (*loc, "routes", j))

    if cfg.route is not None and cfg.route.receiver is None and cfg.receivers:
        problems.append(doc.problem(("route",), "the root route needs a `receiver`"))
    walk(cfg.route, ("route",))
    return problems
