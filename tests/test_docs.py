"""The docs against what they describe: what they say the page shows is on it, every `alertd`
command in their code blocks parses with the CLI, and every config snippet, rule snippet and rule
test passes `alertd check` / `alertd test` (in-process)."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import shutil
from pathlib import Path

import pytest
import yaml

from alertd.cli import build_parser
from alertd.yamlfile import FileError
from tests.conftest import ROOT
from tests.docs_fixtures import DOCS, Block, blocks

UI = ROOT / "alertd" / "ui" / "static"


def health_tab_text() -> str:
    """The Health tab as the page builds it: its section in index.html and app.js's loadHealth."""
    html = (UI / "index.html").read_text()
    section = html[html.index('id="tab-health"') : html.index("</section>", html.index('id="tab-health"'))]
    js = (UI / "app.js").read_text()
    load = js[js.index("async function loadHealth") :]
    return section + load[: load.index("\n}\n")]


def test_what_the_docs_say_the_health_tab_shows_is_on_it() -> None:
    """docs/troubleshooting.md said the Health tab lists each worker's queues: it has no queue."""
    shown = health_tab_text().lower()
    for doc in DOCS:
        for sentence in re.split(r"(?<=[.;)])\s", doc.read_text()):
            if "health tab" not in sentence.lower():
                continue
            claim = re.sub(r",?\s+not\s+(their\s+)?\w+", "", sentence.lower())  # "…, not their queues" is no claim
            for word in ("queue", "broker", "worker", "heartbeat", "memory", "pool", "replica", "version"):
                if word in claim:
                    assert word in shown, f"{doc.name}: {sentence.strip()!r}: the Health tab shows no {word}"


# -- commands and config snippets in code blocks ------------------------------------------------

SHELL_LANGS = ("sh", "bash", "console", "shell")


def shell_commands(block: Block) -> list[list[str]]:
    """Each simple command of a shell block as words: continuations joined, comments and a
    leading `$ ` dropped, split at `&&`, `||`, `;` and `|`, environment assignments dropped."""
    out: list[list[str]] = []
    for line in block.text.replace("\\\n", " ").splitlines():
        line = line.strip().removeprefix("$ ")
        try:
            words = shlex.split(line, comments=True)
        except ValueError:  # an open quote: a JSON body spread over lines (curl -d '{...}')
            continue
        command: list[str] = []
        for w in [*words, ";"]:
            if w in ("&&", "||", ";", "|"):
                while command and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", command[0]):
                    command.pop(0)
                if command:
                    out.append(command)
                command = []
            else:
                command.append(w)
    return out


def alertd_commands() -> list[tuple[str, list[str]]]:
    """(where, argv after `alertd`) for every alertd command in a shell block of the docs."""
    return [
        (b.where, words[1:])
        for doc in DOCS
        for b in blocks(doc)
        if b.lang in SHELL_LANGS
        for words in shell_commands(b)
        if Path(words[0]).name == "alertd"
    ]


def test_the_docs_have_alertd_commands_to_check() -> None:
    found = {" ".join(argv[:2]) for _, argv in alertd_commands()}
    assert {"token add", "silence add", "silence preview", "--version"} <= found, found


@pytest.mark.parametrize(("where", "argv"), alertd_commands(), ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_every_alertd_command_in_the_docs_parses(where: str, argv: list[str]) -> None:
    """Parsed by the CLI's own parser, nothing run: a renamed option or command fails here."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(argv)
    except SystemExit as e:
        assert e.code == 0, f"{where}: alertd {' '.join(argv)}\n{err.getvalue()}"


def test_every_make_target_in_the_docs_exists() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, re.M))
    for doc in DOCS:
        for b in blocks(doc):
            for words in shell_commands(b) if b.lang in SHELL_LANGS else []:
                if words[0] == "make":
                    assert set(w for w in words[1:] if "=" not in w) <= targets, f"{b.where}: {words}"


def yaml_snippets(kind: str) -> list[Block]:
    """The docs' YAML blocks of one kind: `config` (top-level keys of alertd.yaml), `rules` (a
    rule file, or a list of rules as a group's `rules:` holds), `tests` (a rule test file)."""
    from alertd.config import Config

    out = []
    for doc in DOCS:
        for b in blocks(doc):
            if b.lang not in ("yaml", "yml"):
                continue
            data = yaml.safe_load(b.text)
            if isinstance(data, dict) and "tests" in data:
                found = "tests"
            elif (isinstance(data, dict) and "groups" in data) or (
                isinstance(data, list) and all(isinstance(r, dict) and "alert" in r for r in data)
            ):
                found = "rules"
            elif isinstance(data, dict) and set(data) <= set(Config.model_fields):
                found = "config"
            else:
                found = "other"
            if found == kind:
                out.append(b)
    return out


def test_the_docs_yaml_blocks_are_all_checked() -> None:
    """A YAML block of none of the kinds would go unchecked: a config snippet with a misspelt
    top-level key lands here. (Another kind of YAML, Kubernetes say, needs its own check.)"""
    assert [b.where for b in yaml_snippets("other")] == []
    assert len(yaml_snippets("config")) >= 5 and len(yaml_snippets("rules")) >= 3


@pytest.mark.parametrize("doc", sorted({b.file for b in yaml_snippets("config")}), ids=lambda p: p.name)
def test_the_config_snippets_of_each_doc_pass_alertd_check(
    doc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A doc's config snippets together, as the pieces of one alertd.yaml (routes name the
    receivers and time intervals another snippet defines), checked as `alertd check config`
    checks a file: models, cross references, receivers with their secrets, the daemon built."""
    from alertd.cli.check import built
    from alertd.config import load_config
    from tests.test_deploy import deployed

    merged: dict[str, object] = {}
    for b in yaml_snippets("config"):
        if b.file == doc:
            part = yaml.safe_load(b.text)
            assert not set(part) & set(merged), f"{b.where}: a second {sorted(set(part) & set(merged))}"
            merged.update(part)
    merged.setdefault("rule_files", [])
    monkeypatch.chdir(tmp_path)
    config = load_config(deployed(monkeypatch, tmp_path, yaml.safe_dump(merged, sort_keys=False)))
    assert [str(p) for p in built(config)] == []


def test_the_rule_snippets_pass_alertd_check(tmp_path: Path) -> None:
    from alertd.rules.loader import load_rules

    for i, b in enumerate(yaml_snippets("rules")):
        data = yaml.safe_load(b.text)
        text = b.text if isinstance(data, dict) else yaml.safe_dump({"groups": [{"name": "doc", "rules": data}]})
        path = tmp_path / f"{i}.yaml"
        path.write_text(text)
        try:
            load_rules([path])
        except FileError as e:
            pytest.fail(f"{b.where}:\n{e}")


def test_the_rule_test_snippets_pass_alertd_test(tmp_path: Path) -> None:
    """The docs' rule test, run against the rule pack it names, as `alertd test` runs it."""
    from alertd.ruletest import run_test_files

    (tmp_path / "rules").mkdir()
    shutil.copy(ROOT / "rules" / "celery.yaml", tmp_path / "rules")
    (tmp_path / "tests" / "rules").mkdir(parents=True)  # rule_files: [../../rules/...] from there
    snippets = yaml_snippets("tests")
    assert snippets
    for i, b in enumerate(snippets):
        path = tmp_path / "tests" / "rules" / f"{i}.yaml"
        path.write_text(b.text)
        results = run_test_files([path], None)
        assert results and all(r.ok for r in results), f"{b.where}: {[r.message for r in results if not r.ok]}"
