"""Ingest benchmark: alertd's Redis fast path + observer against Celery's own EventReceiver + State.

Each consumer runs in its own process against a private redis-server (pub/sub output buffer
unlimited, so nothing is dropped). The consumer is paused (SIGSTOP) while the stream is published
and resumed once it is all buffered, so its own speed is what is measured. The publisher
sends the same realistic stream to both: task events batched in task.multi messages as workers
send them, plus heartbeats. Printed: events/s for each, the ratio, and the consumer's RSS growth.

Consumers:
  celery        Celery's bare EventReceiver counting events (the baseline)
  celery-state  EventReceiver feeding celery.events.state.State (what Flower does)
  alertd        alertd's fast path feeding the observer while the default rule pack ticks every second
  alertd-run    `alertd run` itself with the default rule pack, its API polled for the count (on 2+ CPUs
                its Redis stream is decoded by a child process: each consumer is paused as a process group)
  alertd-run-inline  the same with `events.decode: inline`, everything on the event loop

Rounds interleave the consumers (as bench/ingest_amqp.py does), so a burst of other work on the
machine lands on all of them rather than on one; the median of each is what the ratios use.

    .venv/bin/python bench/ingest.py [--events 200000] [--rounds 3] [--only celery alertd-run]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def envelope(body: object, routing_key: str) -> bytes:
    """The message as kombu's Redis transport publishes it: its json.dumps (", " and ": "
    separators) of the event body, base64, then of the envelope."""
    raw = json.dumps(body).encode()
    return json.dumps(
        {
            "body": base64.b64encode(raw).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {"hostname": "celery@bench"},
            "properties": {
                "delivery_mode": 1,
                "delivery_info": {"exchange": "celeryev", "routing_key": routing_key},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
    ).encode()


def messages(n_events: int) -> list[tuple[str, bytes]]:
    """Task lifecycles (sent from a producer, the rest batched by the worker) and heartbeats."""
    out: list[tuple[str, bytes]] = []
    now = time.time()
    produced = 0
    batch: list[dict[str, object]] = []
    i = 0
    while produced < n_events:
        uid = str(uuid.uuid4())
        name, queue = f"app.tasks.t{i % 50}", f"q{i % 5}"
        out.append(
            (
                "task.sent",
                envelope(
                    {
                        "type": "task-sent",
                        "uuid": uid,
                        "name": name,
                        "queue": queue,
                        "hostname": "gen@web",
                        "timestamp": now,
                        "utcoffset": 0,
                        "pid": 1,
                        "clock": i,
                        "args": "()",
                        "kwargs": "{}",
                        "retries": 0,
                        "eta": None,
                        "expires": None,
                    },
                    "task.sent",
                ),
            )
        )
        for t in ("task-received", "task-started", "task-succeeded" if i % 20 else "task-failed"):
            e: dict[str, object] = {
                "type": t,
                "uuid": uid,
                "hostname": "celery@bench",
                "timestamp": now,
                "utcoffset": 0,
                "pid": 2,
                "clock": i,
            }
            if t == "task-received":
                e.update(name=name, args="()", kwargs="{}", retries=0, eta=None)
            if t == "task-succeeded":
                e.update(runtime=0.01, result="None")
            if t == "task-failed":
                e.update(exception="ValueError('x')", traceback="Traceback ...")
            batch.append(e)
        produced += 4
        if len(batch) >= 8:  # what a busy worker's event loop sends as one task.multi message
            out.append(("task.multi", envelope(batch, "task.multi")))
            batch = []
        if i % 100 == 0:
            out.append(
                (
                    "worker.heartbeat",
                    envelope(
                        {
                            "type": "worker-heartbeat",
                            "hostname": "celery@bench",
                            "freq": 2.0,
                            "active": 3,
                            "processed": i,
                            "timestamp": now,
                            "loadavg": [0.5, 0.4, 0.3],
                        },
                        "worker.heartbeat",
                    ),
                )
            )
            produced += 1
        i += 1
    if batch:
        out.append(("task.multi", envelope(batch, "task.multi")))
    return out


def count_events(msgs: list[tuple[str, bytes]]) -> int:
    n = 0
    for _, raw in msgs:
        body = orjson.loads(base64.b64decode(orjson.loads(raw)["body"]))
        n += len(body) if isinstance(body, list) else 1
    return n


# -- consumers (each in its own process) ------------------------------------------------------


def consume_alertd(url: str, expected: int) -> None:
    from alertd.clock import WallClock
    from alertd.observe.observer import Observer
    from alertd.observe.series import SeriesStore
    from alertd.rules.engine import Engine
    from alertd.rules.loader import expand_rule_paths, load_rules
    from alertd.sources.health import StreamHealth
    from alertd.sources.redis_events import RedisEventSource

    async def main() -> None:
        clock, health = WallClock(), StreamHealth()
        series = SeriesStore()
        observer = Observer(series, clock, health=health)
        rules = load_rules(expand_rule_paths(["rules/*.yaml"], ROOT))
        engine = Engine(
            rules, series, clock, gauges=observer.gauges, watch=observer.watch, expect_task=observer.expect_task
        )

        async def evaluate() -> None:  # as the daemon does: every second, due groups evaluated
            while True:
                engine.tick()
                await asyncio.sleep(1.0)

        ticker = asyncio.create_task(evaluate())
        done = asyncio.Event()
        first: list[float] = []

        def handler(events: list[dict[str, object]]) -> None:
            if not first:
                first.append(time.perf_counter())
            observer.on_events(events)
            if health.events >= expected:
                done.set()

        source = RedisEventSource(url, handler, clock, health)
        await source.start()
        await source.wait_connected()
        base = rss_mib()
        print("READY", flush=True)
        await done.wait()
        elapsed = time.perf_counter() - first[0]
        print(f"RESULT {health.events} {elapsed:.4f} {rss_mib() - base:.1f}", flush=True)
        ticker.cancel()
        await source.stop()

    asyncio.run(main())


def consume_celery(url: str, expected: int, with_state: bool = False) -> None:
    from celery import Celery
    from celery.events.state import State

    app = Celery(broker=url)
    state = State()
    seen = [0]
    first: list[float] = []

    def on_event(event: dict[str, object]) -> None:
        if not first:
            first.append(time.perf_counter())
        if with_state:
            state.event(event)
        seen[0] += 1
        if seen[0] >= expected:
            recv.should_stop = True

    with app.connection_for_read() as conn:
        recv = app.events.Receiver(conn, handlers={"*": on_event})
        base = rss_mib()
        # One pass of the consume loop subscribes (and returns after its 1 s safety timeout);
        # only then may the publisher start, or the first events would go to nobody.
        for _ in recv.consume(limit=None, timeout=None, wakeup=False):
            break
        print("READY", flush=True)
        recv.capture(limit=None, timeout=None, wakeup=False)
    elapsed = time.perf_counter() - first[0]
    print(f"RESULT {seen[0]} {elapsed:.4f} {rss_mib() - base:.1f}", flush=True)


class Daemon:
    """`alertd run` with the default rule pack, in a directory of its own (this tree's code)."""

    def __init__(self, url: str, tmp: Path, root: Path = ROOT, extra: str = "") -> None:
        """`extra`: more of alertd.yaml (bench/ingest_amqp.py's `events:` section)."""
        self.port = free_port()
        cfg = tmp / f"alertd-{self.port}.yaml"
        cfg.write_text(
            f'broker: "{url}"\n'
            f"rule_files: [{root / 'rules'}/*.yaml]\n"
            f"store: sqlite:///{tmp / f'state-{self.port}.db'}\n"
            f"api: {{listen: 127.0.0.1:{self.port}}}\n"
            "sampler: {queues: [], inspect: false}\n" + extra
        )
        self.log = (tmp / f"alertd-{self.port}.log").open("wb")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
        # ALERTD_BENCH_PYTHON="python -m pyinstrument -o out.txt" runs the daemon under a profiler.
        python = os.environ.get("ALERTD_BENCH_PYTHON", "").split() or [sys.executable]
        self.proc = subprocess.Popen(
            [*python, "-m", "alertd", "-c", str(cfg), "--log-level", "warning", "run"],
            cwd=tmp,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: paused and resumed with its decoder process
        )

    def pause(self) -> None:
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.proc.pid, signal.SIGCONT)

    def stream(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/alertd/v1/health", timeout=5) as r:
            return dict(orjson.loads(r.read())["stream"])

    def wait_connected(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.flush()
                tail = Path(self.log.name).read_text(errors="replace")[-2000:]
                raise SystemExit(f"alertd exited with {self.proc.returncode}:\n{tail}")
            try:
                if self.stream()["connected"]:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit("alertd did not connect")

    def rss_mib(self) -> float:
        """The daemon's RSS with its children's (the Redis decoder process)."""
        pids = [self.proc.pid]
        try:
            pids += [int(p) for p in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()]
        except OSError:
            pass
        total = 0.0
        for pid in pids:
            try:
                with open(f"/proc/{pid}/status") as f:
                    total += next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0) / 1024
            except OSError:
                pass
        return total

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


# -- driver -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(mode: str, url: str, msgs: list[tuple[str, bytes]], expected: int) -> tuple[int, float, float]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--consumer", mode, "--url", url, "--expect", str(expected)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,  # paused and resumed as a group, with alertd's decoder process
    )
    assert proc.stdout is not None
    while proc.stdout.readline().strip() != "READY":
        pass
    time.sleep(0.5)  # subscriptions settle
    # Pause the consumer while publishing: Redis buffers the whole stream for it (output buffer
    # unlimited), so what is measured after SIGCONT is the consumer's own speed, not the
    # publisher's (on 2 CPUs the Python publisher is slower than alertd).
    os.killpg(proc.pid, signal.SIGSTOP)
    publish(url, msgs)
    os.killpg(proc.pid, signal.SIGCONT)
    line = proc.stdout.readline().split()
    proc.wait(60)
    return int(line[1]), float(line[2]), float(line[3])


def publish(url: str, msgs: list[tuple[str, bytes]]) -> None:
    r = redis.Redis.from_url(url)
    pipe = r.pipeline(transaction=False)
    for i, (rk, raw) in enumerate(msgs, 1):
        pipe.publish(f"/0.celeryev/{rk}", raw)
        if i % 1000 == 0:
            pipe.execute()
    pipe.execute()
    r.close()


def run_daemon_drain(
    url: str, tmp: Path, msgs: list[tuple[str, bytes]], expected: int, root: Path = ROOT, extra: str = ""
) -> tuple[int, float, float]:
    """`alertd run`: paused, the stream published (Redis buffers it), resumed; done when its API counts it all."""
    daemon = Daemon(url, tmp, root, extra)
    try:
        daemon.wait_connected()
        time.sleep(0.5)  # its first rule tick and sampler round are done: the drain is what is timed
        base = daemon.rss_mib()
        before = daemon.stream()["events"]
        daemon.pause()
        publish(url, msgs)
        resumed = time.time()
        daemon.resume()
        while (stream := daemon.stream())["events"] - before < expected:
            if stream["reconnects"] or not stream["connected"]:
                raise SystemExit(f"alertd run lost its subscription during the drain: {stream['last_error']}")
            time.sleep(0.05)
        # the newest batch's receive time, on the daemon's clock: polling granularity not counted
        return int(stream["events"]) - before, float(stream["last_event_at"]) - resumed, daemon.rss_mib() - base
    finally:
        daemon.stop()


def sampler_rounds(url: str, n_queues: int = 50, rounds: int = 10) -> None:
    """The sampler's round time on this Redis: n_queues x 4 priority lists, inspect off, then on."""
    import asyncio
    import statistics

    import redis

    from alertd.clock import WallClock
    from alertd.sources.sampler import Sampler, redis_priority_keys

    queues = [f"bench-q{i}" for i in range(n_queues)]
    client = redis.Redis.from_url(url)
    for q in queues:
        for key in redis_priority_keys(q, {}):
            client.rpush(key, b"{}")

    async def measure(inspect: bool) -> list[float]:
        sampler = Sampler(
            url,
            WallClock(),
            on_queue=lambda s: None,
            on_worker=lambda s: None,
            on_broker=lambda s: None,
            queues=queues,
            inspect=inspect,
            inspect_timeout=0.5,
        )
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            await sampler.sample_once()
            times.append(time.perf_counter() - started)
        await sampler.stop()
        return times

    for inspect in (False, True):
        times = asyncio.run(measure(inspect))
        what = "inspect on (no workers: waits the 0.5 s timeout)" if inspect else "inspect off"
        print(
            f"sampler round, {n_queues} queues, {what}: median {statistics.median(times) * 1000:.1f} ms, "
            f"max {max(times) * 1000:.1f} ms"
        )
    client.close()


LABELS = {
    "celery": "Celery EventReceiver, counting (baseline)",
    "celery-state": "Celery EventReceiver + State (Flower's way)",
    "alertd": "alertd: fast path + observer + default rules",
    "alertd-run": "alertd run, default rules",
    "alertd-run-inline": "alertd run, decoded on the loop (decode: inline)",
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument(
        "--only",
        nargs="*",
        choices=list(LABELS),
        default=["celery", "celery-state", "alertd", "alertd-run", "alertd-run-inline"],
        help="consumers to run",
    )
    ap.add_argument("--rounds", type=int, default=1, help="times each consumer drains the stream (median kept)")
    ap.add_argument(
        "--before",
        metavar="COMMIT",
        help="also drain with `alertd run` from a checkout of COMMIT (a git worktree, removed after), same rounds",
    )
    ap.add_argument("--sampler-queues", type=int, default=50, help="queues for the sampler round (0: skip)")
    ap.add_argument("--consumer", choices=["alertd", "celery", "celery-state"])
    ap.add_argument("--url")
    ap.add_argument("--expect", type=int)
    args = ap.parse_args()
    if args.consumer == "alertd":
        consume_alertd(args.url, args.expect)
        return
    if args.consumer:
        consume_celery(args.url, args.expect, with_state=args.consumer == "celery-state")
        return
    binary = shutil.which("redis-server")
    if not binary:
        sys.exit("redis-server is not installed")
    port = free_port()
    tmp = tempfile.mkdtemp()
    server = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            tmp,
            "--client-output-buffer-limit",
            "pubsub 0 0 0",
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        url = f"redis://127.0.0.1:{port}/0"
        msgs = messages(args.events)
        expected = count_events(msgs)
        print(
            f"{len(msgs)} messages, {expected} events (task.multi batches of 8, heartbeats), Python "
            f"{sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        rates: dict[str, list[float]] = {}
        modes = list(args.only)
        if args.before:
            before = Path(tmp) / "before"
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(before), args.before],
                check=True,
                capture_output=True,
            )
            LABELS["alertd-run-before"] = f"alertd run, default rules, at {args.before}"
            modes.append("alertd-run-before")
        for round_ in range(1, args.rounds + 1):
            for mode in modes:
                if mode == "alertd-run":
                    n, secs, rss = run_daemon_drain(url, Path(tmp), msgs, expected)
                elif mode == "alertd-run-inline":
                    n, secs, rss = run_daemon_drain(url, Path(tmp), msgs, expected, extra="events: {decode: inline}\n")
                elif mode == "alertd-run-before":
                    n, secs, rss = run_daemon_drain(url, Path(tmp), msgs, expected, before)
                else:
                    n, secs, rss = run(mode, url, msgs, expected)
                rates.setdefault(mode, []).append(n / secs)
                print(
                    f"round {round_}: {LABELS[mode]:46s} {n:>9d} events in {secs:6.2f}s = {n / secs:>9,.0f} "
                    f"events/s, RSS +{rss:.0f} MiB, load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
        results = {mode: statistics.median(r) for mode, r in rates.items()}
        if args.rounds > 1:
            for mode, rate in results.items():
                print(f"median {LABELS[mode]:46s} {rate:>9,.0f} events/s")
        for mode in ("alertd", "alertd-run", "alertd-run-inline", "alertd-run-before"):
            if mode in results and "celery" in results:
                print(f"ratio {mode} / bare EventReceiver: {results[mode] / results['celery']:.2f}x")
        if "alertd-run" in results and "alertd-run-before" in results:
            speedup = results["alertd-run"] / results["alertd-run-before"]
            print(f"ratio alertd-run / alertd-run at {args.before}: {speedup:.2f}x")
        if args.sampler_queues:
            sampler_rounds(url, args.sampler_queues)
    finally:
        server.kill()
        if args.before:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(Path(tmp) / "before")])
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
