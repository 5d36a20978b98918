"""Record the "incident day" capture of tests/test_incident_day.py from real parts (issue 11).

    PYTHONPATH=. .venv/bin/python scripts/record_incident_day.py [--out tests/fixtures/incident-day.jsonl]

A private redis-server on a free port, three real `celery worker -E` subprocesses of
tests/celeryapp.py (w1 serves `default`, w2 `emails`, w3 `reports`: w3 is the only worker of its
queue), a producer sending tasks to the three queues throughout (task-sent events on), and
`alertd capture` (events, sampler samples every 5 s, stream connects and disconnects) running from
start to end. The day, compressed to about 16 minutes of wall time (the pack's `for`s are kept as
shipped, so an incident has to last as long as it would in production):

    healthy 60 s
    OOM: w1 is SIGKILLed (with its pool) while running a 30 s task with more prefetched behind
         it (its prefetch is 4: the 3 short tasks sent with it, and whatever the producer sent);
         it is started again 20 s later under the same name (the orchestrator restarting it)
    healthy ~2 min (the lost-worker alert resolves a minute after w1 is back)
    deploy: w2 gets SIGTERM (warm shutdown, worker-offline) and is started again at once,
         within observe.restart_grace (2 min)
    healthy 60 s
    backlog: w3, the only worker of `reports`, is stopped (SIGTERM) for 3 minutes while the
         producer keeps sending `reports` tasks; then started again and the backlog drains
    healthy 2.5 min
    broker: the redis-server is SIGKILLed and started again on the same port 150 s later (empty:
         `--save ""`); workers, producer and capture reconnect by themselves
    healthy 3 min (recovery)

What the script did and when (wall clock, the capture's own time base) is written beside the
capture as <out>.timeline.json: each action, and the healthy stretches (from the moment
everything is back up to the next incident). The test reads the stretches from there.

Thinning: none of the events or samples are altered. Heartbeats are thinned only if the
capture exceeds --max-bytes: then every other worker-heartbeat of each worker is dropped (a
4 s rather than 2 s heartbeat as seen by alertd; each heartbeat states its `freq` of 2 s, so
liveness still allows 2.5 missed ones: 5 s, within alertd's 10 s floor). The timeline says
whether that was done.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import RedisServer, free_port, start_celery_worker  # noqa: E402

QUEUES = ("default", "emails", "reports")
# Every worker: acks early (the default), so a SIGKILLed worker's running task is gone and its
# prefetched ones come back once kombu's visibility timeout (15 s here, 1 h by default) passes.
WORKER_ENV = {"ALERTD_TEST_VISIBILITY": "15"}


class Log:
    def __init__(self) -> None:
        self.actions: list[dict[str, Any]] = []
        self.healthy: list[list[float]] = []
        self._healthy_from: float | None = None

    def action(self, what: str) -> float:
        at = time.time()
        self.actions.append({"at": at, "what": what})
        print(f"{time.strftime('%H:%M:%S')} {what}", flush=True)
        return at

    def healthy_from(self) -> None:
        self._healthy_from = self.action("healthy from here")

    def healthy_to(self) -> None:
        assert self._healthy_from is not None
        self.healthy.append([self._healthy_from, self.action("healthy until here")])
        self._healthy_from = None


class Producer(threading.Thread):
    """Sends t.add to each queue at its own pace; keeps going (and counts failures) while the broker is down."""

    PERIODS = {"default": 3.0, "emails": 6.0, "reports": 4.0}

    def __init__(self, broker: str) -> None:
        super().__init__(daemon=True)
        os.environ["ALERTD_TEST_BROKER"] = broker
        from tests.celeryapp import app

        app.conf.broker_url = broker
        self.app = app
        self.stop = threading.Event()
        self.sent = 0
        self.failed = 0

    def send(self, name: str, args: tuple[Any, ...], queue: str) -> None:
        try:
            self.app.send_task(name, args=args, queue=queue, retry=False)
            self.sent += 1
        except Exception:  # the broker is down: a real producer's request would fail too
            self.failed += 1

    def run(self) -> None:
        nxt = dict.fromkeys(self.PERIODS, time.monotonic())
        n = 0
        while not self.stop.is_set():
            now = time.monotonic()
            for q, period in self.PERIODS.items():
                if now >= nxt[q]:
                    n += 1
                    self.send("t.add", (n, 1), q)
                    nxt[q] = now + period
            self.stop.wait(0.2)


def capture_size_ok(out: Path, max_bytes: int) -> bool:
    return out.stat().st_size <= max_bytes


def thin_heartbeats(out: Path) -> int:
    """Drop every other worker-heartbeat of each worker; returns how many were dropped."""
    import orjson

    kept, dropped, seen = [], 0, {}
    for line in out.read_bytes().splitlines():
        obj = orjson.loads(line)
        if obj.get("type") == "worker-heartbeat":
            host = obj.get("hostname")
            seen[host] = seen.get(host, 0) + 1
            if seen[host] % 2 == 0:
                dropped += 1
                continue
        kept.append(line)
    out.write_bytes(b"\n".join(kept) + b"\n")
    return dropped


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "incident-day.jsonl")
    ap.add_argument("--max-bytes", type=int, default=1_800_000)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every wait (0.2 for a quick dry run)")
    args = ap.parse_args()
    s = args.scale
    tmp = Path(tempfile.mkdtemp(prefix="incident-day-"))
    print(f"work dir {tmp}", flush=True)
    server = RedisServer(port=free_port(), dir=tmp)
    server.start()
    broker = server.url
    config = tmp / "alertd.yaml"
    config.write_text(
        f"broker: {broker}\nsampler: {{interval: 5s, inspect_timeout: 1s, queues: [{', '.join(QUEUES)}]}}\n"
    )
    log = Log()
    capture = subprocess.Popen(
        [sys.executable, "-m", "alertd", "--config", str(config), "capture", "-o", str(args.out)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=(tmp / "capture.log").open("wb"),
    )
    log.action("alertd capture started")
    workers: dict[str, Any] = {}

    def start(name: str, queues: list[str], concurrency: int, **env: str) -> None:
        workers[name] = start_celery_worker(
            broker, tmp, queues=queues, concurrency=concurrency, name=name, extra_env={**WORKER_ENV, **env}
        )
        log.action(f"{name}@alertdtest ready (pid {workers[name].proc.pid}, -Q {','.join(queues)})")

    # w1 runs one task at a time and prefetches 4: a long task holds 3 more behind it.
    start("w1", ["default"], 1, ALERTD_TEST_PREFETCH="4")
    start("w2", ["emails"], 2)
    start("w3", ["reports"], 2)
    producer = Producer(broker)
    producer.start()
    log.action("producer started (default every 3 s, emails every 6 s, reports every 4 s)")
    try:
        log.healthy_from()
        time.sleep(60 * s)
        log.healthy_to()

        # -- OOM kill ------------------------------------------------------------------------
        producer.send("t.sleep", (30,), "default")
        for _ in range(3):
            producer.send("t.sleep", (0.5,), "default")
        log.action("sent t.sleep(30) and 3 x t.sleep(0.5) to default (w1 runs one, prefetches the rest)")
        time.sleep(5)
        workers["w1"].kill(signal.SIGKILL)
        log.action("OOM: SIGKILL w1@alertdtest and its pool")
        time.sleep(20 * s)
        start("w1", ["default"], 1, ALERTD_TEST_PREFETCH="4")
        time.sleep(15)  # the prefetched tasks come back (visibility timeout) and run
        log.healthy_from()
        time.sleep(105 * s)
        log.healthy_to()

        # -- deploy restart -------------------------------------------------------------------
        workers["w2"].stop()
        log.action("deploy: SIGTERM w2@alertdtest (warm shutdown), exited")
        start("w2", ["emails"], 2)
        log.healthy_from()
        time.sleep(60 * s)
        log.healthy_to()

        # -- backlog ---------------------------------------------------------------------------
        workers["w3"].stop()
        log.action("backlog: SIGTERM w3@alertdtest, the only worker of reports; producer keeps sending")
        time.sleep(180 * s)
        start("w3", ["reports"], 2)
        time.sleep(10)  # the backlog drains (t.add is instant)
        log.healthy_from()
        time.sleep(140 * s)
        log.healthy_to()

        # -- broker restart --------------------------------------------------------------------
        server.kill()
        log.action("broker: SIGKILL redis-server")
        time.sleep(150 * s)
        server.start()
        log.action("broker: redis-server started again on the same port (empty)")
        time.sleep(45)  # workers and capture reconnect (celery's retry backoff grows with the outage)
        log.healthy_from()
        time.sleep(180 * s)
        log.healthy_to()
    finally:
        producer.stop.set()
        producer.join(5)
        capture.send_signal(signal.SIGINT)
        capture.wait(30)
        log.action("capture stopped")
        for w in workers.values():
            w.stop()
        server.kill()
    thinned = 0
    if not capture_size_ok(args.out, args.max_bytes):
        thinned = thin_heartbeats(args.out)
    timeline = {
        "recorded_by": "scripts/record_incident_day.py",
        "actions": log.actions,
        "healthy": log.healthy,
        "producer": {"sent": producer.sent, "failed": producer.failed},
        "thinned_heartbeats": thinned,
    }
    args.out.with_suffix(".timeline.json").write_text(json.dumps(timeline, indent=1) + "\n")
    print((tmp / "capture.log").read_text(), flush=True)
    print(f"{args.out}: {args.out.stat().st_size} bytes; thinned {thinned} heartbeats", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
