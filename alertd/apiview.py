"""The daemon as the API sees it (alertd.api.context.ApiContext): read-only views of the engine,
the notifier, the observer and the reloader, and the HTTP server's start."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from alertd.ack.book import Acks
from alertd.ack.links import LinkSigner
from alertd.ack.service import Acknowledgement
from alertd.alert import Alert
from alertd.api.context import ApiContext
from alertd.config.settings import ApiConfig
from alertd.notify.service import AlertGroup, AlertStatus, Notifier
from alertd.observe.observer import Observer
from alertd.rules.engine import Engine
from alertd.rules.reload import RuleReloader
from alertd.sources.health import StreamHealth
from alertd.store.buffered import BufferedStore
from alertd.yamlfile import Problem


class ApiView:
    """Mixed into the Daemon, whose parts these read."""

    engine: Engine
    notifier: Notifier
    observer: Observer
    reloader: RuleReloader
    store: BufferedStore
    health: StreamHealth
    _store_open: bool
    acking: Acknowledgement

    @property
    def acks(self) -> Acks:
        return self.acking.acks

    @property
    def links(self) -> LinkSigner:
        return self.acking.links

    def alerts(self) -> list[Alert]:
        return self.engine.alerts()

    def alert_status(self, alert: Alert, now: float) -> AlertStatus:
        return self.notifier.alert_status(alert, now)

    def groups(self) -> list[AlertGroup]:
        return self.notifier.groups()

    def receiver_names(self) -> list[str]:
        return list(self.notifier.receiver_names())

    def rule_states(self) -> list[dict[str, Any]]:
        return self.engine.rule_states()

    def rule_problems(self) -> list[Problem]:
        last = getattr(self.reloader, "last", None)
        return list(last.problems) if last is not None else []

    def explain(self, labels: Mapping[str, str], now: float) -> dict[str, Any]:
        return self.notifier.explain(labels, now)

    async def last_notification(self, receiver: str, group_key: str) -> dict[str, Any] | None:
        return await self.notifier.last_notification(receiver, group_key)

    async def test_send(self, receiver: str) -> list[Any]:
        return list(await self.notifier.test_send(receiver))

    def observer_stats(self) -> dict[str, int]:
        return self.observer.stats()

    def workers(self) -> list[dict[str, Any]]:
        return self.observer.workers_snapshot()

    def ready(self) -> bool:
        return not self.not_ready()

    def not_ready(self) -> list[str]:
        why = []
        if not self._store_open:
            why.append("store not open")
        elif not self.store.up:
            why.append(self.store.describe())
        if not self.health.connected:
            why.append("broker event stream not connected")
        return why


async def serve(ctx: ApiContext, api: ApiConfig, registry: CollectorRegistry) -> tuple[web.AppRunner, str]:
    """Start the API and the web page on api.listen; the runner and the address bound."""
    from alertd.api.app import make_app
    from alertd.api.listen import ApiSite, ConnectionMetrics

    app = make_app(ctx)
    try:
        from alertd.ui import add_routes
    except ImportError:  # the web page is optional; the API works without it
        pass
    else:
        add_routes(app)
    host, _, port = api.listen.rpartition(":")
    # keepalive_timeout: aiohttp closes a kept-alive connection idle this long (its next head
    # late); ApiSite holds the first head of each connection to the same deadline
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=api.header_timeout)
    await runner.setup()
    site = ApiSite(
        runner,
        host.strip("[]") or "127.0.0.1",
        int(port),
        max_connections=api.max_connections,
        header_timeout=api.header_timeout,
    )
    await site.start()
    registry.register(ConnectionMetrics(site))
    return runner, site.bound()
