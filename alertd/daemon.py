"""The daemon: wires sources → observer → rules engine → notifier, the store, and the API.

Each package does one job and knows nothing of the others; this module is the only place that
knows them all. It also satisfies the API's context (alertd.api.context.ApiContext), so the HTTP
layer reads live state without holding references to every component itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from alertd import __version__
from alertd.alert import Alert
from alertd.auth import Auth, Logins
from alertd.clock import Clock, VirtualClock, WallClock
from alertd.config import Config, load_config
from alertd.notify.service import AlertGroup, AlertStatus, Notifier
from alertd.observe.exposition import ObserverCollector
from alertd.observe.observer import Observer
from alertd.observe.series import SeriesStore
from alertd.redact import redact_text, redact_url
from alertd.rules.engine import Engine
from alertd.rules.loader import expand_rule_paths, load_rules
from alertd.rules.reload import ReloadResult, RuleReloader
from alertd.samples import BrokerSample, QueueSample, WorkerSample
from alertd.silence.silences import Silences
from alertd.sources import EventSource, open_event_source
from alertd.sources.health import StreamHealth
from alertd.sources.jsonl import event_time, read_capture
from alertd.sources.sampler import Sampler
from alertd.store.base import StoreUnavailable
from alertd.store.buffered import BufferedStore
from alertd.store.open import open_store
from alertd.yamlfile import FileError, Problem

log = logging.getLogger("alertd")

TICK_SECONDS = 1.0  # how often due rule groups are evaluated and alerts handed to the notifier
# Of each tick, for building the windows of rules loaded while the store is full (a reload):
# at most this much of the event loop per second until they are built, however long their windows.
BUILD_BUDGET = 0.02
PERSIST_SECONDS = 10.0  # rule and observer state snapshot cadence (also on every alert transition)
RELOAD_POLL_SECONDS = 5.0  # rule files are polled for changes (no inotify dependency)
SILENCE_REFRESH_SECONDS = 1.0  # replicas see each other's silences within this
PURGE_SECONDS = 600.0


@dataclass
class ReplaySummary:
    events: int = 0
    malformed: int = 0
    transitions: list[Alert] = field(default_factory=list)


def default_replica(config: Config) -> str:
    """$ALERTD_REPLICA (a pod name, say), else host:API port.

    The identity must survive a restart: a process that dies holding a send claim must recognise
    it as its own when it comes back, or the page waits for the claim to expire (and is lost if
    the alert resolves meanwhile). host:port is stable across restarts and unique on a host, since
    two processes cannot listen on one port; a pid is neither.
    """
    port = config.api.listen.rpartition(":")[2]
    return os.environ.get("ALERTD_REPLICA") or f"{socket.gethostname()}:{port}"


class Daemon:
    """One alertd process. `start()` opens everything, `stop()` closes it in reverse order."""

    def __init__(self, config: Config, clock: Clock | None = None, *, replica: str | None = None) -> None:
        self.config = config
        self.clock: Clock = clock or WallClock()
        self.replica = replica or config.ha.replica or default_replica(config)
        self.version = __version__
        self.started_at = self.clock.now()
        self.health = StreamHealth(broker=redact_url(config.broker))
        self.series = SeriesStore(
            bucket_seconds=config.observe.bucket,
            retention_seconds=config.observe.retention,
            max_series=config.observe.max_series,
        )
        self.observer = Observer(
            self.series,
            self.clock,
            max_tasks=config.observe.max_tasks,
            max_workers=config.observe.max_workers,
            worker_lost_after=config.observe.worker_lost_after,
            heartbeat_misses=config.observe.heartbeat_misses,
            restart_grace=config.observe.restart_grace,
            recent_starts=config.observe.recent_starts,
            max_clock_skew=config.observe.max_clock_skew,
            health=self.health,
            max_task_names=config.observe.max_task_names,
            max_orphans=config.observe.max_orphans,
            max_senders=config.observe.max_senders,
            max_queues=config.sampler.max_queues,
        )
        for task in config.observe.expect_tasks:
            self.observer.expect_task(task)
        # Rules are loaded before anything connects: a daemon with broken rules refuses to start
        # (like Prometheus) rather than running blind. Reloads later keep the old rules instead.
        rules = load_rules(expand_rule_paths(config.rule_files, config.base_dir), max_window=config.observe.retention)
        self.engine = Engine(
            rules,
            self.series,
            self.clock,
            gauges=self._gauges,
            watch=self.observer.watch,
            expect_task=self.observer.expect_task,
            max_event_keys=config.observe.max_event_keys,
            details=self.observer.details,
            build_budget=BUILD_BUDGET,
            max_resolved=config.observe.max_resolved_alerts,
            owes_resolved=self._owes_resolved,
            evictions=self.evictions,
        )
        self.reloader = RuleReloader(
            config.rule_files, config.base_dir, self.engine, self.clock, max_window=config.observe.retention
        )
        # Fail-open in front of the backend: a store outage delays bookkeeping, never a page.
        self.store = BufferedStore(open_store(config.store, config.base_dir), self.clock, url=config.store)
        self.silences = Silences(
            self.store,
            self.clock,
            retention=config.silences.retention,
            max_silences=config.silences.max_silences,
            max_silence_bytes=config.silences.max_silence_bytes,
        )
        self.notifier = self._make_notifier(config)
        self.registry = CollectorRegistry()
        self.registry.register(ObserverCollector(self.observer, self.series, self.clock, self.health))
        self.registry.register(_AlertingCollector(self))
        self.registry.register(_EvictionCollector(self))
        self._metrics = _DaemonMetrics(self.registry)
        self.auth = _make_auth(config)
        self._store_open = False
        self._tasks: list[asyncio.Task[None]] = []
        self._source: EventSource | None = None
        self._sampler: Sampler | None = None
        self.logins: Logins | None = None  # the API server's, once it serves (alertd.api.app)
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self._last_persist = 0.0
        self.listen_address = ""

    def _make_notifier(self, config: Config) -> Notifier:
        return Notifier(config, self.store, self.clock, silences=self.silences, replica=self.replica)

    # -- lifecycle -------------------------------------------------------------------------

    async def open_state(self) -> None:
        """Open the store and restore what must survive a restart (alert state, silences, nflog)."""
        await self.store.open()
        self._store_open = True
        if not self.store.up:
            # Started during a store outage: evaluate from scratch and page (at-least-once). The
            # saved state is not loaded later either - it is older than what runs by then, and
            # this process's own state replaces it. Silences load once the store answers (the
            # silence loop notices the version change); until then nothing is silenced.
            log.error("started without the saved state (%s): silences apply once it is back", self.store.describe())
        else:
            await self.silences.load()
            saved = await self.store.get("rule_state", "engine")
            if saved:
                self.engine.import_state(saved)
            observed = await self.store.get("observer", "state")
            if observed:
                self.observer.import_state(observed)
        await self.notifier.start()

    async def start(self, *, serve: bool = True, ingest: bool = True) -> None:
        """Open state, connect to the broker, start the API and the evaluation loops."""
        await self.open_state()
        if ingest:
            self._source = open_event_source(
                self.config.broker,
                self.observer.on_events,
                self.clock,
                self.health,
                transport_options=self.config.broker_transport_options or None,
                durable_queue=self.config.events.durable_queue,
                durable_queue_ttl=self.config.events.durable_queue_ttl,
                reconnect_max=self.config.events.reconnect_max,
                transport=self.config.events.transport,
                exchange=self.config.events.exchange,
                queue_ttl=self.config.events.queue_ttl,
                queue_expires=self.config.events.queue_expires,
            )
            await self._source.start()
            self._sampler = Sampler(
                self.config.broker,
                self.clock,
                on_queue=self._on_queue,
                on_worker=self._on_worker,
                on_broker=self._on_broker,
                queues=list(self.config.sampler.queues),
                interval=self.config.sampler.interval,
                inspect=self.config.sampler.inspect,
                inspect_timeout=self.config.sampler.inspect_timeout,
                transport_options=self.config.broker_transport_options or None,
                max_queues=self.config.sampler.max_queues,
            )
            await self._sampler.start()
        if serve:
            await self._serve()
        self._spawn(self._tick_loop(), self._silence_loop(), self._reload_loop(), self._purge_loop())
        log.info(
            "alertd %s started: broker %s, store %s, %d rules, replica %s",
            self.version,
            self.health.broker,
            redact_url(self.config.store),
            sum(1 for _ in self.engine.rule_states()),
            self.replica,
        )

    async def stop(self) -> None:
        """Stop ingest first, then evaluation, then flush state and close the store."""
        self._stopping.set()
        if self._sampler is not None:
            await self._sampler.stop()
        if self._source is not None:
            await self._source.stop()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.notifier.stop()
        if self._store_open:
            await self._persist()
            await self.store.close()
            self._store_open = False

    async def run_until_signalled(self) -> None:
        """Run until SIGTERM/SIGINT; SIGHUP reloads rules, routing, receivers and tokens."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stopping.set)
        loop.add_signal_handler(signal.SIGINT, self._stopping.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        await self._stopping.wait()

    def _spawn(self, *coros: Any) -> None:
        for c in coros:
            self._tasks.append(asyncio.create_task(c))

    # -- loops -----------------------------------------------------------------------------

    async def tick(self) -> list[Alert]:
        """Evaluate due rule groups and hand every current alert to the notifier."""
        now = self.clock.now()
        started = time.perf_counter()
        changed = self.engine.tick(now)
        self.notifier.put(self.engine.alerts())
        self._metrics.tick_seconds.set(time.perf_counter() - started)
        if changed or now - self._last_persist >= PERSIST_SECONDS:
            await self._persist()
        return changed

    async def _tick_loop(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # an evaluation bug must not kill the daemon; it is logged and counted
                log.exception("rule evaluation failed")
                self._metrics.tick_errors.inc()
            await self.clock.sleep(TICK_SECONDS)

    async def _silence_loop(self) -> None:
        while True:
            try:
                await self.silences.refresh()
            except StoreUnavailable:
                pass  # the store logged its outage once; silences known before it keep applying
            except Exception as e:
                log.warning("silences refresh failed: %s", e)
            await self.clock.sleep(SILENCE_REFRESH_SECONDS)

    async def _reload_loop(self) -> None:
        while True:
            await self.clock.sleep(RELOAD_POLL_SECONDS)
            try:
                if self.reloader.changed_on_disk():
                    await self.reload()
            except Exception:
                log.exception("rule file poll failed")

    async def _purge_loop(self) -> None:
        while True:
            await self.clock.sleep(PURGE_SECONDS)
            try:
                n = await self.store.purge(self.clock.now())
                if n:
                    log.info("purged %d expired store entries", n)
            except StoreUnavailable:
                pass  # purged at the next round once the store is back
            except Exception as e:
                log.warning("store purge failed: %s", e)

    async def _persist(self) -> None:
        if not self._store_open:
            return
        self._last_persist = self.clock.now()
        try:
            await self.store.put("rule_state", "engine", self.engine.export_state())
            await self.store.put("observer", "state", self.observer.export_state())
        except Exception as e:
            log.warning("saving state failed (will retry): %s", e)

    # -- samples ---------------------------------------------------------------------------

    def _on_queue(self, s: QueueSample) -> None:
        self.observer.on_queue_sample(s)

    def _on_worker(self, s: WorkerSample) -> None:
        self.observer.on_worker_sample(s)

    def _on_broker(self, s: BrokerSample) -> None:
        self.observer.on_broker_sample(s)

    # -- reload ----------------------------------------------------------------------------

    async def reload(self) -> ReloadResult:
        """Reload alertd.yaml's routing, receivers and tokens, then the rule files.

        Anything invalid keeps what was running and reports the problems (log, /metrics, API).
        Broker, store and listen address are read at start only: changing them needs a restart.
        """
        problems = self._reload_config()
        result = self.reloader.reload()
        if problems:
            result = ReloadResult(
                ok=False, problems=problems + result.problems, rules=result.rules, changed=result.changed, at=result.at
            )
            self.reloader.last = result
        self._metrics.reloads.labels("ok" if result.ok else "error").inc()
        self._metrics.reload_ok.set(1 if result.ok else 0)
        if result.ok:
            log.info("rules reloaded: %d rules, %d changed", result.rules, result.changed)
        else:
            for p in result.problems:
                log.error("rules not reloaded: %s", p)
        return result

    def _reload_config(self) -> list[Problem]:
        if self.config.source == "<defaults>":
            return []
        try:
            fresh = load_config(self.config.source)
            notifier_config = fresh.model_copy(update={"store": self.config.store, "broker": self.config.broker})
            self.notifier.reload(notifier_config)
            self.auth = _make_auth(fresh)
        except FileError as e:
            return list(e.problems)
        except (ValueError, OSError) as e:  # a receiver URL Apprise refuses, an unreadable tokens file
            return [Problem(self.config.source, None, "", redact_text(str(e)))]
        self.config = fresh.model_copy(
            update={
                "api": self.config.api.model_copy(
                    update={"tokens_file": fresh.api.tokens_file, "basic_auth_file": fresh.api.basic_auth_file}
                )
            }
        )
        log.info("configuration reloaded from %s", self.config.source)
        return []

    # -- the API's view of the daemon --------------------------------------------------------

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

    def _owes_resolved(self, fingerprint: str, ends_at: float | None) -> bool:
        return self.notifier.owes_resolved(fingerprint, ends_at)

    def evictions(self) -> dict[str, int]:
        """Entries evicted from each bounded map since start (alertd.evictions; the engine adds
        its resolved alerts): /metrics exports them, AlertdKeysEvicted{map} says when they move."""
        stats = self.observer.stats()
        return {
            "tasks": stats["tasks_evicted"],
            "workers": stats["workers_evicted"],
            "task_names": stats["task_names_evicted"],
            "orphans": stats["orphans_evicted"],
            "senders": stats["senders_evicted"],
            "queues": stats["queues_evicted"] + (self._sampler.queues_skipped if self._sampler is not None else 0),
            "login_clients": self.logins.clients_evicted if self.logins is not None else 0,
        }

    def _gauges(self, now: float) -> dict[str, Mapping[tuple[str, ...], float]]:
        """The observer's gauges plus the daemon's own, for the rules engine."""
        gauges: dict[str, Mapping[tuple[str, ...], float]] = dict(self.observer.gauges(now))
        gauges["store_up"] = {(): 1.0 if self.store.up else 0.0}
        return gauges

    # -- HTTP ------------------------------------------------------------------------------

    async def _serve(self) -> None:
        from alertd.api.app import make_app
        from alertd.api.listen import ApiSite, ConnectionMetrics

        app = make_app(self)
        try:
            from alertd.ui import add_routes
        except ImportError:  # the web page is optional; the API works without it
            pass
        else:
            add_routes(app)
        host, _, port = self.config.api.listen.rpartition(":")
        api = self.config.api
        # keepalive_timeout: aiohttp closes a kept-alive connection idle this long (its next head
        # late); ApiSite holds the first head of each connection to the same deadline
        self._runner = web.AppRunner(app, access_log=None, keepalive_timeout=api.header_timeout)
        await self._runner.setup()
        site = ApiSite(
            self._runner,
            host.strip("[]") or "127.0.0.1",
            int(port),
            max_connections=api.max_connections,
            header_timeout=api.header_timeout,
        )
        await site.start()
        self.registry.register(ConnectionMetrics(site))
        server = site._server
        sockets = [sock.getsockname() for sock in getattr(server, "sockets", None) or []]
        bound = sockets[0] if sockets else (host, port)
        self.listen_address = f"{bound[0]}:{bound[1]}"
        log.info("API and web page on http://%s/", self.listen_address)

    # -- replay ----------------------------------------------------------------------------

    async def replay(self, path: Path, *, tail: float = 0.0) -> ReplaySummary:
        """Feed a capture through the pipeline on virtual time, ticking as a live daemon would.

        The clock must be a VirtualClock: rule windows, `for` and group timers then behave as
        they did when the events were recorded, in a fraction of the time.
        """
        if not isinstance(self.clock, VirtualClock):
            raise TypeError("replay needs a VirtualClock")
        clock = self.clock
        summary = ReplaySummary()
        self.health.transport = "replay"
        next_tick: float | None = None
        for lineno, event in read_capture(path):
            at = event_time(event) if event is not None else None
            if event is None or at is None:
                summary.malformed += 1
                self.health.malformed += 1
                log.warning("%s:%d: not a captured event, skipped", path, lineno)
                continue
            if next_tick is None:
                next_tick = max(at, clock.now())
                clock.set(next_tick)
                self.health.mark_connected(next_tick)
            while next_tick <= at:
                clock.set(next_tick)
                summary.transitions.extend(await self.tick())
                await asyncio.sleep(0)  # let group timers woken by the clock run
                next_tick += TICK_SECONDS
            if at > clock.now():
                clock.set(at)
            self.observer.on_events([event])
            self.health.events += 1
            self.health.last_event_at = at
            summary.events += 1
        end = (next_tick or clock.now()) + tail
        while next_tick is not None and next_tick <= end:
            clock.set(next_tick)
            summary.transitions.extend(await self.tick())
            await asyncio.sleep(0)
            next_tick += TICK_SECONDS
        return summary


class _DaemonMetrics:
    """alertd's own process metrics that no single package owns."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.tick_seconds = Gauge(
            "alertd_rule_tick_seconds", "Wall time of the last rule evaluation tick.", registry=registry
        )
        self.tick_errors = Counter("alertd_rule_tick_errors", "Rule evaluation ticks that raised.", registry=registry)
        self.reloads = Counter("alertd_rule_reloads", "Rule reloads by outcome.", ["outcome"], registry=registry)
        self.reload_ok = Gauge(
            "alertd_rule_config_last_reload_successful", "1 if the last rule reload succeeded.", registry=registry
        )
        self.reload_ok.set(1)


class _AlertingCollector(Collector):
    """Alerts, notifications and silences, read at scrape time."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[Metric]:
        d = self.daemon
        now = d.clock.now()
        alerts = GaugeMetricFamily("alertd_alerts", "Alerts by state.", labels=["state"])
        counts = {"pending": 0, "firing": 0, "resolved": 0}
        for a in d.engine.alerts():
            counts[a.state.value] += 1
        for state, n in counts.items():
            alerts.add_metric([state], n)
        yield alerts
        yield CounterMetricFamily(
            "alertd_notifications_sent", "Notifications delivered (fallbacks included).", value=d.notifier.sent_total
        )
        yield CounterMetricFamily(
            "alertd_notifications_failed", "Notifications that failed every retry.", value=d.notifier.failed_total
        )
        yield CounterMetricFamily(
            "alertd_notifications_fallback",
            "Notifications delivered by a receiver's fallback after the receiver failed every retry.",
            value=d.notifier.fallback_total,
        )
        yield CounterMetricFamily(
            "alertd_notifications_possible_duplicates",
            "Notifications re-sent after an attempt that may have reached the receiver (a crash or timeout mid-send).",
            value=d.notifier.possible_duplicates_total,
        )
        active = sum(1 for s in d.silences.query(include_expired=False) if s.state(now).value == "active")
        yield GaugeMetricFamily("alertd_silences_active", "Active silences.", value=active)
        yield GaugeMetricFamily("alertd_rules", "Rules loaded.", value=len(d.engine.runtimes))
        evicted = CounterMetricFamily(
            "alertd_rule_event_keys_evicted",
            "Event-rule `by` keys evicted at observe.max_event_keys, least recently matched first.",
            labels=["rule"],
        )
        for rt in d.engine.runtimes.values():
            if rt.rule.kind == "event":
                evicted.add_metric([rt.rule.name], rt.event_keys_evicted)
        yield evicted
        store = d.store
        yield GaugeMetricFamily("alertd_store_up", "1 while the state store answers.", value=1 if store.up else 0)
        yield CounterMetricFamily(
            "alertd_store_outages", "Times the state store became unreachable.", value=store.outages_total
        )
        yield GaugeMetricFamily(
            "alertd_store_buffered_writes", "Writes kept locally until the store is back.", value=store.buffered
        )
        yield CounterMetricFamily(
            "alertd_store_replayed_writes",
            "Buffered writes written back after an outage.",
            value=store.writes_replayed_total,
        )
        yield CounterMetricFamily(
            "alertd_store_dropped_writes",
            "Buffered writes given up because the buffer was full.",
            value=store.writes_dropped_total,
        )
        yield CounterMetricFamily(
            "alertd_ha_claims_failed_open",
            "Send claims granted without the store (replicas may both send).",
            value=store.claims_failed_open_total,
        )


class _EvictionCollector(Collector):
    """alertd_<map>_evicted_total for the bounded maps whose table has no metric of its own."""

    HELP = {
        "task_names": "Task names whose last success was forgotten at observe.max_task_names.",
        "orphans": "Orphaned tasks (of lost or stopped workers) forgotten at observe.max_orphans.",
        "senders": "Producer and worker clock offsets forgotten at observe.max_senders.",
        "queues": "Queue names left unsampled or forgotten at sampler.max_queues.",
        "login_clients": "Client addresses whose failed logins were forgotten at api.max_login_clients.",
    }

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[Metric]:
        counts = self.daemon.evictions()
        for name, doc in self.HELP.items():
            yield CounterMetricFamily(f"alertd_{name}_evicted", doc, value=counts[name])
        yield CounterMetricFamily(
            "alertd_resolved_alerts_evicted",
            "Resolved alerts already notified dropped before their retention at observe.max_resolved_alerts.",
            value=self.daemon.engine.resolved_evicted,
        )


def _make_auth(config: Config) -> Auth:
    api = config.api
    return Auth.from_files(
        config.path(api.tokens_file) if api.tokens_file else None,
        config.path(api.basic_auth_file) if api.basic_auth_file else None,
    )
