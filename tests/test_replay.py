"""`alertd run --replay`: a capture goes through the same pipeline on virtual time, to the console only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from tests.conftest import ROOT
from tests.waiting import T0


def test_replay_fires_and_resolves_on_virtual_time_and_skips_bad_lines(tmp_path: Path) -> None:
    lines = []
    for i in range(5):
        t, u = T0 + i * 10, f"u{i}"
        lines += [
            {
                "type": "task-received",
                "uuid": u,
                "name": "billing.charge",
                "hostname": "celery@w",
                "timestamp": t,
                "local_received": t,
            },
            {
                "type": "task-started",
                "uuid": u,
                "hostname": "celery@w",
                "timestamp": t + 0.1,
                "local_received": t + 0.1,
            },
            {
                "type": "task-failed",
                "uuid": u,
                "hostname": "celery@w",
                "exception": "TimeLimitExceeded(5,)",
                "timestamp": t + 5,
                "local_received": t + 5,
            },
        ]
    capture = tmp_path / "events.jsonl"
    capture.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines) + b"not json\n")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yaml").write_text("""
groups:
  - name: g
    interval: 5s
    rules:
      - alert: TimeLimit
        event: task-failed
        matchers: ['exception="TimeLimitExceeded"']
        by: [task]
        resolve_after: 20s
""")
    # a real receiver in the config must NOT be paged by old events: replay goes to the console
    (tmp_path / "alertd.yaml").write_text("""
rule_files: [rules/*.yaml]
receivers: [{name: pager, apprise: ["json://127.0.0.1:9/never"]}]
route: {receiver: pager}
""")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "alertd",
            "-c",
            str(tmp_path / "alertd.yaml"),
            "run",
            "--replay",
            str(capture),
            "--replay-tail",
            "2m",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "[alertd → console] [FIRING:1] TimeLimit" in proc.stdout
    assert "[alertd → console] [RESOLVED] TimeLimit" in proc.stdout
    assert "replayed 15 events (1 malformed); 1 alerts fired, 1 resolved" in proc.stdout
    assert "events.jsonl:16: not a captured event" in proc.stderr
