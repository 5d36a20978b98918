"""`alertd notify test` and `alertd routes test` as a user runs them: a real subprocess, a real
HTTP endpoint, exit codes that scripts can trust, and no secret in the output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import free_port
from tests.notify_fixtures import ThreadedSink

ROOT = Path(__file__).resolve().parents[1]


def alertd(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alertd", "-c", "alertd.yaml", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def test_notify_test_sends_a_sample_through_the_real_receiver(tmp_path: Path, http_sink: ThreadedSink) -> None:
    (tmp_path / "alertd.yaml").write_text(
        f'receivers: [{{name: hook, apprise: ["{http_sink.url(path="/try")}"], template: slack}}]\n'
        "route: {receiver: hook}\n"
    )
    out = alertd("notify", "test", "hook", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "sent to hook (json://127.0.0.1:" in out.stdout and "1 attempt" in out.stdout
    (req,) = http_sink.requests
    assert req["path"] == "/try" and req["json"]["title"] == "[FIRING:1] AlertdTestNotification"
    assert "Test notification from alertd to hook" in req["json"]["message"]


def test_notify_test_reports_failure_with_exit_1_and_no_secret(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    (tmp_path / "alertd.yaml").write_text(
        f'receivers: [{{name: hook, apprise: ["json://ops:${{HOOK_PASSWORD}}@127.0.0.1:{port}/x"]}}]\n'
        "route: {receiver: hook}\n"
    )
    out = alertd("notify", "test", "hook", cwd=tmp_path, env={"HOOK_PASSWORD": "hunter2-very-secret"})
    assert out.returncode == 1
    assert "failed to send to hook after 1 attempt(s)" in out.stderr
    assert "hunter2-very-secret" not in out.stdout + out.stderr


def test_notify_test_unknown_receiver_or_unset_variable_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "alertd.yaml").write_text(
        'receivers: [{name: hook, apprise: ["json://127.0.0.1:9/x"]}]\nroute: {receiver: hook}\n'
    )
    out = alertd("notify", "test", "pager", cwd=tmp_path)
    assert out.returncode == 2 and "no receiver named 'pager'; configured: console, hook" in out.stderr
    (tmp_path / "alertd.yaml").write_text(
        'receivers: [{name: hook, apprise: ["${NOT_SET_ANYWHERE}"]}]\nroute: {receiver: hook}\n'
    )
    out = alertd("notify", "test", "hook", cwd=tmp_path)
    assert out.returncode == 2 and "environment variable NOT_SET_ANYWHERE is not set" in out.stderr


def test_routes_test_shows_the_escalation_policy(tmp_path: Path) -> None:
    (tmp_path / "alertd.yaml").write_text("""
receivers: [{name: primary}, {name: secondary}, {name: manager}]
route:
  receiver: primary
  routes:
    - matchers: ['severity="critical"']
      escalate:
        - {after: 15m, receiver: secondary}
        - {after: 45m, receiver: manager}
""")
    out = alertd("routes", "test", "alertname=QueueLong", "severity=critical", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "  escalate unless acknowledged: secondary after 15m, manager after 45m" in out.stdout.splitlines()
    out = alertd("routes", "test", "alertname=QueueLong", "severity=critical", "-o", "json", cwd=tmp_path)
    (route,) = json.loads(out.stdout)["routes"]
    assert route["escalate"] == [{"after": "15m", "receiver": "secondary"}, {"after": "45m", "receiver": "manager"}]
    out = alertd("routes", "test", "alertname=QueueLong", "severity=info", "-o", "json", cwd=tmp_path)
    assert json.loads(out.stdout)["routes"][0]["escalate"] == []  # the root's: none


def test_routes_test_shows_the_path_and_verify_catches_a_broken_template(tmp_path: Path) -> None:
    (tmp_path / "bad.j2").write_text("{% block title %}{{ status }{% endblock %}")
    (tmp_path / "alertd.yaml").write_text("""
receivers:
  - {name: team}
  - {name: payments, template: bad.j2}
route:
  receiver: team
  group_by: [alertname, queue]
  group_wait: 10s
  routes:
    - matchers: ['queue=~"payments.*"']
      receiver: payments
      group_by: ['...']
""")
    out = alertd("routes", "test", "alertname=QueueLong", "queue=payments-eu", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "payments" and '{} → {queue=~"payments.*"}' in lines[1]
    # the group as a label set is written as users write one, not as a Python dict
    assert '{alertname="QueueLong", queue="payments-eu"}' in lines[2] and "wait 10s" in lines[2]
    assert "interval 5m, repeat 4h" in lines[2]
    out = alertd("routes", "test", "alertname=QueueLong", "queue=payments-eu", "-o", "json", cwd=tmp_path)
    doc = json.loads(out.stdout)
    assert [r["receiver"] for r in doc["routes"]] == ["payments"]
    assert doc["routes"][0]["group_labels"] == {"alertname": "QueueLong", "queue": "payments-eu"}
    assert doc["routes"][0]["path"] == ["{}", '{queue=~"payments.*"}'] and doc["routes"][0]["group_wait"] == "10s"
    out = alertd("routes", "test", "alertname=QueueLong", "queue=default", "--verify-receivers", cwd=tmp_path)
    assert out.returncode == 1
    assert out.stdout.startswith("team\n") and "receiver team: OK (console://), template generic" in out.stdout
    assert "receiver 'payments': template 'bad.j2' line 1" in out.stderr
    out = alertd("routes", "test", "queue", cwd=tmp_path)
    assert out.returncode == 2 and "not a label: 'queue' (expected name=value)" in out.stderr
