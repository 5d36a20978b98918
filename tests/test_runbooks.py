"""Every `alertd ...` command a runbook of the default pack tells the operator to run parses with
the CLI, its matchers parse, an alertname it names is an alert that exists, and it runs against a
live alertd. (CeleryTaskFailureRateHigh once sent people to `alertname=CeleryTaskFailed`.)"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess

import pytest

from alertd.cli import build_parser
from alertd.matchers import Op, parse_matcher
from alertd.rules import engine
from alertd.rules.loader import load_rules
from tests.api_fixtures import ThreadedHarness, threaded_api_fixture  # noqa: F401 (registers the fixture)
from tests.conftest import ROOT
from tests.test_silence_cli import cli

PACK = [ROOT / "rules" / "celery.yaml", *sorted((ROOT / "rules" / "examples").glob("*.yaml"))]
COMMAND = re.compile(r"`(alertd\s[^`]+)`")
# alerts alertd raises about itself, besides the pack's
META_ALERTS = {v for k, v in vars(engine).items() if k.endswith("_ALERT") and isinstance(v, str)}


def rule_names() -> set[str]:
    return {r.name for r in load_rules(PACK).rules()}


def runbook_commands() -> list[tuple[str, str]]:
    """(rule, command) for each backquoted `alertd ...` in a runbook, rendered as a page shows it."""
    out = []
    for path in PACK:
        for rule in load_rules([path]).rules():
            runbook = rule.annotations.get("runbook")
            if runbook is None:
                continue
            labels = {"alertname": rule.name, **{b: f"example-{b}" for b in rule.spec.by}}
            out += [(rule.name, cmd) for cmd in COMMAND.findall(runbook.render(labels, 1.0))]
    return out


def parse(command: str) -> argparse.Namespace:
    try:
        return build_parser().parse_args(shlex.split(command)[1:])
    except SystemExit as e:
        raise AssertionError(f"`{command}` does not parse with the CLI (exit {e.code})") from None


def test_the_pack_names_alertd_commands_in_its_runbooks() -> None:
    rules = {rule for rule, _ in runbook_commands()}
    assert "CeleryTaskFailureRateHigh" in rules, rules


@pytest.mark.parametrize(("rule", "command"), runbook_commands(), ids=[r for r, _ in runbook_commands()])
def test_a_runbook_command_parses_and_names_alerts_that_exist(rule: str, command: str) -> None:
    args = parse(command)
    known = rule_names() | META_ALERTS
    for text in getattr(args, "matchers", None) or []:
        m = parse_matcher(text)  # raises, naming the matcher, if it does not parse
        if m.name == "alertname" and m.op in (Op.EQ, Op.RE):
            named = sorted(a for a in known if m.matches({"alertname": a}))
            assert named, f"{rule}: `{command}` names no alert that exists ({text})"


def test_the_runbook_commands_run_against_alertd(threaded_api: ThreadedHarness) -> None:
    for rule, command in runbook_commands():
        done: subprocess.CompletedProcess[str] = cli(threaded_api, *shlex.split(command)[1:])
        assert done.returncode == 0, f"{rule}: `{command}` -> {done.returncode}: {done.stderr}"


def test_a_wrong_alertname_is_caught() -> None:
    m = parse_matcher("alertname=CeleryTaskFailed")
    assert not any(m.matches({"alertname": a}) for a in rule_names() | META_ALERTS)
