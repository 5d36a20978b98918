"""What `alertd check` says about a broken file, in words a config editor can act on: YAML syntax
errors name the likely cause (indentation, a tab, an unquoted `: `) as well as PyYAML's text, and a
template filter typo gets the "did you mean" that a metric typo gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from alertd.cli import main

RULE = """groups:
  - name: g
    rules:
      - alert: X
        event: task-failed
{by}        annotations:
          summary: {summary}
"""

CASES = {
    # name: (by line, summary, line, what the hint says)
    "indentation": ("       by: [task]\n", "failed", 6, "indentation does not match the lines above"),
    "tab": ("\tby: [task]\n", "failed", 6, "a tab in the indentation; YAML indents with spaces only"),
    "unquoted colon": ("", "queue is: full", 7, "quote a value that contains `: `"),
    "unquoted template": ("", "{{ labels.task }} failed", 7, "quote a template"),
    "unclosed quote": ("", "'failed", 7, "a quote opened here is never closed"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_yaml_syntax_errors_say_what_is_likely_wrong_with_file_and_line(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    by, summary, line, hint = CASES[case]
    (tmp_path / "r.yaml").write_text(RULE.format(by=by, summary=summary))
    monkeypatch.chdir(tmp_path)
    assert main(["check", "rules", "r.yaml"]) == 1
    err = capsys.readouterr().err
    assert f"r.yaml:{line}: invalid YAML: " in err and hint in err, err
    assert "(YAML says: " in err  # PyYAML's own words stay, for searching


def test_the_hint_for_a_block_end_error_is_about_indentation(tmp_path: Path) -> None:
    """The issue's example: `expected <block end>, but found '?'`."""
    from alertd.yamlfile import FileError, load_yaml

    with pytest.raises(FileError) as e:
        load_yaml("a.yaml", "receivers:\n  - name: a\n  route: {}\n")
    assert str(e.value) == (
        "a.yaml:3: invalid YAML: a `- ` list item and a `key:` at one indentation: one of them is"
        " indented wrongly (YAML says: expected <block end>, but found '?')"
    )


@pytest.mark.parametrize(
    "summary",
    ['"{{ value | duratoin }}"', '"{% if value %}{{ value | duratoin }}{% endif %}"'],
    ids=["plain", "in an if block"],
)
def test_a_filter_typo_in_a_rule_template_gets_did_you_mean(
    summary: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Inside `{% if %}` Jinja only fails at render time: the page would say <template error>."""
    (tmp_path / "r.yaml").write_text(RULE.format(by="", summary=summary))
    monkeypatch.chdir(tmp_path)
    assert main(["check", "rules", "r.yaml"]) == 1
    err = capsys.readouterr().err
    assert "r.yaml:7: groups[0].rules[0].annotations.summary: bad template: no filter named 'duratoin';" in err
    assert "did you mean 'duration'?" in err


def test_a_filter_typo_in_a_notification_template_gets_did_you_mean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "page.j2").write_text(
        "{% block title %}{{ status }}{% endblock %}\n{% block body %}\n"
        "{% for a in alerts %}{% if a.value %}{{ a.duration | duratoin }}{% endif %}{% endfor %}\n{% endblock %}\n"
    )
    (tmp_path / "alertd.yaml").write_text(
        "rule_files: []\nreceivers: [{name: team, template: page.j2}]\nroute: {receiver: team}\n"
    )
    (tmp_path / "r.yaml").write_text(RULE.format(by="", summary="failed"))
    monkeypatch.chdir(tmp_path)
    assert main(["check", "config", "alertd.yaml"]) == 1
    err = capsys.readouterr().err
    assert "template 'page.j2' line 3: no filter named 'duratoin'; did you mean 'duration'?" in err, err
