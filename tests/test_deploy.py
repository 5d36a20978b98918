"""The deploy/ bundle is valid: compose file, Kubernetes schemas, every config and rule file."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from alertd.cli import main
from alertd.observe.exposition import TASK_STATES
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"


def test_compose_file_is_valid() -> None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        cmd = ["docker", "compose", "-f", str(DEPLOY / "docker-compose.yml"), "config", "-q"]
    elif shutil.which("docker-compose"):
        cmd = ["docker-compose", "-f", str(DEPLOY / "docker-compose.yml"), "config", "-q"]
    else:
        pytest.fail("neither `docker compose` nor `docker-compose` is installed (apt-get install docker-compose)")
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=DEPLOY)
    assert proc.returncode == 0, proc.stderr


def test_kubernetes_manifests_match_their_schemas() -> None:
    import kubernetes_validate

    docs = [d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "alertd.yaml").read_text()) if d]
    assert {d["kind"] for d in docs} == {"ConfigMap", "Secret", "Deployment", "Service"}
    for doc in docs:
        kubernetes_validate.validate(doc, "1.30", strict=True)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 2
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


# What a deployment provides beside the config: the secrets its receivers name (check builds
# every receiver, as run does, so an unset variable or a missing secret file fails it).
DEPLOY_SECRETS = {
    "PD_INTEGRATION_KEY": "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6",
    "PD_API_KEY": "u+Kbq7aZnsxY1ZXvs8a9",
    "SMTP_USER": "alertd",
    "SMTP_PASSWORD": "secret",
    "PAGERDUTY_URL": "pagerduty://a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6@u+Kbq7aZnsxY1ZXvs8a9",
    "SLACK_URL": "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ",
    "SLACK_BOT_TOKEN": "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy",
}


def deployed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str) -> Path:
    """The config as it runs: secrets in the environment, secret files where it looks for them."""
    for name, value in DEPLOY_SECRETS.items():
        monkeypatch.setenv(name, value)
    for path in re.findall(r"apprise_file: ([^\s,}]+)", text):
        secret = tmp_path / Path(path).name
        secret.write_text(DEPLOY_SECRETS["SLACK_URL"] + "\n")
        text = text.replace(path, str(secret))
    for path in re.findall(r"tokens_file: ([^\s,}]+)", text):
        secret = tmp_path / Path(path).name
        secret.write_text("")  # `alertd token add` fills it; empty is valid
        text = text.replace(f"tokens_file: {path}", f"tokens_file: {secret}")
    cfg = tmp_path / "alertd.yaml"
    cfg.write_text(text)
    return cfg


@pytest.mark.parametrize("config", ["alertd.yaml", "alertd-compose.yaml"])
def test_alertd_check_passes_on_deploy_configs(
    config: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cfg = deployed(monkeypatch, tmp_path, (DEPLOY / config).read_text())
    assert main(["-c", str(cfg), "check", str(ROOT / "rules")]) == 0, capsys.readouterr().err


def test_alertd_check_fails_on_a_deploy_config_whose_secrets_are_missing(capsys: pytest.CaptureFixture[str]) -> None:
    for name in DEPLOY_SECRETS:
        assert name not in os.environ or pytest.skip(f"{name} is set in this environment")
    assert main(["-c", str(DEPLOY / "alertd.yaml"), "check", str(ROOT / "rules")]) == 1
    err = capsys.readouterr().err
    assert "PD_INTEGRATION_KEY is not set" in err and "slack-payments-url" in err


def test_alertd_check_passes_on_the_kubernetes_configmaps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = {d["metadata"]["name"]: d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "alertd.yaml").read_text())}
    deployed(monkeypatch, tmp_path, docs["alertd-config"]["data"]["alertd.yaml"])
    rules = tmp_path / "rules"
    rules.mkdir()
    for name, text in docs["alertd-rules"]["data"].items():
        (rules / name).write_text(text)
    assert main(["-c", str(tmp_path / "alertd.yaml"), "check", str(rules), str(ROOT / "rules")]) == 0


def test_grafana_dashboard_uses_metrics_alertd_exports() -> None:
    dash = json.loads((DEPLOY / "grafana" / "alertd-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exported = {
        *(f"celery_task_{s}_total" for s in TASK_STATES),
        "celery_task_runtime_bucket",
        "celery_queue_length",
        "celery_worker_up",
        "alertd_events_total",
        "alertd_events_malformed_total",
        "alertd_stream_connected",
        "alertd_stream_reconnects_total",
        "alertd_notifications_sent_total",
        "alertd_notifications_failed_total",
        "alertd_rule_tick_seconds",
        "alertd_rule_config_last_reload_successful",
        "alertd_workers_tracked",
        "alertd_tasks_tracked",
        "alertd_tasks_evicted_total",
    }
    for expr in exprs:
        for name in re.findall(r"\b((?:celery|alertd)_[a-z_]+)\b", expr):
            if "(" in name or name.endswith("_"):
                continue
            assert name in exported, f"{name} in the dashboard is not a metric alertd exports"


def test_systemd_unit_is_hardened_and_runs_alertd() -> None:
    unit = (DEPLOY / "systemd" / "alertd.service").read_text()
    for setting in (
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "DynamicUser=yes",
        "StateDirectory=alertd",
        "EnvironmentFile=",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ):
        assert setting in unit
    assert re.search(r"^ExecStart=\S+/alertd --config \S+ run$", unit, re.M)


def _claimed_defaults(path: Path) -> list[tuple[tuple[str | int, ...], object]]:
    """(path, value) of every setting the file shows as a default: not under a key whose line is
    marked `# example`. Mappings of settings are walked; any other value is one setting."""
    from alertd.yamlfile import load_yaml

    doc = load_yaml(path)
    lines = path.read_text().splitlines()

    def example(loc: tuple[str | int, ...]) -> bool:
        return any("example" in lines[doc.lines[loc[:i]] - 1].partition(" #")[2] for i in range(1, len(loc) + 1))

    out: list[tuple[tuple[str | int, ...], object]] = []

    def walk(value: object, loc: tuple[str | int, ...]) -> None:
        if loc and example(loc):
            return
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(v, (*loc, k))
        else:
            out.append((loc, value))

    walk(doc.data, ())
    return out


def test_what_deploy_alertd_yaml_calls_a_default_is_the_default() -> None:
    """It said its values are the defaults unless marked: broker, store, tokens and receivers were not."""
    from alertd.config import Config

    defaults = Config()
    claimed = _claimed_defaults(DEPLOY / "alertd.yaml")
    assert len(claimed) >= 40  # every section shows its settings
    wrong = set()
    for loc, value in claimed:
        given: object = value
        for part in reversed(loc):
            given = {part: given}
        parsed: object = Config.model_validate(given)
        default: object = defaults
        for i, part in enumerate(loc):
            if not isinstance(default, BaseModel):  # a section that is not there by default (route)
                wrong.add(f"{'.'.join(map(str, loc[:i]))}: shown as a default, the default is {default!r}")
                break
            parsed, default = getattr(parsed, str(part)), getattr(default, str(part))
        else:
            if parsed != default:
                wrong.add(f"{'.'.join(map(str, loc))}: shows {value!r}, the default is {default!r}")
    assert not wrong, "\n".join(sorted(wrong))
