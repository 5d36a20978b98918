"""What the API needs from the daemon. alertd.daemon.Daemon satisfies this; so can a test harness."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from alertd.ack.book import Acks
from alertd.ack.links import LinkSigner
from alertd.alert import Alert
from alertd.auth import Auth, Logins
from alertd.clock import Clock
from alertd.config import Config
from alertd.notify.service import AlertGroup, AlertStatus
from alertd.observe.observer import Observer
from alertd.observe.series import SeriesStore
from alertd.rules.engine import Engine
from alertd.silence.silences import Silences
from alertd.sources.health import StreamHealth
from alertd.store.base import Store
from alertd.yamlfile import Problem


class ApiContext(Protocol):
    config: Config
    clock: Clock
    silences: Silences
    health: StreamHealth
    registry: CollectorRegistry
    auth: Auth
    version: str
    started_at: float
    replica: str
    logins: Logins | None  # the API server's basic-auth limiter, set by make_app (its evictions are counted)
    # read by the console's charts (alertd.api.console)
    observer: Observer
    series: SeriesStore
    engine: Engine

    @property
    def acks(self) -> Acks: ...

    @property
    def links(self) -> LinkSigner:
        """Signs and checks the notifications' ack and silence links."""

    @property
    def store(self) -> Store:
        """The state store (read-only here, so the daemon may hand a wrapper of it)."""

    def alerts(self) -> list[Alert]:
        """Pending, firing and recently resolved alerts from the rules engine."""

    def alert_status(self, alert: Alert, now: float) -> AlertStatus: ...

    def groups(self) -> list[AlertGroup]: ...

    def receiver_names(self) -> list[str]: ...

    def rule_states(self) -> list[dict[str, Any]]: ...

    def rule_problems(self) -> list[Problem]: ...

    def explain(self, labels: Mapping[str, str], now: float) -> dict[str, Any]: ...

    async def last_notification(self, receiver: str, group_key: str) -> dict[str, Any] | None: ...

    async def test_send(self, receiver: str) -> list[Any]: ...

    async def reload(self) -> Any:
        """Reload rule files; returns an object with `ok` and `problems`."""

    def observer_stats(self) -> dict[str, int]: ...

    def workers(self) -> list[dict[str, Any]]: ...

    def ready(self) -> bool: ...

    def not_ready(self) -> list[str]:
        """Why the daemon is not ready, one short reason each (empty when it is)."""
