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
    events = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert len(events) == 3
    assert all(e["type"].startswith("worker-") and isinstance(e["local_received"], float) for e in events)
