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
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from alertd import __version__
from alertd.ack.service import Acknowledgement
from alertd.alert import Alert
from alertd.apiview import ApiView, serve
from alertd.auth import Auth, Logins
from alertd.clock import Clock, WallClock, every
from alertd.config import Config, load_config
from alertd.config.reload import merge_reload
from alertd.evaluation import Evaluation, ReplaySummary, replay
from alertd.metrics import AlertingCollector, DaemonMetrics, EvictionCollector, evictions
from alertd.notify.service import Notifier
from alertd.observe.exposition import ObserverCollector
from alertd.redact import redact_text, redact_url
from alertd.rules.loader import expand_rule_paths, load_rules
from alertd.rules.reload import ReloadResult, RuleReloader
from alertd.silence.silences import Silences
from alertd.sources import EventSource
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


def default_replica(config: Config) -> str:
    """$ALERTD_REPLICA (a pod name, say), else host:API port.

    The identity must survive a restart: a process that dies holding a send claim must recognise
    it as its own when it comes back, or the page waits for the claim to expire (and is lost if
    the alert resolves meanwhile). host:port is stable across restarts and unique on a host, since
    two processes cannot listen on one port; a pid is neither.
    """
    port = config.api.listen.rpartition(":")[2]
    return os.environ.get("ALERTD_REPLICA") or f"{socket.gethostname()}:{port}"


class Daemon(ApiView):
    """One alertd process. `start()` opens everything, `stop()` closes it in reverse order."""

    def __init__(self, config: Config, clock: Clock | None = None, *, replica: str | None = None) -> None:
        self.config = config
        self.clock: Clock = clock or WallClock()
        self.replica = replica or config.ha.replica or default_replica(config)
        self.version = __version__
        self.started_at = self.clock.now()
        # Rules are loaded before anything connects: a daemon with broken rules refuses to start
        # (like Prometheus) rather than running blind. Reloads later keep the old rules instead.
        rules = load_rules(expand_rule_paths(config.rule_files, config.base_dir), max_window=config.observe.retention)
        self.evaluation = Evaluation(
            config,
            rules,
            self.clock,
            store_up=lambda: self.store.up,
            owes_resolved=self._owes_resolved,
            evictions=self.evictions,
            build_budget=BUILD_BUDGET,
        )
        ev = self.evaluation
        self.health, self.series, self.observer, self.engine = ev.health, ev.series, ev.observer, ev.engine
        self.periodic = ev.periodic
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
        self.notifier = Notifier(config, self.store, self.clock, silences=self.silences, replica=self.replica)
        self.acking = Acknowledgement(config, self.silences, self.store, self.clock, self.replica, self.notifier)
        self.registry = CollectorRegistry()
        self.registry.register(ObserverCollector(self.observer, self.series, self.clock, self.health))
        self.registry.register(AlertingCollector(self))
        self.registry.register(EvictionCollector(self))
        self._metrics = DaemonMetrics(self.registry)
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
            await self.acking.open()
            saved = await self.store.get("rule_state", "engine")
            if saved:
                self.engine.import_state(saved)
            observed = await self.store.get("observer", "state")
            if observed:
                self.observer.import_state(observed)
            self.periodic.import_state(await self.store.get("observer", "periodic"))

    async def start(self, *, serve: bool = True, ingest: bool = True) -> None:
        """Open state, connect to the broker, start the API and the evaluation loops."""
        await self.open_state()
        if ingest:
            self._source, self._sampler = self.evaluation.ingest(self.config)
            await self._source.start()
            await self._sampler.start()
        if serve:
            await self._serve()
        self._spawn(*self._loops())
        self._spawn(self.periodic.run())  # reads the beat schedule, off the event loop
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
        """Evaluate due rule groups, hand every current alert to the notifier, flush due groups.

        Groups are flushed here, right after the evaluation, not on a timer of their own: a
        group whose group_wait ends in the second an inhibition source fires (the pack's stream
        alert, 30 s `for` + 30 s group_wait, and the broker's 1 m `for`) is flushed knowing it.
        Alertmanager cannot do this - its alerts come from outside; alertd evaluates its own.
        """
        now = self.clock.now()
        started = time.perf_counter()
        changed = self.engine.tick(now)
        self.notifier.put(await self.acking.tick(self.engine.alerts()))  # resolved alerts end their acks first
        await self.notifier.flush_due(wait=False)  # sends run on; the tick does not wait for them
        self._metrics.tick_seconds.set(time.perf_counter() - started)
        if changed or now - self._last_persist >= PERSIST_SECONDS:
            await self._persist()
        return changed

    # Each loop survives its job's failures; what a failure means differs, so each says so.

    def _tick_failed(self, e: Exception) -> None:
        # an evaluation bug must not kill the daemon; it is logged and counted
        log.error("rule evaluation failed", exc_info=e)
        self._metrics.tick_errors.inc()

    async def _reload_if_changed(self) -> None:
        if self.reloader.changed_on_disk():
            await self.reload()

    async def _purge(self) -> None:
        n = await self.store.purge(self.clock.now())
        if n:
            log.info("purged %d expired store entries", n)

    def _loops(self) -> list[Coroutine[Any, Any, None]]:
        c = self.clock
        return [
            every(c, TICK_SECONDS, self.tick, on_error=self._tick_failed),
            every(c, SILENCE_REFRESH_SECONDS, self.silences.refresh, on_error=_silences_failed),
            every(
                c,
                RELOAD_POLL_SECONDS,
                self._reload_if_changed,
                on_error=lambda e: log.error("rule file poll failed", exc_info=e),
                wait_first=True,
            ),
            every(c, PURGE_SECONDS, self._purge, on_error=_purge_failed, wait_first=True),
        ]

    async def _persist(self) -> None:
        if not self._store_open:
            return
        self._last_persist = self.clock.now()
        try:
            await self.store.put("rule_state", "engine", self.engine.export_state())
            await self.store.put("observer", "state", self.observer.export_state())
            await self.store.put("observer", "periodic", self.periodic.export_state())
        except Exception as e:
            log.warning("saving state failed (will retry): %s", e)

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
            effective, later = merge_reload(self.config, load_config(self.config.source))
            self.notifier.reload(effective)
            self.auth = _make_auth(effective)
        except FileError as e:
            return list(e.problems)
        except (ValueError, OSError) as e:  # a receiver URL Apprise refuses, an unreadable tokens file
            return [Problem(self.config.source, None, "", redact_text(str(e)))]
        self.config = self.acking.config = effective
        log.info("configuration reloaded from %s", self.config.source)
        if later:
            log.warning("%s: changed %s: these take effect after a restart", self.config.source, ", ".join(later))
        return []

    def _owes_resolved(self, fingerprint: str, ends_at: float | None) -> bool:
        return self.notifier.owes_resolved(fingerprint, ends_at)

    def evictions(self) -> dict[str, int]:
        """Entries evicted from each bounded map since start (alertd.metrics.evictions)."""
        return evictions(self.observer, self._sampler, self.logins, self.store)

    async def _serve(self) -> None:
        self._runner, self.listen_address = await serve(self, self.config.api, self.registry)
        log.info("API and web page on http://%s/", self.listen_address)

    # -- replay ----------------------------------------------------------------------------

    async def replay(self, path: Path, *, tail: float = 0.0) -> ReplaySummary:
        """Feed a capture through the pipeline on virtual time, ticking as a live daemon would."""
        return await replay(self.evaluation, path, self.tick, step=TICK_SECONDS, tail=tail)


def _silences_failed(e: Exception) -> None:
    if not isinstance(e, StoreUnavailable):  # the store logged its outage once; known silences apply
        log.warning("silences refresh failed: %s", e)


def _purge_failed(e: Exception) -> None:
    if not isinstance(e, StoreUnavailable):  # purged at the next round once the store is back
        log.warning("store purge failed: %s", e)


def _make_auth(config: Config) -> Auth:
    api = config.api
    return Auth.from_files(
        config.path(api.tokens_file) if api.tokens_file else None,
        config.path(api.basic_auth_file) if api.basic_auth_file else None,
    )
