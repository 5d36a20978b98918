"""Secrets in alertd.yaml never reach API output, wherever in the config they sit: redaction goes
by key name (password, token, api_key, ...) and by URL, not by a list of known fields."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from alertd.redact import REDACTED, redact_config
from tests.conftest import ROOT, free_port
from tests.daemon_fixtures import READ_TOKEN, write_setup

SENTINEL_PASSWORD = "s3ntinel-pa55word-9f1c"
WEBHOOK_SECRET = "T000-B000-xoxb-webhook-secret"
URL_PASSWORD = "url-pa55word-77aa"


def test_status_shows_the_config_without_a_secret_anywhere_in_it(
    tmp_path: Path, redis_url: str, unique: str, http_sink: Any, alertd_process: Any
) -> None:
    port = free_port()
    cfg = write_setup(
        tmp_path, broker=redis_url, store="sqlite:///state.db", sink_url=http_sink.url(path=f"/hook/{WEBHOOK_SECRET}"),
        port=port, keyprefix=f"{unique}:",
    )  # fmt: skip
    text = cfg.read_text().replace(
        f'broker_transport_options: {{global_keyprefix: "{unique}:"}}',
        f'broker_transport_options: {{global_keyprefix: "{unique}:", '
        f'sentinel_kwargs: {{password: "{SENTINEL_PASSWORD}", socket_timeout: 1}}}}',
    )
    assert SENTINEL_PASSWORD in text
    text = text.replace(
        "tokens_file: tokens}", f'tokens_file: tokens, external_url: "https://ops:{URL_PASSWORD}@alertd.example/"}}'
    )
    cfg.write_text(text)
    daemon = alertd_process(cfg, port)

    # the whole config is /api/alertd/v1/config; /api/v2/status has only the routing, by receiver name
    shown = daemon.api.get("/api/alertd/v1/config", token=READ_TOKEN)
    assert shown["broker_transport_options"] == {
        "global_keyprefix": f"{unique}:",
        "sentinel_kwargs": {"password": REDACTED, "socket_timeout": 1},
    }
    assert shown["receivers"][0]["apprise"] == [f"json://127.0.0.1:{http_sink.port}"]  # no path: it holds the key
    assert shown["api"]["external_url"] == "https://***@alertd.example"
    assert shown["api"]["tokens_file"] == "tokens"  # where the secret is, not the secret
    routing = yaml.safe_load(daemon.api.get("/api/v2/status", token=READ_TOKEN)["config"]["original"])
    assert routing["receivers"] == [{"name": "hook"}, {"name": "console"}]
    paths = ("/api/v2/status", "/api/alertd/v1/config", "/api/alertd/v1/health", "/api/v2/receivers")
    for path in (*paths, "/api/alertd/v1/rules"):
        status_code, body = daemon.api.call("GET", path, token=READ_TOKEN)
        assert status_code == 200
        for secret in (SENTINEL_PASSWORD, WEBHOOK_SECRET, URL_PASSWORD):
            assert secret not in str(body), (path, secret)
    for secret in (SENTINEL_PASSWORD, WEBHOOK_SECRET, URL_PASSWORD):
        assert secret not in daemon.output()


@pytest.mark.parametrize(
    ("doc", "shown"),
    [
        ({"password": "x"}, {"password": REDACTED}),
        ({"a": [{"apiKey": "x", "name": "n"}]}, {"a": [{"apiKey": REDACTED, "name": "n"}]}),
        ({"opts": {"Authorization": "Bearer x"}}, {"opts": {"Authorization": REDACTED}}),
        ({"client_secret": ["x", "y"]}, {"client_secret": REDACTED}),
        ({"password": ""}, {"password": ""}),  # nothing to hide, and it says it is unset
        (
            {"global_keyprefix": "p:", "basic_auth_file": "users"},
            {"global_keyprefix": "p:", "basic_auth_file": "users"},
        ),
        ({"anything": "redis://:pw@h:6379/0"}, {"anything": "redis://***@h:6379/0"}),
    ],
)
def test_redaction_goes_by_key_name_at_any_depth(doc: dict[str, Any], shown: dict[str, Any]) -> None:
    assert redact_config(doc) == shown


def test_a_receiver_url_apprise_refuses_is_not_logged_whole(tmp_path: Path) -> None:
    """Apprise logs a URL it does not support as it is (here a typo: no colon after https)."""
    (tmp_path / "alertd.yaml").write_text(
        f'receivers:\n  - name: hook\n    apprise: ["https//hooks.example.com/services/{WEBHOOK_SECRET}"]\n'
        "route: {receiver: hook}\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "alertd", "-c", str(tmp_path / "alertd.yaml"), "run"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert out.returncode != 0 and "receiver 'hook'" in out.stderr, out.stderr
    assert WEBHOOK_SECRET not in out.stderr + out.stdout
