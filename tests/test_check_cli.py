"""`alertd check` as promtool users type it: `check config FILE`, `check rules PATH...`, and plain
`check PATH...` recognising a config from a rule file (it used to read alertd.yaml as rules)."""

from __future__ import annotations

from pathlib import Path

import pytest

from alertd.cli import main

RULES = """
groups:
  - name: g
    rules:
      - alert: TaskFailed
        event: task-failed
        by: [task]
"""

CONFIG = """
broker: redis://localhost:6379/0
rule_files: [rules/*.yaml]
receivers: [{name: team}]
route: {receiver: team}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "g.yaml").write_text(RULES)
    (tmp_path / "alertd.yaml").write_text(CONFIG)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ALERTD_CONFIG", raising=False)
    return tmp_path


def test_plain_check_of_a_config_checks_it_as_a_config_with_its_rule_files(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`alertd check alertd.yaml` reported every top-level key as an unknown rule-file key."""
    assert main(["check", "alertd.yaml"]) == 0, capsys.readouterr().err
    assert "1 rules in 1 files and " in capsys.readouterr().out


def test_check_config_file(project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "config", "alertd.yaml"]) == 0, capsys.readouterr().err
    assert "1 rules in 1 files and alertd.yaml: OK" in capsys.readouterr().out
    (project / "alertd.yaml").write_text(CONFIG + "recievers: []\n")
    assert main(["check", "config"]) == 1  # the config found where `run` looks
    assert "unknown key 'recievers'; did you mean 'receivers'?" in capsys.readouterr().err


def test_check_rules_reads_only_rules(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "alertd.yaml").write_text("broker: nope\n")  # not read by `check rules`
    assert main(["check", "rules", "rules/g.yaml"]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out == "1 rules in 1 files: OK\n"
    assert main(["check", "rules"]) == 0  # ./rules, the directory, as `check rules` always meant


def test_a_config_given_as_rules_says_which_command_was_meant(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "rules", "alertd.yaml"]) == 1
    err = capsys.readouterr().err
    assert "alertd.yaml: this is an alertd config, not a rule file: alertd check config alertd.yaml" in err
    assert "unknown key" not in err


def test_rules_given_as_a_config_say_which_command_was_meant(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "config", "rules/g.yaml"]) == 1
    err = capsys.readouterr().err
    assert "rules/g.yaml: this is a rule file (top-level `groups`), not an alertd config" in err
    assert "alertd check rules rules/g.yaml" in err


def test_plain_check_of_a_directory_holding_both(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "rules" / "alertd.yaml").write_text("rule_files: [g.yaml]\n")
    assert main(["check", "rules/"]) == 0, capsys.readouterr().err
    assert "1 rules in 1 files and " in capsys.readouterr().out


def test_usage_errors(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "rules" / "g.yaml").rename(project / "g.yaml")
    (project / "rules").rmdir()
    assert main(["check", "rules"]) == 2
    assert main(["check", "config", "a.yaml", "b.yaml"]) == 2
    assert "usage: alertd check [config [FILE] | rules PATH... | PATH...]" in capsys.readouterr().err
