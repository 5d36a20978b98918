"""The metric catalogue: every name a rule may use in `metric:`, its kind and its labels.

The observer writes counters and distributions into the series store with label *values* as a
tuple in the order given here (tuples hash fast on the hot path); gauges are read from state at
evaluation time. Rules, the loader's error messages and the docs all read this one table.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    COUNTER = "counter"  # events counted per time bucket; a rule sums them over its window
    RATIO = "ratio"  # numerator / denominator counters over the window (min_events on the denominator)
    DISTRIBUTION = "distribution"  # observed values; a rule picks avg, max, min, count, p50..p99 over the window
    GAUGE = "gauge"  # a current value read from state at evaluation time


TASK_LABELS = ("task", "queue", "worker")


@dataclass(frozen=True)
class Metric:
    name: str
    kind: Kind
    labels: tuple[str, ...]
    help: str
    unit: str = ""  # "seconds", "bytes", "ratio" or "" — picks the humanizing filter in templates
    numerator: str = ""  # ratios only
    denominator: tuple[str, ...] = ()  # ratios only: counters summed


def _counter(state: str, extra: tuple[str, ...] = ()) -> Metric:
    return Metric(f"tasks_{state}", Kind.COUNTER, TASK_LABELS + extra, f"Tasks {state} (task-{state} events).")


ENTRY_LABELS = ("entry", "task", "queue")  # a periodic entry: its beat_schedule name, task and queue
# Gauges of alertd.periodic (docs/periodic.md): one value per enabled entry of the beat schedule.
PERIODIC = [
    Metric(
        "periodic_missed_seconds",
        Kind.GAUGE,
        ENTRY_LABELS,
        "Seconds past the entry's expected run with no send of it seen (0 while on time); the rule's threshold "
        "is the grace.",
        "seconds",
    ),
    Metric(
        "periodic_late_start_seconds",
        Kind.GAUGE,
        ENTRY_LABELS,
        "Of the entry's last run: seconds from beat's send to the start on a worker (so far, while not started).",
        "seconds",
    ),
    Metric(
        "periodic_failed", Kind.GAUGE, ENTRY_LABELS, "1 while the entry's last finished run failed (after retries)."
    ),
    Metric(
        "periodic_overran",
        Kind.GAUGE,
        ENTRY_LABELS,
        "1 while a run is still running when the next is due, or the last finished run ended after it was due.",
    ),
    Metric(
        "periodic_never_finished",
        Kind.GAUGE,
        ENTRY_LABELS,
        "1 when the entry's last run started and its worker was lost, shut down or restarted before it finished.",
    ),
    Metric(
        "periodic_runtime_seconds",
        Kind.GAUGE,
        ENTRY_LABELS,
        "Run time of the entry's current run so far, else of its last finished run (per-entry limits).",
        "seconds",
    ),
]

CATALOGUE: dict[str, Metric] = {
    m.name: m
    for m in [
        _counter("sent"),
        _counter("received"),
        _counter("started"),
        _counter("succeeded"),
        _counter("failed", ("exception",)),  # exception = class name only, e.g. "ValueError"
        _counter("retried", ("exception",)),
        _counter("rejected"),
        _counter("revoked"),
        Metric(
            "tasks_orphaned",
            Kind.COUNTER,
            TASK_LABELS,
            "Tasks started or reserved by a worker that was lost, shut down or restarted before they finished.",
        ),
        Metric(
            "task_failure_ratio",
            Kind.RATIO,
            TASK_LABELS,
            "Failed / (succeeded + failed) over the window.",
            "ratio",
            numerator="tasks_failed",
            denominator=("tasks_succeeded", "tasks_failed"),
        ),
        Metric(
            "task_retry_ratio",
            Kind.RATIO,
            TASK_LABELS,
            "Retried / (succeeded + failed + retried) over the window.",
            "ratio",
            numerator="tasks_retried",
            denominator=("tasks_succeeded", "tasks_failed", "tasks_retried"),
        ),
        Metric(
            "task_runtime_seconds",
            Kind.DISTRIBUTION,
            TASK_LABELS,
            "Run time of finished tasks (task-succeeded runtime field; failed: failed - started).",
            "seconds",
        ),
        Metric(
            "task_queue_wait_seconds",
            Kind.DISTRIBUTION,
            TASK_LABELS,
            "Time from sent (or ETA, or received when sent is unseen) to started; corrected when the producer's "
            "and the worker's clocks are more than observe.max_clock_skew apart.",
            "seconds",
        ),
        Metric("queue_length", Kind.GAUGE, ("queue",), "Messages waiting in the broker queue.", ""),
        Metric("queue_consumers", Kind.GAUGE, ("queue",), "Consumers attached to the queue.", ""),
        Metric(
            "queue_stranded_messages",
            Kind.GAUGE,
            ("queue",),
            "Messages waiting in a queue that no worker consumes (0 while it has consumers).",
            "",
        ),
        Metric(
            "queue_not_draining_seconds",
            Kind.GAUGE,
            ("queue",),
            "How long the queue has been non-empty without getting any shorter.",
            "seconds",
        ),
        Metric(
            "queue_waiting_oldest_seconds",
            Kind.GAUGE,
            ("queue",),
            "Wait so far of the oldest task sent to the queue and not started: now - max(sent, ETA).",
            "seconds",
        ),
        Metric(
            "queue_waiting_p95_seconds",
            Kind.GAUGE,
            ("queue",),
            "95th percentile of the wait so far of the queue's tasks sent and not started.",
            "seconds",
        ),
        Metric(
            "queue_latency_p95_seconds",
            Kind.GAUGE,
            ("queue",),
            "95th percentile wait of the queue's tasks still waiting and of those started in the last minute.",
            "seconds",
        ),
        Metric("workers_online", Kind.GAUGE, (), "Workers with a recent heartbeat.", ""),
        Metric("worker_up", Kind.GAUGE, ("worker",), "1 while the worker heartbeats, 0 once lost or offline.", ""),
        Metric(
            "worker_lost",
            Kind.GAUGE,
            ("worker",),
            "1 when heartbeats stopped without worker-offline (judged only while alertd's stream is up), or it "
            "came back as a new process without one (held for a minute after the loss).",
            "",
        ),
        Metric(
            "worker_offline",
            Kind.GAUGE,
            ("worker",),
            "1 when the worker said goodbye (worker-offline) and has not come back within observe.restart_grace.",
            "",
        ),
        Metric("worker_active_tasks", Kind.GAUGE, ("worker",), "Tasks executing (heartbeat `active`).", ""),
        Metric("worker_loadavg", Kind.GAUGE, ("worker",), "1-minute load average of the worker host.", ""),
        Metric("worker_pool_size", Kind.GAUGE, ("worker",), "Pool processes/threads (inspect stats).", ""),
        Metric(
            "worker_saturation_ratio",
            Kind.GAUGE,
            ("worker",),
            "Active tasks / pool size.",
            "ratio",
        ),
        Metric("worker_memory_bytes", Kind.GAUGE, ("worker",), "Max RSS (inspect stats rusage).", "bytes"),
        Metric(
            "worker_memory_growth_bytes_per_hour",
            Kind.GAUGE,
            ("worker",),
            "Growth of the worker's max RSS over the last hour of samples (needs 10 minutes of them).",
            "bytes",
        ),
        Metric(
            "worker_cpu_ratio",
            Kind.GAUGE,
            ("worker",),
            "CPU seconds used per wall second between two samples (rusage).",
            "ratio",
        ),
        Metric(
            "task_oldest_started_seconds",
            Kind.GAUGE,
            ("task", "queue"),
            "Age of the oldest task started and not yet finished.",
            "seconds",
        ),
        Metric(
            "task_oldest_reserved_seconds",
            Kind.GAUGE,
            ("task", "queue"),
            "Age of the oldest task received by a worker and not started (ETA tasks excluded until due).",
            "seconds",
        ),
        Metric(
            "task_waiting_oldest_seconds",
            Kind.GAUGE,
            ("task", "queue"),
            "Wait so far of the oldest task sent (or received) and not started: now - max(sent, ETA).",
            "seconds",
        ),
        Metric(
            "task_waiting_p95_seconds",
            Kind.GAUGE,
            ("task", "queue"),
            "95th percentile of the wait so far of tasks sent (or received) and not started.",
            "seconds",
        ),
        Metric(
            "task_last_succeeded_seconds",
            Kind.GAUGE,
            ("task",),
            "Seconds since the task last succeeded (since alertd started when never seen).",
            "seconds",
        ),
        *PERIODIC,
        Metric("events_silence_seconds", Kind.GAUGE, (), "Seconds since the last event from the broker.", "seconds"),
        Metric("event_stream_up", Kind.GAUGE, (), "1 while connected to the broker's event stream.", ""),
        Metric("broker_up", Kind.GAUGE, (), "1 while the last broker sample succeeded.", ""),
        Metric(
            "store_up",
            Kind.GAUGE,
            (),
            "1 while alertd's state store answers; 0 while it is down and notifications go out without HA dedup.",
            "",
        ),
    ]
}

# Gauges the daemon adds to the observer's (the observer knows Celery, not alertd's own parts).
DAEMON_GAUGES = frozenset({"store_up"} | {m.name for m in PERIODIC})

DISTRIBUTION_STATS = ("avg", "min", "max", "count", "sum", "p50", "p75", "p90", "p95", "p99")
