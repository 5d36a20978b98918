"""The default rule pack: it loads, its tests pass, each test fails when its rule is changed,
and broken rule files get the documented error with file and line."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from alertd.cli import main
from alertd.rules.loader import load_rules
from alertd.ruletest import run_test_files
from tests.conftest import ROOT

PACK = [ROOT / "rules" / "celery.yaml", ROOT / "rules" / "examples" / "periodic.yaml"]
RULE_TESTS = ROOT / "tests" / "rules"


def pack_rules() -> list[tuple[Path, str]]:
    return [(path, r.name) for path in PACK for r in load_rules([path]).rules()]


def test_check_passes_on_the_pack(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(ROOT / "rules"), str(ROOT / "rules" / "examples")]) == 0
    assert "34 rules in 2 files: OK" in capsys.readouterr().out


def test_every_rule_test_passes_and_every_rule_has_one(tmp_path: Path) -> None:
    results = run_test_files(sorted(RULE_TESTS.glob("*.yaml")))
    failures = [f"{r.name}: {r.message}" for r in results if not r.ok]
    assert not failures, "\n".join(failures)
    tested = {r.name.split(" ", 1)[0] for r in results}
    untested = {name for _, name in pack_rules()} - tested
    assert not untested, f"rules without a test: {sorted(untested)}"
    junit = tmp_path / "junit.xml"
    assert main(["test", str(RULE_TESTS), "--junit", str(junit)]) == 0
    assert junit.read_text().count("<testcase") == len(results)


def _mutate(rule: dict[str, Any], what: str) -> None:
    if what == "threshold":
        if "above" in rule:
            rule["above"] = rule["above"] * 1.5 if rule["above"] > 0 else rule["above"] + 1
        elif "below" in rule:
            rule["below"] = rule["below"] - max(1, abs(rule["below"]) * 0.5)
        elif "absent" in rule:
            rule["absent"]["within"] = "39h"  # 1.5 x 26h
        else:
            rule["min_count"] = rule.get("min_count", 1) + 1
    else:
        current = rule.get("for")
        rule["for"] = "10m" if not current else f"{2 * _seconds(current)}s"


def _seconds(text: str) -> int:
    from alertd.durations import parse_duration

    return int(parse_duration(text))


@pytest.mark.parametrize("what", ["threshold", "for"])
@pytest.mark.parametrize(("path", "name"), pack_rules(), ids=[n for _, n in pack_rules()])
def test_rule_test_fails_when_its_rule_changes(tmp_path: Path, path: Path, name: str, what: str) -> None:
    """A mutation of the rule must turn its own test red: the test pins the rule's numbers."""
    (tmp_path / "rules" / "examples").mkdir(parents=True)
    for p in PACK:
        shutil.copy(p, tmp_path / p.relative_to(ROOT))
    shutil.copytree(RULE_TESTS, tmp_path / "tests" / "rules")
    target = tmp_path / path.relative_to(ROOT)
    data = yaml.safe_load(target.read_text())
    rule = next(r for g in data["groups"] for r in g["rules"] if r["alert"] == name)
    _mutate(rule, what)
    target.write_text(yaml.safe_dump(data, sort_keys=False))
    results = run_test_files(sorted((tmp_path / "tests" / "rules").glob("*.yaml")), run=f"^{name} ")
    assert results, f"no test for {name}"
    assert not all(r.ok for r in results), f"{name}: changing its {what} did not fail any of its tests"


BROKEN = {
    "unknown_metric.yaml": (5, "metric: unknown metric 'task_failure_rate'; did you mean 'task_failure_ratio'?"),
    "bad_duration.yaml": (6, "window: expected a duration like 30s, 5m or 1h30m"),
    "bad_regex.yaml": (7, "matchers[0]: invalid regex 'billing.(charge'"),
    "unknown_key.yaml": (8, "keep_firing: unknown key 'keep_firing'; did you mean 'keep_firing_for'?"),
    "by_label_missing.yaml": (6, "by[0]: metric queue_length has no label 'task'; its labels are queue"),
    "above_and_below.yaml": (6, "above: a metric rule needs exactly one of `above` or `below`"),
    "bad_template.yaml": (8, "annotations.summary: bad template: unexpected '}'"),
    "recover_above_threshold.yaml": (8, "recover_below: must be at most `above` (0.05)"),
    "missing_stat.yaml": (4, "stat: task_runtime_seconds is a distribution: pick a `stat`"),
    "yes_is_not_a_boolean.yaml": (6, "above: Input should be a valid number"),
    "duplicate_key.yaml": (7, "above: duplicate key"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_rule_file_names_file_line_and_field(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = ROOT / "tests" / "fixtures" / "rules_broken" / name
    line, message = BROKEN[name]
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:{line}: groups[0].rules[0].{message}" in err, err
