"""What schemathesis found against a real `alertd run`: history kinds missing from alertd's
OpenAPI enum, 405s without `Allow`, v2 400 bodies that were objects where Alertmanager's spec has
a string, and `generatorURL: ""` where the spec wants a URI (now the alert on alertd's page)."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from tests.api_fixtures import SPEC
from tests.conftest import ROOT, free_port
from tests.daemon_fixtures import ADMIN_TOKEN, READ_TOKEN, SILENCE_TOKEN, Api, DaemonProcess, wait_until, write_setup
from tests.test_redos import fail_task

OPENAPI = yaml.safe_load(resources.files("alertd.api").joinpath("openapi-alertd.yaml").read_text())


def alertd_schema(name: str) -> dict[str, Any]:
    return {"components": OPENAPI["components"], "$ref": f"#/components/schemas/{name}"}


def spec_error(status: int) -> dict[str, Any]:
    return {"BadRequest": SPEC["responses"]["BadRequest"]["schema"], "InternalServerError": {"type": "string"}}[
        {400: "BadRequest", 500: "InternalServerError"}[status]
    ]


@pytest.fixture
def daemon(tmp_path: Path, redis_url: str, unique: str, alertd_process: Any) -> DaemonProcess:
    """Its one receiver points at a closed port: every page is retried once, then fails."""
    port = free_port()
    cfg = write_setup(
        tmp_path, broker=redis_url, store="sqlite:///state.db", sink_url="json://127.0.0.1:9/hook", port=port,
        keyprefix=f"{unique}:",
    )  # fmt: skip
    cfg.write_text(cfg.read_text().replace("retries: 0", "retries: 1\n    retry_backoff: 0.2s"))
    d: DaemonProcess = alertd_process(cfg, port)
    fail_task(redis_url, f"{unique}:", "billing.charge", "ValueError('boom')")
    return d


def history(api: Api) -> list[dict[str, Any]]:
    return api.get("/api/alertd/v1/history", query="limit=1000")  # type: ignore[no-any-return]


def test_every_history_entry_conforms_to_alertd_openapi_retries_included(daemon: DaemonProcess) -> None:
    api = daemon.api
    wait_until(
        lambda: {"retry", "dead_letter"} <= {e["kind"] for e in history(api)},
        timeout=30,
        what="a retry, then a dead letter",
    )
    validator = jsonschema.Draft202012Validator(alertd_schema("HistoryEntry"))
    for entry in history(api):
        validator.validate(entry)


def test_generator_url_links_to_the_alert_on_alertd_s_page(daemon: DaemonProcess) -> None:
    api = daemon.api
    wait_until(lambda: api.get("/api/v2/alerts"), timeout=20, what="the alert")
    (alert,) = api.get("/api/v2/alerts")
    url = urlsplit(alert["generatorURL"])
    assert (url.scheme, url.netloc, url.path, url.fragment) == (
        "http",
        api.base.removeprefix("http://"),
        "/",
        f"alert={alert['fingerprint']}",
    )
    (mine,) = api.get("/api/alertd/v1/alerts")
    assert mine["generatorURL"] == alert["generatorURL"]
    assert api.call("GET", "/", token=None)[0] == 200  # the page, which opens on #alert=FINGERPRINT


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/api/v2/silences", {"GET", "POST"}),
        ("PATCH", "/api/v2/silence/00000000-0000-0000-0000-000000000000", {"GET", "DELETE"}),
        ("DELETE", "/api/alertd/v1/history", {"GET"}),
    ],
)
def test_a_405_says_which_methods_are_allowed(
    tmp_path: Path, redis_url: str, unique: str, alertd_process: Any, method: str, path: str, allowed: set[str]
) -> None:
    port = free_port()
    cfg = write_setup(
        tmp_path, broker=redis_url, store="sqlite:///state.db", sink_url="json://127.0.0.1:9/h", port=port
    )
    api = alertd_process(cfg, port).api
    req = urllib.request.Request(api.base + path, data=b"{}", method=method)
    req.add_header("Authorization", f"Bearer {SILENCE_TOKEN}")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 405
    assert allowed <= {m.strip() for m in e.value.headers["Allow"].split(",")}, e.value.headers["Allow"]


def test_v2_error_bodies_are_the_string_alertmanager_s_spec_has(
    tmp_path: Path, redis_url: str, unique: str, alertd_process: Any
) -> None:
    port = free_port()
    cfg = write_setup(
        tmp_path, broker=redis_url, store="sqlite:///state.db", sink_url="json://127.0.0.1:9/h", port=port
    )
    api = alertd_process(cfg, port).api
    for method, path, body, query in [
        ("GET", "/api/v2/alerts", None, 'filter=task%3D~"(%3F%3Dx)"'),
        ("GET", "/api/v2/alerts/groups", None, "active=maybe"),
        ("GET", "/api/v2/silences", None, "filter=%7B"),
        ("POST", "/api/v2/silences", {"matchers": []}, ""),
        ("POST", "/api/v2/silences", b"{not json", ""),
        ("POST", "/api/v2/alerts", [], ""),
    ]:
        token = ADMIN_TOKEN if path == "/api/v2/alerts" and method == "POST" else SILENCE_TOKEN
        status, doc = api.call(method, path, body, token=token, query=query)
        assert status == 400, (path, status, doc)
        jsonschema.validate(doc, spec_error(400))
        assert doc, path  # says what was wrong
    status, doc = api.call("GET", "/api/v2/silence/00000000-0000-0000-0000-000000000000", token=READ_TOKEN)
    assert status == 404 and isinstance(doc, str) and "not found" in doc
    # alertd's own API keeps its {"error": ...} objects
    status, doc = api.call("GET", "/api/alertd/v1/history", token=READ_TOKEN, query="limit=x")
    assert status == 400 and "limit" in doc["error"]
    # and the CLI shows a v2 error as the message it is
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ALERTD_URL": api.base, "ALERTD_TOKEN": SILENCE_TOKEN}
    out = subprocess.run(
        [sys.executable, "-m", "alertd", "silence", "expire", "00000000-0000-0000-0000-000000000000"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert out.returncode == 1 and "silence 00000000-0000-0000-0000-000000000000 not found" in out.stderr
    assert '"silence' not in out.stderr, out.stderr
