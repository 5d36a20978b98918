"""CLI start-up: the commands an operator types during an incident load neither Celery, Apprise
nor aiohttp (nor pydantic when nothing needs the config). Checked by what a fresh process imported,
not by timing it (bench/cli.py has the times)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port

# Runs the CLI in a fresh interpreter, then prints the top-level packages it imported.
PROBE = """
import sys
from alertd.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("MODULES", " ".join(sorted({m.split(".")[0] for m in sys.modules})))
"""
NEVER = {"celery", "kombu", "apprise", "aiohttp", "jinja2"}


def imported(argv: list[str], cwd: Path) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(cwd)},
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("MODULES "))
    return set(line.split()[1:])


def test_version_imports_no_heavy_package(tmp_path: Path) -> None:
    modules = imported(["--version"], tmp_path)
    assert "alertd" in modules
    assert not modules & (NEVER | {"pydantic", "yaml"}), modules & (NEVER | {"pydantic", "yaml"})


@pytest.mark.parametrize(
    "argv",
    [
        ["silence", "query"],
        ["silence", "add", 'alertname="X"', "--comment", "deploy"],
        ["silence", "expire", "0000"],
        ["alert", "query"],
        ["ack", "x", "-m", "on it"],
    ],
)
def test_api_commands_import_neither_celery_apprise_nor_aiohttp(tmp_path: Path, argv: list[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nobody listens: the command fails fast, after its imports
    modules = imported([*argv, "--url", url], tmp_path)
    assert not modules & (NEVER | {"pydantic"}), modules & (NEVER | {"pydantic"})


def test_routes_test_loads_the_config_but_not_the_delivery_stack(tmp_path: Path) -> None:
    (tmp_path / "alertd.yaml").write_text(
        "route: {receiver: oncall, routes: [{matchers: ['severity=\"critical\"'], receiver: oncall}]}\n"
        "receivers: [{name: oncall, apprise: ['json://127.0.0.1:1/hook']}]\n"
    )
    modules = imported(["routes", "test", "alertname=X", "severity=critical"], tmp_path)
    assert "pydantic" in modules  # it did read the config
    assert not modules & NEVER, modules & NEVER
