"""/metrics: what alertd sees, in the Prometheus exposition format.

Task and worker metrics use celery-exporter's names and labels (celery_task_sent_total{name,
hostname, queue_name}, celery_worker_up{hostname}, celery_queue_length{queue_name}, ...) so the
Grafana dashboards people already have keep working when alertd replaces the exporter. alertd's
own health (ingest, stream, tables) is under alertd_*.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from alertd.catalogue import CATALOGUE
from alertd.clock import Clock
from alertd.observe.observer import Observer
from alertd.observe.series import SeriesStore
from alertd.sources.health import StreamHealth

# celery-exporter's buckets (prometheus_client's defaults) plus 30 s, 1 m and 5 m: Celery tasks run
# for minutes far more often than web requests do.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0, 300.0)
# "orphaned" is alertd's own: started or reserved by a worker that was lost, shut down or restarted.
TASK_STATES = ("sent", "received", "started", "succeeded", "failed", "retried", "rejected", "revoked", "orphaned")


class ObserverCollector(Collector):
    """Reads the observer, the series store and stream health at scrape time."""

    def __init__(self, observer: Observer, series: SeriesStore, clock: Clock, health: StreamHealth | None) -> None:
        self.observer = observer
        self.series = series
        self.clock = clock
        self.health = health

    def collect(self) -> Iterator[Metric]:
        """Called by prometheus_client on each scrape."""
        # Gauges first: reading them judges lost workers, whose tasks are then counted as orphaned.
        g = self.observer.gauges(self.clock.now())
        yield from self._task_counters()
        yield from self._histograms()
        yield from self._gauges(g)
        yield from self._own_health()

    def _task_counters(self) -> Iterator[Metric]:
        for state in TASK_STATES:
            with_exc = state in ("failed", "retried")
            labels = ["name", "hostname", "queue_name"] + (["exception"] if with_exc else [])
            doc = CATALOGUE[f"tasks_{state}"].help
            fam = CounterMetricFamily(f"celery_task_{state}", doc, labels=labels)
            merged: dict[tuple[str, ...], float] = {}
            for (task, queue, worker, *rest), v in self.series.totals(f"tasks_{state}").items():
                key = (task, worker, queue, *rest[:1]) if with_exc else (task, worker, queue)
                merged[key] = merged.get(key, 0.0) + v
            for key, v in merged.items():
                fam.add_metric(list(key), v)
            yield fam

    def _histograms(self) -> Iterator[Metric]:
        for metric, name, doc in (
            ("task_runtime_seconds", "celery_task_runtime", "Task runtime in seconds."),
            ("task_queue_wait_seconds", "celery_task_queue_wait_seconds", "Time from sent (or ETA) to started."),
        ):
            fam = HistogramMetricFamily(name, doc, labels=["name", "hostname", "queue_name"])
            for (task, queue, worker), d in self.series.cumulative(metric).items():
                buckets = [(str(b), float(d.count_at_most(b))) for b in BUCKETS]
                buckets.append(("+Inf", float(d.count)))
                fam.add_metric([task, worker, queue], buckets, d.sum)
            yield fam

    def _gauges(self, g: dict[str, dict[tuple[str, ...], float]]) -> Iterator[Metric]:
        up = GaugeMetricFamily("celery_worker_up", "1 while the worker heartbeats.", labels=["hostname"])
        for (w,), v in g["worker_up"].items():
            up.add_metric([w], v)
        yield up
        active = GaugeMetricFamily("celery_worker_tasks_active", "Tasks executing now.", labels=["hostname"])
        for (w,), v in g["worker_active_tasks"].items():
            active.add_metric([w], v)
        yield active
        length = GaugeMetricFamily("celery_queue_length", "Messages waiting in the queue.", labels=["queue_name"])
        for (q,), v in g["queue_length"].items():
            length.add_metric([q], v)
        yield length
        consumers = GaugeMetricFamily(
            "celery_active_consumer_count", "Consumers attached to the queue.", labels=["queue_name"]
        )
        for (q,), v in g["queue_consumers"].items():
            consumers.add_metric([q], v)
        yield consumers
        workers = GaugeMetricFamily("celery_active_worker_count", "Workers consuming the queue.", labels=["queue_name"])
        processes = GaugeMetricFamily(
            "celery_active_process_count", "Pool processes of the workers consuming the queue.", labels=["queue_name"]
        )
        per_queue: dict[str, list[float]] = {}
        for info in self.observer.workers_snapshot():
            if info["state"] != "online":
                continue
            for q in info["queues"]:
                acc = per_queue.setdefault(q, [0.0, 0.0])
                acc[0] += 1
                acc[1] += info["pool_size"] or 0
        for q, (nw, np) in per_queue.items():
            workers.add_metric([q], nw)
            processes.add_metric([q], np)
        yield workers
        yield processes
        for name, doc in (
            ("worker_memory_bytes", "Max RSS of the worker's main process (inspect stats)."),
            ("worker_cpu_ratio", "CPU seconds per second of the worker's main process."),
            ("worker_pool_size", "Pool size (max concurrency)."),
            ("task_oldest_started_seconds", "Age of the oldest running task."),
            ("task_oldest_reserved_seconds", "Age of the oldest task received and not started."),
            ("task_waiting_oldest_seconds", "Wait so far of the oldest task sent (or received) and not started."),
            ("task_waiting_p95_seconds", "95th percentile wait so far of tasks sent (or received) and not started."),
            ("queue_waiting_oldest_seconds", "Wait so far of the queue's oldest task sent and not started."),
            ("queue_waiting_p95_seconds", "95th percentile wait so far of the queue's tasks sent and not started."),
            ("queue_latency_p95_seconds", "95th percentile wait of tasks still waiting or started in the last minute."),
        ):
            if name.startswith("worker_"):
                labels = ["hostname"]
            elif name.startswith("queue_"):
                labels = ["queue_name"]
            else:
                labels = ["name", "queue_name"]
            fam = GaugeMetricFamily(f"alertd_celery_{name}", doc, labels=labels)
            for key, v in g[name].items():
                fam.add_metric(list(key), v)
            yield fam
        yield GaugeMetricFamily(
            "celery_workers_online", "Workers with a recent heartbeat.", value=g["workers_online"][()]
        )

    def _own_health(self) -> Iterator[Metric]:
        stats = self.observer.stats()
        h = self.health
        yield CounterMetricFamily(
            "alertd_events", "Events decoded from the broker.", value=h.events if h else stats["events"]
        )
        yield CounterMetricFamily(
            "alertd_events_malformed",
            "Messages or events skipped because they could not be decoded.",
            value=(h.malformed if h else 0) + stats["malformed"],
        )
        yield CounterMetricFamily(
            "alertd_events_duplicate", "Duplicate final task events dropped.", value=stats["duplicates"]
        )
        if h is not None:
            yield GaugeMetricFamily(
                "alertd_stream_connected", "1 while connected to the event stream.", value=float(h.connected)
            )
            yield CounterMetricFamily(
                "alertd_stream_reconnects", "Reconnections to the event stream.", value=h.reconnects
            )
            if h.decoder:
                yield GaugeMetricFamily(
                    "alertd_stream_decoder_process",
                    "1 while a child process decodes the event stream (Redis), 0 when alertd itself does.",
                    value=float(h.decoder == "process"),
                )
            if h.last_event_at is not None:
                yield GaugeMetricFamily(
                    "alertd_last_event_timestamp_seconds", "When the newest event arrived.", value=h.last_event_at
                )
        yield GaugeMetricFamily(
            "alertd_tasks_tracked", "Tasks in flight in the task table.", value=stats["tasks_tracked"]
        )
        yield CounterMetricFamily(
            "alertd_tasks_evicted", "Tasks dropped from a full task table.", value=stats["tasks_evicted"]
        )
        yield CounterMetricFamily(
            "alertd_tasks_redelivered",
            "Orphaned tasks received again (acks_late, or reserved ones handed back).",
            value=stats["tasks_redelivered"],
        )
        yield CounterMetricFamily(
            "alertd_tasks_reordered",
            "Tasks whose worker events came before their task-sent, applied in order once it came.",
            value=stats["tasks_reordered"],
        )
        yield GaugeMetricFamily(
            "alertd_tasks_held", "Tasks whose worker events wait for their task-sent.", value=stats["tasks_held"]
        )
        yield CounterMetricFamily(
            "alertd_workers_lost", "Worker processes lost without a goodbye.", value=stats["workers_lost"]
        )
        yield GaugeMetricFamily(
            "alertd_workers_tracked", "Workers in the worker table.", value=stats["workers_tracked"]
        )
        yield CounterMetricFamily(
            "alertd_workers_evicted", "Workers dropped from a full worker table.", value=stats["workers_evicted"]
        )
        dropped = CounterMetricFamily(
            "alertd_series_dropped", "Observations refused because a metric hit max_series.", labels=["metric"]
        )
        for metric, n in self.series.dropped().items():
            dropped.add_metric([metric], n)
        yield dropped
