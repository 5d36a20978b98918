"""Ingest benchmark on RabbitMQ: alertd's AMQP fast path against Celery's own EventReceiver.

The same stream as bench/ingest.py (task-sent singles, task.multi batches of 8, 5 % failures,
heartbeats), published on the `celeryev` topic exchange as kombu's AMQP transport sends it (JSON
body as is, content_type application/json), in a private virtual host of the local RabbitMQ so
nothing else reaches the consumers. Each consumer runs in its own process and is paused (SIGSTOP)
while the whole stream is published into its queue (publisher confirms say when RabbitMQ holds it
all), then resumed: what is measured is the consumer draining, not the publisher.

Consumers, one after the other in the same run:
  celery      Celery's bare EventReceiver counting events (the baseline)
  alertd      alertd's AMQP source feeding the observer while the default rule pack ticks every second
  alertd-run  `alertd run` itself with the default rule pack, events.durable_queue (acks), its API
              polled for the count
  aiormq      aiormq + orjson counting (only if aiormq is installed): the client alertd did not take

Drain queues have no message TTL, so nothing expires while a consumer is paused. Then the loss
check: `alertd run` with Celery's defaults (exclusive queue, 5 s TTL) while the stream is published
at a steady rate, by default the rate the bare EventReceiver drained at; it must count every event.

    .venv/bin/python bench/ingest_amqp.py [--events 500000] [--only celery alertd alertd-run]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from ingest import Daemon, count_events, messages, rss_mib
from pamqp import body as pamqp_body
from pamqp import commands, frame, header

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alertd.sources.amqp_wire import AmqpConsumer, Endpoint  # noqa: E402

EXCHANGE = "celeryev"
# The consumers' own heartbeat would make RabbitMQ drop a connection paused for longer than two of
# them (10 s by default); paused consumers are the point here, so they ask for a minute.
PAUSE_HEARTBEAT = "?heartbeat=60"


def amqp_stream(n_events: int) -> tuple[list[tuple[str, bytes]], int]:
    """bench/ingest.py's stream with kombu's Redis envelope taken off: AMQP carries the JSON as is."""
    msgs = messages(n_events)
    expected = count_events(msgs)
    return [(rk, base64.b64decode(orjson.loads(raw)["body"])) for rk, raw in msgs], expected


def publish_frames(stream: list[tuple[str, bytes]]) -> list[bytes]:
    """Basic.Publish + content header + body for each message, marshalled once, before timing."""
    props = commands.Basic.Properties(
        content_type="application/json",
        content_encoding="utf-8",
        headers={"hostname": "celery@bench"},
        delivery_mode=1,
        priority=0,
    )
    out = []
    for rk, body in stream:
        out.append(
            frame.marshal(commands.Basic.Publish(exchange=EXCHANGE, routing_key=rk), 1)
            + frame.marshal(header.ContentHeader(0, len(body), props), 1)
            + frame.marshal(pamqp_body.ContentBody(body), 1)
        )
    return out


class Publisher:
    """Publishes pre-marshalled messages with publisher confirms, on alertd's AMQP connection code."""

    def __init__(self, conn: AmqpConsumer) -> None:
        self.conn = conn
        self.confirmed = 0
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, url: str) -> Publisher:
        conn = await AmqpConsumer.open(Endpoint.from_url(url), "alertd bench publisher")
        conn._send(commands.Exchange.Declare(exchange=EXCHANGE, exchange_type="topic", durable=True))
        await conn._expect(commands.Exchange.DeclareOk)
        conn._send(commands.Confirm.Select())
        await conn._expect(commands.Confirm.SelectOk)
        p = cls(conn)
        p._reader = asyncio.create_task(p._read_confirms())
        return p

    async def _read_confirms(self) -> None:
        # Read confirms as they come: left unread they would fill the socket and stall the broker.
        while True:
            data = await self.conn.reader.read(1 << 16)
            if not data:
                return
            _, methods = self.conn.parser.feed(data)
            for m in methods:
                if isinstance(m, commands.Basic.Ack):
                    self.confirmed = max(self.confirmed, int(m.delivery_tag))
                elif isinstance(m, commands.Basic.Nack | commands.Channel.Close | commands.Connection.Close):
                    raise RuntimeError(f"publish refused: {m}")

    async def publish(self, frames: list[bytes], chunk: int = 500) -> None:
        """Everything, as fast as RabbitMQ takes it; returns once RabbitMQ has confirmed it all."""
        target = self.confirmed + len(frames)
        for i in range(0, len(frames), chunk):
            self.conn.writer.write(b"".join(frames[i : i + chunk]))
            await self.conn.writer.drain()
        while self.confirmed < target:
            await asyncio.sleep(0.01)

    async def publish_paced(self, frames: list[bytes], per_second: float) -> float:
        """The messages at a steady rate (in 10 ms steps); returns the seconds it took."""
        started = time.perf_counter()
        sent = 0
        while sent < len(frames):
            due = min(len(frames), int((time.perf_counter() - started) * per_second) + 1)
            if due > sent:
                self.conn.writer.write(b"".join(frames[sent:due]))
                sent = due
                await self.conn.writer.drain()
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        while self.confirmed < len(frames):
            await asyncio.sleep(0.01)
        return elapsed

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self.conn.close(polite=False)


# -- consumers (each in its own process) ------------------------------------------------------


def consume_celery(url: str, expected: int) -> None:
    from celery import Celery

    app = Celery(broker=url, set_as_current=False)
    app.conf.event_queue_ttl = None  # the drain queue keeps everything while the consumer is paused
    app.conf.event_queue_expires = None
    # Not exclusive: the receiver consumes on a clone of the connection that declares it below.
    app.conf.event_queue_exclusive = False
    seen = [0]
    first: list[float] = []

    def on_event(event: dict[str, object]) -> None:
        if not first:
            first.append(time.perf_counter())
        seen[0] += 1
        if seen[0] >= expected:
            recv.should_stop = True

    with app.connection_for_read() as conn:
        recv = app.events.Receiver(conn, handlers={"*": on_event})
        base = rss_mib()
        # Declared and bound before READY, so nothing the publisher sends goes to nobody (the
        # consume loop yields only once an event has arrived).
        recv.queue.bind(conn.default_channel).declare()
        print("READY", flush=True)
        recv.capture(limit=None, timeout=None, wakeup=False)
    elapsed = time.perf_counter() - first[0]
    print(f"RESULT {seen[0]} {elapsed:.4f} {rss_mib() - base:.1f}", flush=True)


def consume_alertd(url: str, expected: int) -> None:
    from alertd.clock import WallClock
    from alertd.observe.observer import Observer
    from alertd.observe.series import SeriesStore
    from alertd.rules.engine import Engine
    from alertd.rules.loader import expand_rule_paths, load_rules
    from alertd.sources.amqp_events import AmqpEventSource
    from alertd.sources.health import StreamHealth

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

        def handler(events: list[dict[str, Any]]) -> None:
            if not first:
                first.append(time.perf_counter())
            observer.on_events(events)
            if health.events >= expected:
                done.set()

        source = AmqpEventSource(url + PAUSE_HEARTBEAT, handler, clock, health, queue_ttl=None, queue_expires=None)
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


def consume_aiormq(url: str, expected: int) -> None:
    import aiormq

    async def main() -> None:
        conn = await aiormq.connect(url + PAUSE_HEARTBEAT)
        ch = await conn.channel()
        ok = await ch.queue_declare(f"celeryev.{uuid.uuid4()}", exclusive=True, auto_delete=True)
        await ch.queue_bind(ok.queue, EXCHANGE, routing_key="#")
        n = [0]
        first: list[float] = []
        done = asyncio.Event()

        async def on_message(message: Any) -> None:
            if not first:
                first.append(time.perf_counter())
            payload = orjson.loads(message.body)
            n[0] += len(payload) if isinstance(payload, list) else 1
            if n[0] >= expected:
                done.set()

        await ch.basic_consume(ok.queue, on_message, no_ack=True)
        base = rss_mib()
        print("READY", flush=True)
        await done.wait()
        print(f"RESULT {n[0]} {time.perf_counter() - first[0]:.4f} {rss_mib() - base:.1f}", flush=True)
        await conn.close()

    asyncio.run(main())


# -- driver -----------------------------------------------------------------------------------


def run_consumer(mode: str, url: str, frames: list[bytes], expected: int) -> tuple[int, float, float]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--consumer", mode, "--url", url, "--expect", str(expected)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    while (line := proc.stdout.readline()) and line.strip() != "READY":
        pass
    os.kill(proc.pid, signal.SIGSTOP)
    asyncio.run(publish_all(url, frames))
    os.kill(proc.pid, signal.SIGCONT)
    result = proc.stdout.readline().split()
    proc.wait(120)
    return int(result[1]), float(result[2]), float(result[3])


async def publish_all(url: str, frames: list[bytes]) -> None:
    publisher = await Publisher.open(url)
    try:
        await publisher.publish(frames)
    finally:
        await publisher.close()


def run_daemon_drain(url: str, tmp: Path, frames: list[bytes], expected: int) -> tuple[int, float, float]:
    """`alertd run` on a durable queue: paused, the stream queued, resumed; done when its API counts it all."""
    queue = f"alertd-bench-{uuid.uuid4().hex[:8]}"
    daemon = Daemon(url + PAUSE_HEARTBEAT, tmp, extra=f"events: {{durable_queue: {queue}, durable_queue_ttl: 1h}}\n")
    try:
        daemon.wait_connected()
        base = daemon.rss_mib()
        daemon.pause()
        asyncio.run(publish_all(url, frames))
        resumed = time.time()
        daemon.resume()
        while (stream := daemon.stream())["events"] < expected:
            time.sleep(0.05)
        if stream["reconnects"]:
            # a reconnect redelivers what was not yet acknowledged: duplicates, not a clean drain
            print(f"alertd run reconnected {stream['reconnects']} times during the drain: {stream['last_error']}")
        # the newest batch's receive time, on the daemon's clock: polling granularity not counted
        return int(stream["events"]), float(stream["last_event_at"]) - resumed, daemon.rss_mib() - base
    finally:
        daemon.stop()
        # A durable queue outlives its consumer and would keep a copy of every later round's stream.
        asyncio.run(delete_queue(url, queue))


async def delete_queue(url: str, name: str) -> None:
    conn = await AmqpConsumer.open(Endpoint.from_url(url), "alertd bench cleanup")
    try:
        conn._send(commands.Queue.Delete(queue=name))
        await conn._expect(commands.Queue.DeleteOk)
    finally:
        await conn.close()


def sustained_loss_check(url: str, tmp: Path, stream: list[tuple[str, bytes]], rate: float, seconds: float) -> None:
    """Celery's defaults (exclusive queue, 5 s TTL): publish N events at `rate`/s, `alertd run` must count N."""
    per_message = count_events_raw(stream) / len(stream)
    n_messages = int(rate * seconds / per_message)
    chosen = (stream * (n_messages // len(stream) + 1))[:n_messages]
    events = count_events_raw(chosen)
    frames = publish_frames(chosen)
    daemon = Daemon(url, tmp)
    try:
        daemon.wait_connected()
        before = daemon.stream()["events"]

        async def go() -> float:
            publisher = await Publisher.open(url)
            try:
                return await publisher.publish_paced(frames, rate / per_message)
            finally:
                await publisher.close()

        took = asyncio.run(go())
        deadline = time.monotonic() + 15
        got = daemon.stream()["events"] - before
        while got < events and time.monotonic() < deadline:
            time.sleep(0.1)
            got = daemon.stream()["events"] - before
        time.sleep(1.0)  # anything beyond N would be a duplicate: give it a moment to show
        final = daemon.stream()
        got = final["events"] - before
        print(
            f"loss check, alertd run, Celery's 5 s TTL queue: published {events} events in {took:.1f}s "
            f"({events / took:,.0f}/s for a target of {rate:,.0f}/s), alertd counted {got} -> lost {events - got}, "
            f"malformed {final['malformed']}, reconnects {final['reconnects']}"
        )
    finally:
        daemon.stop()


def count_events_raw(stream: list[tuple[str, bytes]]) -> int:
    n = 0
    for _, body in stream:
        payload = orjson.loads(body)
        n += len(payload) if isinstance(payload, list) else 1
    return n


def _has_aiormq() -> bool:
    try:
        import aiormq  # noqa: F401
    except ImportError:
        print(f"{LABELS['aiormq']} skipped: pip install aiormq")
        return False
    return True


def rabbitmqctl(*args: str) -> None:
    # stdin closed: the Erlang CLI may wait on an inherited stdin
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)


LABELS = {
    "celery": "Celery EventReceiver, counting (baseline)",
    "alertd": "alertd: AMQP source + observer + default rules",
    "alertd-run": "alertd run, default rules, durable queue",
    "aiormq": "aiormq + orjson, counting",
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--only", nargs="*", choices=list(LABELS), default=["celery", "alertd", "alertd-run", "aiormq"])
    ap.add_argument("--rounds", type=int, default=3, help="times each consumer drains the stream (median kept)")
    ap.add_argument("--loss-seconds", type=float, default=30.0, help="length of the loss check (0: skip)")
    ap.add_argument("--loss-rate", type=float, help="events/s of the loss check (default: the baseline's drain rate)")
    ap.add_argument("--amqp", default=os.environ.get("ALERTD_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672"))
    ap.add_argument("--consumer", choices=["celery", "alertd", "aiormq"])
    ap.add_argument("--url")
    ap.add_argument("--expect", type=int)
    args = ap.parse_args()
    if args.consumer:
        {"celery": consume_celery, "alertd": consume_alertd, "aiormq": consume_aiormq}[args.consumer](
            args.url, args.expect
        )
        return
    vhost = f"alertd-bench-{os.getpid()}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    url = f"{args.amqp.rstrip('/')}/{vhost}"
    try:
        stream, expected = amqp_stream(args.events)
        frames = publish_frames(stream)
        print(
            f"{len(stream)} messages, {expected} events (task.multi batches of 8, heartbeats), Python "
            f"{sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}"
        )
        rates: dict[str, list[float]] = {}
        with tempfile.TemporaryDirectory() as tmp:
            modes = [m for m in args.only if m != "aiormq" or _has_aiormq()]
            # Rounds interleave the consumers, so a burst of other work on the machine lands on
            # all of them rather than on one; the median of each is what the ratios use.
            for round_ in range(1, args.rounds + 1):
                for mode in modes:
                    if mode == "alertd-run":
                        n, secs, rss = run_daemon_drain(url, Path(tmp), frames, expected)
                    else:
                        n, secs, rss = run_consumer(mode, url, frames, expected)
                    rates.setdefault(mode, []).append(n / secs)
                    print(
                        f"round {round_}: {LABELS[mode]:48s} {n:>9d} events in {secs:6.2f}s = "
                        f"{n / secs:>9,.0f} events/s, RSS +{rss:.0f} MiB, load {os.getloadavg()[0]:.2f}",
                        flush=True,
                    )
            results = {mode: statistics.median(r) for mode, r in rates.items()}
            for mode, rate in results.items():
                print(f"median {LABELS[mode]:48s} {rate:>9,.0f} events/s")
            for mode in ("alertd", "alertd-run", "aiormq"):
                if mode in results and "celery" in results:
                    print(f"ratio {mode} / bare EventReceiver: {results[mode] / results['celery']:.2f}x")
            if args.loss_seconds:
                rate = args.loss_rate or results.get("celery")
                if not rate:
                    print("loss check skipped: give --loss-rate or run the celery baseline")
                else:
                    sustained_loss_check(url, Path(tmp), stream, rate, args.loss_seconds)
    finally:
        rabbitmqctl("delete_vhost", vhost)


if __name__ == "__main__":
    main()
