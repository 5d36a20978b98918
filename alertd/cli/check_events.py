"""`alertd check events`: listen to the broker's event stream a few seconds and say what is missing.

alertd's task rules, latency rules and periodic checks need task events from the workers (`-E`,
worker_send_task_events) and task-sent events from the producers, beat included
(task_send_sent_event). A worker without -E still heartbeats: one whose heartbeats count tasks
processed while none of its task events arrive is missing -E. A task received with no task-sent
for it was sent by a producer without task_send_sent_event.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass, field
from typing import Any

LISTEN_SECONDS = 10.0


@dataclass
class Tally:
    """What the stream showed: heartbeats by worker, task events by sender, sends and receipts by uuid."""

    processed: dict[str, tuple[float, float]] = field(default_factory=dict)  # worker -> (first, last)
    active: dict[str, float] = field(default_factory=dict)
    task_senders: set[str] = field(default_factory=set)  # workers heard sending task events
    sent: set[str] = field(default_factory=set)
    received: dict[str, str] = field(default_factory=dict)  # uuid -> task name
    events: int = 0

    def on_event(self, event: dict[str, Any]) -> None:
        self.events += 1
        kind = str(event.get("type") or "")
        host = str(event.get("hostname") or "")
        if kind == "worker-heartbeat":
            n = event.get("processed")
            if isinstance(n, int | float) and not isinstance(n, bool):
                first = self.processed.get(host, (float(n), float(n)))[0]
                self.processed[host] = (first, float(n))
            a = event.get("active")
            if isinstance(a, int | float) and not isinstance(a, bool):
                self.active[host] = max(self.active.get(host, 0.0), float(a))
        elif kind == "task-sent":
            self.sent.add(str(event.get("uuid")))
        elif kind.startswith("task-"):
            self.task_senders.add(host)
            if kind == "task-received":
                self.received[str(event.get("uuid"))] = str(event.get("task") or event.get("name") or "")

    def warnings(self) -> list[str]:
        out = []
        for worker, (first, last) in sorted(self.processed.items()):
            busy = last > first or self.active.get(worker, 0.0) > 0
            if busy and worker not in self.task_senders:
                out.append(
                    f"worker {worker} ran tasks ({last - first:g} in the heartbeats) but sent no task events: "
                    "start it with -E (or worker_send_task_events = True)"
                )
        unsent = {u: name for u, name in self.received.items() if u not in self.sent}
        if unsent:
            names = ", ".join(sorted(set(unsent.values())))
            out.append(
                f"{len(unsent)} task(s) received with no task-sent event ({names}): their producer (beat too, "
                "for periodic tasks) needs task_send_sent_event = True"
            )
        return out


def check_events(args: argparse.Namespace) -> int:
    """Listen `args.listen` seconds, print what was heard and each warning; exit 1 on a warning."""
    from alertd.config import find_config, load_config
    from alertd.yamlfile import FileError

    try:
        config = load_config(find_config(args.config))
    except FileError as e:
        for p in e.problems:
            print(p, file=sys.stderr)
        return 1
    try:
        tally = asyncio.run(listen(config, args.listen))
    except TimeoutError:
        print(f"alertd check events: no event stream from {config.broker} within 10 s", file=sys.stderr)
        return 3
    print(
        f"events: {tally.events} in {args.listen:g} s, {len(tally.processed)} worker(s) heartbeating, "
        f"{len(tally.sent)} task-sent, {len(tally.received)} task-received"
    )
    warnings = tally.warnings()
    for w in warnings:
        print(f"warning: {w}")
    if not tally.processed:
        print("warning: no worker heartbeat heard: are the workers on this broker (and database)?")
        return 1
    return 1 if warnings else 0


async def listen(config: Any, seconds: float) -> Tally:
    """The stream as `alertd run` reads it (same source and options), every event into a Tally."""
    from alertd.clock import WallClock
    from alertd.evaluation import Evaluation
    from alertd.rules.loader import load_rules

    evaluation = Evaluation(config, load_rules([]), WallClock())
    tally = Tally()
    evaluation.observer.watch(tally.on_event)
    source, _ = evaluation.ingest(config)
    await source.start()
    try:
        await asyncio.wait_for(source.wait_connected(), 10)
        await asyncio.sleep(seconds)
    finally:
        await source.stop()
    return tally
