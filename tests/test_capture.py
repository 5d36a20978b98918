"""`alertd capture` records a real worker's events as JSON lines, as the observer receives them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from tests.conftest import ROOT


def test_capture_writes_real_events_and_stops_at_count(
    redis_url: str, unique: str, tmp_path: Path, celery_worker_factory: Any
) -> None:
    out = tmp_path / "events.jsonl"
    # A private key prefix (from the config file): other tests publish events on db 13 too.
    prefix = f"capt-{unique}:"
    config = tmp_path / "alertd.yaml"
    config.write_text(f"broker: {redis_url}\nbroker_transport_options: {{global_keyprefix: '{prefix}'}}\n")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "alertd",
            "--config",
            str(config),
            "capture",
            "-o",
            str(out),
            "--count",
            "3",
            "--duration",
            "30s",
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    # worker-online and heartbeats
    celery_worker_factory(redis_url, queues=[f"q-{unique}"], extra_env={"ALERTD_TEST_KEYPREFIX": prefix})
    _, err = proc.communicate(timeout=40)
    assert proc.returncode == 0, err
    assert "3 events written" in err
    events = [e for line in out.read_bytes().splitlines() if "alertd" not in (e := orjson.loads(line))]
    assert len(events) == 3
    assert all(e["type"].startswith("worker-") and isinstance(e["local_received"], float) for e in events)


def test_capture_records_samples_and_the_streams_outage_from_a_real_broker(
    redis_server: Any, tmp_path: Path, celery_worker_factory: Any
) -> None:
    """The sampler's rounds and the stream's disconnect/reconnect, from a redis-server killed and restarted."""
    import signal
    import time

    from alertd.samples import BrokerSample, QueueSample, WorkerSample
    from alertd.sources.jsonl import StreamMark, read_lines
    from tests.conftest import wait_until

    out = tmp_path / "day.jsonl"
    worker = celery_worker_factory(redis_server.url, queues=["reports"], name="rec")
    argv = ["capture", "--broker", redis_server.url, "-o", str(out), "--sample-interval", "1s"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "alertd", *argv, "--queue", "reports", "--queue", "idle"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )

    def items() -> list[Any]:
        return [x for _, x in read_lines(out)] if out.exists() else []

    try:
        wait_until(
            lambda: any(isinstance(x, WorkerSample) and x.pool_size for x in items()), timeout=30, what="a sample"
        )
        redis_server.kill()
        wait_until(lambda: any(isinstance(x, BrokerSample) and not x.ok for x in items()), timeout=15, what="a miss")
        time.sleep(1)
        redis_server.start()
        wait_until(lambda: sum(isinstance(x, StreamMark) for x in items()) >= 3, timeout=30, what="the reconnect")
        wait_until(lambda: isinstance(items()[-1], BrokerSample) and items()[-1].ok, timeout=15, what="a good round")
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    got = items()
    assert None not in got
    marks = [x for x in got if isinstance(x, StreamMark)]
    assert [m.connected for m in marks] == [True, False, True], marks
    assert marks[1].error
    workers = [x for x in got if isinstance(x, WorkerSample) and x.pool_size]
    assert {(w.worker, w.queues, w.pool_size) for w in workers} == {(worker.hostname, ("reports",), 2)}
    assert all(w.memory_bytes and w.cpu_seconds is not None for w in workers)
    queues = {x.queue: x for x in got if isinstance(x, QueueSample)}
    # a round whose broadcast no worker answered (the worker still reconnecting after the
    # restart) knows no consumer counts (None); the rounds it answered count idle's as 0
    idle = {x.consumers for x in got if isinstance(x, QueueSample) and x.queue == "idle"}
    assert set(queues) == {"reports", "idle"} and 0 in idle and idle <= {0, None}, idle
    broker = [x.ok for x in got if isinstance(x, BrokerSample)]
    assert broker[0] and not all(broker) and broker[-1], broker
    # in time order: the outage's failed rounds fall between the disconnect and the reconnect
    failed = [x.at for x in got if isinstance(x, BrokerSample) and not x.ok]
    assert marks[1].at <= min(failed) and max(failed) <= marks[2].at
    assert "written to" in err and "samples and stream marks" in err
