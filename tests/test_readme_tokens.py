"""The README's token steps, run as written: they used to append a second `api:` key to a config
that had one, said the API is read-only without a token while a tokens file makes reads need one
too, and said "restart" where a reload picks new tokens up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from alertd.auth import Auth
from alertd.config import Config, load_config
from tests.conftest import REDIS_URL, ROOT, free_port, wait_until
from tests.daemon_fixtures import Api, alertd_process  # noqa: F401 (registers the fixture)
from tests.docs_fixtures import block_after

README = ROOT / "README.md"
MARKER = "give yourself a token"


def run_shell_block(tmp: Path) -> str:
    """The README's shell lines, with the checkout's alertd for `.venv/bin/alertd`; their stdout."""
    script = block_after(README, MARKER, "sh").text.replace(".venv/bin/alertd", f"{sys.executable} -m alertd")
    out = subprocess.run(
        ["bash", "-euc", script],
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT), "ALERTD_CONFIG": ""},
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def readme_config() -> dict[str, object]:
    doc = yaml.safe_load(block_after(README, "create it with", "yaml").text)
    assert isinstance(doc, dict)
    return doc


def test_the_steps_give_a_token_the_config_finds(tmp_path: Path) -> None:
    token = run_shell_block(tmp_path).splitlines()[0]
    (tmp_path / "alertd.yaml").write_text(yaml.safe_dump(readme_config()))
    config = load_config(tmp_path / "alertd.yaml")
    assert config.api.tokens_file is not None
    auth = Auth.from_files(config.path(config.api.tokens_file), None)
    assert auth.authenticate(f"Bearer {token}").name == "me"


def test_the_snippet_goes_into_an_existing_api_section(tmp_path: Path) -> None:
    """What the README says to do with a config that has `api:` already: one `api:` key, both settings."""
    existing = tmp_path / "alertd.yaml"
    existing.write_text("api:\n  listen: 0.0.0.0:9093\nrule_files: []\n")
    assert "api:" in existing.read_text()
    # appending the snippet, as the old `echo ... >>` did, is refused: a duplicate key
    with pytest.raises(Exception, match="duplicate key"):
        load_config(existing, text=existing.read_text() + yaml.safe_dump(readme_config()))
    merged = yaml.safe_load(existing.read_text())
    merged["api"].update(readme_config()["api"])  # type: ignore[union-attr]
    existing.write_text(yaml.safe_dump(merged))
    config = load_config(existing)
    assert (config.api.listen, config.api.tokens_file) == ("0.0.0.0:9093", "tokens")


def test_with_a_tokens_file_reads_need_a_token_and_a_reload_picks_new_tokens_up(
    tmp_path: Path,
    alertd_process,  # noqa: F811
) -> None:
    token = run_shell_block(tmp_path).splitlines()[0]
    port = free_port()
    config = readme_config()
    config["api"] = {**config["api"], "listen": f"127.0.0.1:{port}"}  # type: ignore[dict-item]
    # the rest as a test needs it: this test's Redis database, state and no rules in the temp dir
    config.update(broker=REDIS_URL, store=f"sqlite:///{tmp_path}/state.db", rule_files=[])
    (tmp_path / "alertd.yaml").write_text(yaml.safe_dump(config))
    daemon = alertd_process(tmp_path / "alertd.yaml", port)
    api = Api(f"http://127.0.0.1:{port}")
    assert api.call("GET", "/api/v2/alerts")[0] == 401  # reads too, once there is a tokens file
    assert api.call("GET", "/api/v2/alerts", token=token)[0] == 200
    assert api.call("GET", "/")[0] == 200 and api.call("GET", "/healthz")[0] == 200

    # a second token, found through the config as the README says; a reload, no restart
    added = subprocess.run(
        [sys.executable, "-m", "alertd", "-c", "alertd.yaml", "token", "add", "viewer", "--role", "read"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert added.returncode == 0, added.stderr
    viewer = added.stdout.splitlines()[0]
    assert api.call("GET", "/api/v2/alerts", token=viewer)[0] == 401
    assert daemon.proc is not None
    pid = daemon.proc.pid
    os.kill(pid, signal.SIGHUP)
    wait_until(lambda: api.call("GET", "/api/v2/alerts", token=viewer)[0] == 200, timeout=10, what="reload")
    assert daemon.proc.pid == pid and daemon.proc.poll() is None  # the same process


async def test_an_alertd_started_without_a_config_needs_a_restart_to_find_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why the README says restart the first time: a reload re-reads the file alertd started with."""
    from alertd.daemon import Daemon

    monkeypatch.chdir(tmp_path)
    daemon = Daemon(Config())  # `make run` in a fresh clone: the built-in defaults
    run_shell_block(tmp_path)
    (tmp_path / "alertd.yaml").write_text(yaml.safe_dump(readme_config()))
    await daemon.reload()
    assert not daemon.auth.enabled
