"""alertd's own metrics that no single package owns: rule ticks and reloads, alerts,
notifications, silences, the store, evictions. Read from the daemon at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from alertd.auth import Logins
from alertd.clock import Clock
from alertd.notify.service import Notifier
from alertd.observe.observer import Observer
from alertd.rules.engine import Engine
from alertd.silence.silences import Silences
from alertd.sources.sampler import Sampler
from alertd.store.buffered import BufferedStore


def evictions(
    observer: Observer, sampler: Sampler | None, logins: Logins | None, store: BufferedStore
) -> dict[str, int]:
    """Entries evicted from each bounded map since start (alertd.evictions; the engine adds
    its resolved alerts): /metrics exports them, AlertdKeysEvicted{map} says when they move."""
    stats = observer.stats()
    return {
        "tasks": stats["tasks_evicted"],
        "workers": stats["workers_evicted"],
        "task_names": stats["task_names_evicted"],
        "orphans": stats["orphans_evicted"],
        "senders": stats["senders_evicted"],
        "queues": stats["queues_evicted"] + (sampler.queues_skipped if sampler is not None else 0),
        "login_clients": logins.clients_evicted if logins is not None else 0,
        "history": int(getattr(store.backend, "history_evicted", 0)),
    }


class Measured(Protocol):
    """What the collectors read of the daemon."""

    clock: Clock
    engine: Engine
    notifier: Notifier
    silences: Silences
    store: BufferedStore

    def evictions(self) -> dict[str, int]: ...


class DaemonMetrics:
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


class AlertingCollector(Collector):
    """Alerts, notifications and silences, read at scrape time."""

    def __init__(self, daemon: Measured) -> None:
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


class EvictionCollector(Collector):
    """alertd_<map>_evicted_total for the bounded maps whose table has no metric of its own."""

    HELP = {
        "task_names": "Task names whose last success was forgotten at observe.max_task_names.",
        "orphans": "Orphaned tasks (of lost or stopped workers) forgotten at observe.max_orphans.",
        "senders": "Producer and worker clock offsets forgotten at observe.max_senders.",
        "queues": "Queue names left unsampled or forgotten at sampler.max_queues.",
        "login_clients": "Client addresses whose failed logins were forgotten at api.max_login_clients.",
        "history": "Notification history entries dropped past 100000, oldest first (besides the 30-day retention).",
    }

    def __init__(self, daemon: Measured) -> None:
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
