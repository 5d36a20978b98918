"""Auth and limits over HTTP: refused writes get 401/403 and change nothing, a fresh install is
read-only, basic auth for Grafana, body limits, CORS, and no secret in any response."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from alertd.api.app import make_app
from alertd.auth import Role
from alertd.store.base import HistoryQuery
from tests.api_fixtures import (
    ADMIN_TOKEN,
    GRAFANA_PASSWORD,
    GRAFANA_USER,
    READ_TOKEN,
    SILENCE_TOKEN,
    SINK_SECRET,
    Harness,
    api_fixture,  # noqa: F401 (registers the fixture)
    api_open_fixture,  # noqa: F401
    api_sqlite_fixture,  # noqa: F401
    rfc,
    store_url_fixture,  # noqa: F401
)


def silence_body(h: Harness) -> dict[str, Any]:
    now = h.clock.now()
    return {
        "matchers": ['queue="payments"'],
        "startsAt": rfc(now),
        "endsAt": rfc(now + 3600),
        "createdBy": "mallory",
        "comment": "x",
    }


async def snapshot(h: Harness) -> tuple[Any, ...]:
    """Everything a write could change: store versions, documents, history."""
    store = h.daemon.store
    return (
        await store.version("silence"),
        await store.version("maintenance"),
        await store.all("silence"),
        await store.all("maintenance"),
        [e.to_dict() for e in await store.history(HistoryQuery(limit=1000))],
    )


async def test_unauthenticated_and_wrong_role_writes_are_refused_and_change_nothing(api: Harness) -> None:
    existing = await api.silence(['queue="etl"'])
    mw = {"matchers": ['queue="etl"'], "time_intervals": [{"weekdays": ["sunday"]}], "comment": "x"}
    writes: list[tuple[str, str, Any, Role]] = [
        ("POST", "/api/v2/silences", silence_body(api), Role.SILENCE),
        ("POST", "/api/v2/silences", {**silence_body(api), "id": existing}, Role.SILENCE),
        ("DELETE", f"/api/v2/silence/{existing}", None, Role.SILENCE),
        ("POST", "/api/alertd/v1/maintenance", mw, Role.SILENCE),
        ("DELETE", "/api/alertd/v1/maintenance/mw-x", None, Role.SILENCE),
        ("POST", "/-/reload", None, Role.ADMIN),
        ("POST", "/api/alertd/v1/receivers/hook/test", None, Role.ADMIN),
        ("POST", "/api/v2/alerts", [], Role.ADMIN),
    ]
    before = await snapshot(api)
    for method, path, body, role in writes:
        for token, status in [(None, 401), ("not-a-token", 401), (READ_TOKEN, 403)] + (
            [(SILENCE_TOKEN, 403)] if role is Role.ADMIN else []
        ):
            r = await api.call(method, path, body, token=token)
            assert r.status == status, (method, path, token, r.status, r.text)
            assert r.body["error"]
            if status == 401:
                assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert await snapshot(api) == before
    assert api.daemon.silences.mutes({"queue": "payments"}, api.clock.now()) == []
    assert (await api.get(f"/api/v2/silence/{existing}"))["status"]["state"] == "active"
    # with a token the readers are refused, reads need at least `read`
    assert (await api.call("GET", "/api/v2/alerts", token=None)).status == 401
    assert (await api.call("GET", "/api/v2/silences", token="wrong")).status == 401
    assert (await api.call("GET", "/metrics", token=None)).status == 401
    # probes answer anyone, even a caller with a stale token
    assert (await api.call("GET", "/healthz", token=None)).status == 200
    assert (await api.call("GET", "/readyz", token="revoked-long-ago")).status == 200


async def test_every_write_route_needs_more_than_read(api_sqlite: Harness) -> None:
    """A new POST/DELETE route added without a role would be open to readers: catch it here."""
    app = make_app(api_sqlite.daemon)
    read_only_posts = {"/api/alertd/v1/silences/preview"}  # computes, stores nothing
    signed_links = {"/link/{action}"}  # no token: the link's signature is the permission (tests/test_ack.py)
    checked = 0
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter", "")
        if route.method in ("GET", "HEAD") or path in read_only_posts | signed_links:
            continue
        assert getattr(route.handler, "role", None) in (Role.SILENCE, Role.ADMIN), (route.method, path)
        checked += 1
    assert checked == 8  # update this count when a write route is added


async def test_writes_are_recorded_with_their_author(api_sqlite: Harness) -> None:
    sid = await api_sqlite.silence(['queue="etl"'], token=SILENCE_TOKEN)
    r = await api_sqlite.call("POST", "/-/reload", token=ADMIN_TOKEN)
    assert r.status == 200 and r.body["ok"] is True
    await api_sqlite.call("DELETE", f"/api/v2/silence/{sid}", token=ADMIN_TOKEN)
    writes = await api_sqlite.get("/api/alertd/v1/history", params={"kind": "api"})
    assert [(w["author"], w["reason"]) for w in writes] == [("root", "silence expired"), ("ops", "silence created")]
    assert writes[1]["detail"]["matchers"] == ['queue="etl"']


async def test_a_fresh_install_without_tokens_is_read_only(api_open: Harness) -> None:
    assert await api_open.get("/api/v2/alerts", token=None) == []
    assert await api_open.get("/api/alertd/v1/whoami", token=None) == {
        "name": "anonymous",
        "role": "read",
        "auth_enabled": False,
        "can_silence": False,
        "can_admin": False,
    }
    r = await api_open.call("POST", "/api/v2/silences", silence_body(api_open), token=None)
    assert r.status == 403 and "alertd token add" in r.body["error"]
    assert await api_open.daemon.store.all("silence") == []


async def test_basic_auth_for_tools_that_only_speak_it(api_sqlite: Harness) -> None:
    def hdr(user: str, pw: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}

    r = await api_sqlite.call("GET", "/api/v2/status", token=None, headers=hdr(GRAFANA_USER, GRAFANA_PASSWORD))
    assert r.status == 200
    who = await api_sqlite.call("GET", "/api/alertd/v1/whoami", token=None, headers=hdr(GRAFANA_USER, GRAFANA_PASSWORD))
    assert who.body["name"] == GRAFANA_USER and who.body["role"] == "read"
    assert (await api_sqlite.call("GET", "/api/v2/status", token=None, headers=hdr(GRAFANA_USER, "no"))).status == 401
    body = silence_body(api_sqlite)
    r = await api_sqlite.call("POST", "/api/v2/silences", body, token=None, headers=hdr(GRAFANA_USER, GRAFANA_PASSWORD))
    assert r.status == 403


async def test_limits_and_cors(api_sqlite: Harness) -> None:
    big = b'{"comment": "' + b"x" * 70_000 + b'"}'
    r = await api_sqlite.call("POST", "/api/v2/silences", big, token=SILENCE_TOKEN)
    assert r.status == 413 and r.body["error"]
    assert await api_sqlite.daemon.store.all("silence") == []
    origin = {"Origin": "https://grafana.example"}
    pre = await api_sqlite.call("OPTIONS", "/api/v2/silences", token=None, headers=origin)
    assert pre.status == 204 and pre.headers["Access-Control-Allow-Origin"] == "https://grafana.example"
    assert "Authorization" in pre.headers["Access-Control-Allow-Headers"]
    got = await api_sqlite.call("GET", "/api/v2/alerts", headers=origin)
    assert got.headers["Access-Control-Allow-Origin"] == "https://grafana.example"
    other = await api_sqlite.call("GET", "/api/v2/alerts", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


@pytest.mark.parametrize(
    "path",
    [
        "/api/v2/status",
        "/api/v2/receivers",
        "/api/v2/silences",
        "/api/v2/alerts",
        "/api/v2/alerts/groups",
        "/api/alertd/v1/rules",
        "/api/alertd/v1/history",
        "/api/alertd/v1/health",
        "/api/alertd/v1/whoami",
        "/api/alertd/v1/maintenance",
        "/metrics",
    ],
)
async def test_no_secret_in_any_response(api_sqlite: Harness, path: str) -> None:
    api_sqlite.fail_task()
    await api_sqlite.step(2)  # a notification went out: history holds a delivery record
    await api_sqlite.silence(['task="billing.charge"'])
    r = await api_sqlite.call("GET", path, token=ADMIN_TOKEN)
    assert r.status == 200
    for secret in (SINK_SECRET, SILENCE_TOKEN, READ_TOKEN, ADMIN_TOKEN, GRAFANA_PASSWORD, "sha256:"):
        assert secret not in r.text, (path, secret)


async def test_test_send_reaches_the_receiver_and_hides_its_url(api_sqlite: Harness, sink: Any) -> None:
    r = await api_sqlite.call("POST", "/api/alertd/v1/receivers/hook/test", token=ADMIN_TOKEN)
    assert r.status == 200 and r.body["ok"] is True, r.text
    assert len(sink.requests) == 1
    assert SINK_SECRET not in r.text
    assert (await api_sqlite.call("POST", "/api/alertd/v1/receivers/nope/test", token=ADMIN_TOKEN)).status == 404
