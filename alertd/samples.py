"""What the sampler reads from the broker and the workers on each pass."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class QueueSample:
    queue: str
    messages: int  # waiting in the broker (reserved/prefetched messages are not counted by brokers)
    consumers: int | None  # None where the broker cannot tell (Redis)
    at: float


@dataclass(frozen=True, slots=True)
class WorkerSample:
    worker: str  # hostname, e.g. celery@host
    at: float
    pool_size: int | None = None  # pool max-concurrency
    memory_bytes: int | None = None  # rusage maxrss (KiB on Linux) * 1024
    cpu_seconds: float | None = None  # rusage utime + stime, cumulative
    processed: int | None = None  # total tasks processed
    queues: tuple[str, ...] = ()  # queues the worker consumes (active_queues)


@dataclass(frozen=True, slots=True)
class BrokerSample:
    """One sampling pass over the broker: ok False when the broker could not be reached."""

    ok: bool
    at: float
    error: str = ""
