"""`alertd check` refuses what `alertd run` refuses: it builds everything `run` builds before it
connects (receivers with their ${VAR}s and URLs, templates, auth files), and opens nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

RULES = """
groups:
  - name: g
    rules:
      - alert: TaskFailed
        event: task-failed
        by: [task]
"""

BROKEN = {
    "unset env var": (
        'apprise: ["pagerduty://${ALERTD_TEST_UNSET_KEY}@${ALERTD_TEST_UNSET_API}"]',
        "ALERTD_TEST_UNSET_KEY",
    ),
    "unknown scheme": ('apprise: ["xyz://example.com/hook"]', "Apprise does not accept the URL xyz://***"),
    "missing apprise_file": ("apprise_file: no-such-urls.txt", "no-such-urls.txt"),
    "missing template": ('apprise: ["json://127.0.0.1:9/hook"]\n    template: no-such-template.j2', "no-such-template"),
}


def setup(tmp_path: Path, receiver: str, api: str = "") -> Path:
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "rules" / "r.yaml").write_text(RULES)
    cfg = tmp_path / "alertd.yaml"
    cfg.write_text(
        'broker: "redis://127.0.0.1:6379/13"\nrule_files: [rules/*.yaml]\nstore: "sqlite:///state.db"\n'
        f"api: {{listen: 127.0.0.1:0{api}}}\nreceivers:\n  - name: hook\n    {receiver}\nroute: {{receiver: hook}}\n"
    )
    return cfg


def alertd(cfg: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ALERTD_TEST_UNSET_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "alertd", "-c", str(cfg), *argv],
        capture_output=True, text=True, timeout=60, cwd=cfg.parent, env=env,
    )  # fmt: skip


@pytest.mark.parametrize("case", list(BROKEN))
def test_check_fails_where_run_refuses_to_start(tmp_path: Path, case: str) -> None:
    receiver, says = BROKEN[case]
    cfg = setup(tmp_path, receiver)
    run = alertd(cfg, "run")
    assert run.returncode == 2 and says in run.stderr, run.stderr
    check = alertd(cfg, "check")
    assert check.returncode == 1, (check.stdout, check.stderr)
    assert says in check.stderr and "alertd.yaml" in check.stderr
    assert not (tmp_path / "state.db").exists()  # neither opened the store


def test_check_names_file_line_and_every_broken_receiver(tmp_path: Path) -> None:
    cfg = setup(tmp_path, BROKEN["unset env var"][0])
    cfg.write_text(
        cfg.read_text().replace("route:", '  - name: other\n    apprise: ["xyz://example.com/hook"]\nroute:')
    )
    check = alertd(cfg, "check")
    assert check.returncode == 1
    assert f"{cfg}:7: receivers[0].apprise: receiver 'hook': environment variable ALERTD_TEST_UNSET_KEY" in check.stderr
    assert f"{cfg}:9: receivers[1].apprise: receiver 'other': Apprise does not accept" in check.stderr
    assert "2 problems found" in check.stderr


def test_check_builds_the_auth_files_as_run_does(tmp_path: Path) -> None:
    cfg = setup(tmp_path, 'apprise: ["json://127.0.0.1:9/hook"]', api=", tokens_file: no-such-tokens")
    assert "no-such-tokens" in alertd(cfg, "run").stderr
    check = alertd(cfg, "check")
    assert check.returncode == 1 and "no-such-tokens" in check.stderr, check.stderr


def test_a_sound_config_passes_and_nothing_is_opened(tmp_path: Path) -> None:
    cfg = setup(tmp_path, 'apprise: ["json://127.0.0.1:9/hook"]')
    check = alertd(cfg, "check")
    assert check.returncode == 0, check.stderr
    assert "1 rules in 1 files" in check.stdout
    assert not (tmp_path / "state.db").exists()
