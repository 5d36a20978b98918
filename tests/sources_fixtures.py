"""Helpers for the event source, sampler and capture tests: kombu envelopes, a batch recorder, waits."""

from __future__ import annotations

import base64
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from tests.waiting import wait_for  # noqa: F401 (tests import it from here too)


def envelope(body: object, routing_key: str = "worker.heartbeat", **overrides: Any) -> bytes:
    """A kombu Redis-transport message carrying `body` as Celery's event dispatcher sends it."""
    message = {
        "body": base64.b64encode(orjson.dumps(body)).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"hostname": "celery@test"},
        "properties": {
            "delivery_mode": 1,
            "delivery_info": {"exchange": "celeryev", "routing_key": routing_key},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
        **overrides,
    }
    return orjson.dumps(message)


def heartbeat(hostname: str = "celery@test", **fields: Any) -> dict[str, Any]:
    return {"type": "worker-heartbeat", "hostname": hostname, "freq": 2.0, "timestamp": 1.0, **fields}


@dataclass
class Batches:
    """A source handler that records every batch and the thread it was called on."""

    batches: list[list[dict[str, Any]]] = field(default_factory=list)
    threads: set[int] = field(default_factory=set)
    on_batch: Callable[[list[dict[str, Any]]], None] | None = None

    def __call__(self, events: list[dict[str, Any]]) -> None:
        self.threads.add(threading.get_ident())
        self.batches.append(events)
        if self.on_batch is not None:
            self.on_batch(events)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [e for b in self.batches for e in b]

    def types(self) -> set[str]:
        return {str(e.get("type")) for e in self.events}
