"""The CLI as a user types it: clear errors, routes test, token creation."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from alertd.auth import Auth, hash_token
from tests.conftest import ROOT


def alertd(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alertd", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def test_run_refuses_to_start_with_a_receiver_that_cannot_load(tmp_path: Path) -> None:
    (tmp_path / "alertd.yaml").write_text(
        'receivers: [{name: pager, apprise: ["${NOT_SET_FOR_TEST}"]}]\nroute: {receiver: pager}\nrule_files: []\n'
    )
    out = alertd("-c", "alertd.yaml", "run", "--listen", "127.0.0.1:0", cwd=tmp_path)
    assert out.returncode == 2
    assert "receiver 'pager': environment variable NOT_SET_FOR_TEST is not set" in out.stderr
    assert "Traceback" not in out.stderr


def test_run_refuses_to_start_with_broken_rules_and_says_where(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "x.yaml").write_text(
        "groups:\n  - name: g\n    rules:\n      - alert: X\n        metric: nope\n        above: 1\n"
    )
    out = alertd("run", "--listen", "127.0.0.1:0", cwd=tmp_path, env={"ALERTD_CONFIG": ""})
    assert out.returncode == 2
    assert "rules/x.yaml:5: groups[0].rules[0].metric: unknown metric 'nope'" in out.stderr


def test_routes_test_prints_receivers_and_path(tmp_path: Path) -> None:
    (tmp_path / "alertd.yaml").write_text("""
receivers: [{name: team}, {name: oncall}]
route:
  receiver: team
  group_by: [alertname]
  routes:
    - {matchers: ['severity="critical"'], receiver: oncall, continue: true}
""")
    out = alertd(
        "-c", "alertd.yaml", "routes", "test", "alertname=X", "severity=critical", "--verify-receivers", cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("oncall\n") and '{} → {severity="critical"}' in out.stdout
    assert "receiver team: OK (console://)" in out.stdout


def test_token_add_prints_a_token_once_and_stores_only_its_hash(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    out = alertd("token", "add", "ana", "--role", "silence", "--file", str(tokens), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    assert token.startswith("alertd_") and token not in tokens.read_text()
    assert tokens.read_text().strip() == f"ana silence {hash_token(token)}"
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
    auth = Auth.from_files(tokens, None)
    assert auth.authenticate(f"Bearer {token}").name == "ana"


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", "a.yaml", "--log-level", "debug", "run"],
        ["run", "--config", "a.yaml", "--log-level", "debug"],
        ["-c", "a.yaml", "check", "--log-level", "debug"],
        ["check", "-c", "a.yaml", "--log-level", "debug", "rules/"],
        ["silence", "add", 'queue="q"', "--comment", "deploy", "--config", "a.yaml", "--log-level", "debug"],
    ],
)
def test_global_options_go_before_or_after_the_subcommand(argv: list[str]) -> None:
    """promtool and amtool habits: `alertd run --config FILE` was refused ("unrecognized arguments")."""
    from alertd.cli import build_parser

    args = build_parser().parse_args(argv)
    assert (args.config, args.log_level) == ("a.yaml", "debug")


def test_a_subcommand_without_global_options_keeps_the_defaults() -> None:
    from alertd.cli import build_parser

    args = build_parser().parse_args(["check"])
    assert args.config is None and args.log_level in ("debug", "info", "warning", "error")
    assert build_parser().parse_args(["silence", "add", 'queue="q"', "-c", "why"]).comment == "why"
