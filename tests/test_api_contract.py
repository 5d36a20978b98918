"""The Alertmanager v2 API as amtool, Grafana and Karma call it, validated against the reference
spec, on both stores; a silence made through it mutes a real notification until it is expired."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alertd.silence.silences import Silences
from tests.api_fixtures import (
    SILENCE_TOKEN,
    SINK_SECRET,
    Harness,
    api_fixture,  # noqa: F401 (registers the fixture)
    api_sqlite_fixture,  # noqa: F401
    conforms,
    rfc,
    start_harness,
    store_url_fixture,  # noqa: F401
    write_config,
)
from tests.notify_fixtures import Sink


def pages(sink: Sink) -> list[dict[str, Any]]:
    return [r["json"] for r in sink.requests if r["path"].startswith("/hook")]


async def firing(api: Harness) -> dict[str, Any]:
    api.fail_task()
    await api.step(0.1)
    alerts = await api.get("/api/v2/alerts")
    assert [a["labels"]["alertname"] for a in alerts] == ["TaskFailed"], alerts
    return dict(alerts[0])


async def test_every_v2_response_conforms_to_the_reference_spec(api: Harness, sink: Sink) -> None:
    status = await api.get("/api/v2/status")
    conforms(status, "alertmanagerStatus")
    assert status["cluster"]["name"] == "test-replica"
    assert SINK_SECRET not in status["config"]["original"]  # receiver URLs are redacted
    conforms(await api.get("/api/v2/receivers"), "[receiver]")
    assert {r["name"] for r in await api.get("/api/v2/receivers")} >= {"hook"}
    conforms(await api.get("/api/v2/alerts"), "[gettableAlert]")
    conforms(await api.get("/api/v2/silences"), "[gettableSilence]")

    await firing(api)
    await api.step(1)  # group_wait passes: the page goes out
    assert len(pages(sink)) == 1
    sid = await api.silence(['task="billing.charge"'])
    # what amtool, Grafana and Karma ask for, with the query parameters they send
    for params in (
        None,
        {"active": "true", "silenced": "true", "inhibited": "true", "unprocessed": "true"},
        {"silenced": "false", "inhibited": "false", "active": "true"},
        [("filter", 'alertname="TaskFailed"'), ("filter", 'severity=~"crit.*"')],
        {"receiver": "hook|other"},
    ):
        conforms(await api.get("/api/v2/alerts", params=params), "[gettableAlert]")
        conforms(await api.get("/api/v2/alerts/groups", params=params), "[alertGroup]")
    conforms(await api.get("/api/v2/silences"), "[gettableSilence]")
    conforms(await api.get("/api/v2/silences", params={"filter": 'task="billing.charge"'}), "[gettableSilence]")
    conforms(await api.get(f"/api/v2/silence/{sid}"), "gettableSilence")
    r = await api.call("DELETE", f"/api/v2/silence/{sid}", token=SILENCE_TOKEN)
    assert r.status == 200
    expired = await api.get(f"/api/v2/silence/{sid}")
    conforms(expired, "gettableSilence")
    assert expired["status"]["state"] == "expired"
    groups = await api.get("/api/v2/alerts/groups")
    assert groups[0]["receiver"] == {"name": "hook"} and groups[0]["labels"] == {"alertname": "TaskFailed"}
    # a missing silence is a 404 with a JSON error (a string, as in Alertmanager's spec), not an empty 200
    r = await api.call("GET", "/api/v2/silence/00000000-0000-0000-0000-000000000000")
    assert r.status == 404 and "not found" in r.body


async def test_a_silence_mutes_a_real_notification_and_expiring_it_lets_the_next_through(
    api: Harness, sink: Sink
) -> None:
    alert = await firing(api)
    assert alert["status"] == {"state": "active", "silencedBy": [], "inhibitedBy": [], "mutedBy": []}
    await api.step(1)
    assert len(pages(sink)) == 1 and pages(sink)[0]["type"] in ("failure", "warning", "info", "success")

    sid = await api.silence([{"name": "task", "value": "billing.charge", "isRegex": False, "isEqual": True}])
    alert = (await api.get("/api/v2/alerts"))[0]
    assert alert["status"] == {"state": "suppressed", "silencedBy": [sid], "inhibitedBy": [], "mutedBy": []}
    assert api.daemon.silences.mutes(api.daemon.alerts()[0].labels, api.clock.now()) == [sid]
    assert await api.get("/api/v2/alerts", params={"silenced": "false"}) == []
    # repeat_interval is 3 s: across 10 s of silence, nothing reaches the receiver
    for _ in range(10):
        await api.step(1)
    assert len(pages(sink)) == 1
    kinds = [e["kind"] for e in await api.get("/api/alertd/v1/history")]
    assert "silenced" in kinds

    r = await api.call("DELETE", f"/api/v2/silence/{sid}", token=SILENCE_TOKEN)
    assert r.status == 200
    assert (await api.get("/api/v2/alerts"))[0]["status"]["silencedBy"] == []
    assert api.daemon.silences.mutes(api.daemon.alerts()[0].labels, api.clock.now()) == []
    for _ in range(3):
        await api.step(1)
    assert len(pages(sink)) == 2  # the next repeat goes through
    writes = [(e["author"], e["reason"]) for e in await api.get("/api/alertd/v1/history", params={"kind": "api"})]
    assert ("ops", "silence created") in writes and ("ops", "silence expired") in writes


async def test_amtool_style_update_in_place_and_replace(api_sqlite: Harness) -> None:
    api = api_sqlite
    now = api.clock.now()
    body = {
        "matchers": [{"name": "queue", "value": "payments", "isRegex": False, "isEqual": True}],
        "startsAt": rfc(now),
        "endsAt": rfc(now + 3600),
        "createdBy": "ana",
        "comment": "deploy",
    }
    sid = (await api.call("POST", "/api/v2/silences", body, token=SILENCE_TOKEN)).body["silenceID"]
    # amtool silence update --duration: same matchers, later end → same ID
    r = await api.call("POST", "/api/v2/silences", {**body, "id": sid, "endsAt": rfc(now + 7200)}, token=SILENCE_TOKEN)
    assert r.body == {"silenceID": sid}
    got = await api.get(f"/api/v2/silence/{sid}")
    assert got["endsAt"] == rfc(now + 7200)
    # new matchers → the old one expires, a new ID is returned
    changed = {**body, "id": sid, "matchers": [{"name": "queue", "value": "pay.*", "isRegex": True}]}
    new = (await api.call("POST", "/api/v2/silences", changed, token=SILENCE_TOKEN)).body["silenceID"]
    assert new != sid
    assert (await api.get(f"/api/v2/silence/{sid}"))["status"]["state"] == "expired"
    assert (await api.get(f"/api/v2/silence/{new}"))["status"]["state"] == "active"
    # Grafana sends "id": "" for a new silence
    r = await api.call("POST", "/api/v2/silences", {**body, "id": ""}, token=SILENCE_TOKEN)
    assert r.status == 200 and r.body["silenceID"] not in (sid, new)
    # updating an unknown ID is a 404, not a silent create
    r = await api.call(
        "POST", "/api/v2/silences", {**body, "id": "00000000-0000-0000-0000-000000000000"}, token=SILENCE_TOKEN
    )
    assert r.status == 404


async def test_alertd_endpoints_answer(api_sqlite: Harness, sink: Sink) -> None:
    api = api_sqlite
    alert = await firing(api)
    rules = await api.get("/api/alertd/v1/rules")
    assert [r["name"] for r in rules["rules"]] == ["TaskFailed"] and rules["problems"] == []
    explain = await api.get(f"/api/alertd/v1/alerts/{alert['fingerprint']}/explain")
    assert explain["alert"]["labels"]["task"] == "billing.charge"
    assert (await api.call("GET", "/api/alertd/v1/alerts/nope/explain")).status == 404
    preview = (await api.call("POST", "/api/alertd/v1/silences/preview", {"matchers": ['task=~"billing.*"']})).body
    assert preview["count"] == 1 and preview["matches_everything"] is False
    none = (await api.call("POST", "/api/alertd/v1/silences/preview", {"matchers": ['task="other"']})).body
    assert none["count"] == 0
    health = await api.get("/api/alertd/v1/health")
    assert health["ready"] is True and "observer" in health
    openapi = await api.get("/api/alertd/v1/openapi.json")
    assert openapi["openapi"].startswith("3.") and "/maintenance" in openapi["paths"]
    assert (await api.call("GET", "/healthz", token=None)).status == 200
    assert (await api.call("GET", "/readyz", token=None)).status == 200
    api.daemon.health.connected = False
    r = await api.call("GET", "/readyz", token=None)
    assert r.status == 503 and "not ready" in r.text
    metrics = await api.call("GET", "/metrics")
    assert metrics.status == 200 and "alertd_alerts" in metrics.text


async def test_maintenance_window_ids_in_silenced_by_can_be_looked_up_and_expired(api_sqlite: Harness) -> None:
    api = api_sqlite
    await firing(api)
    body = {
        "matchers": ['task="billing.charge"'],
        "time_intervals": [{"weekdays": ["monday:sunday"], "location": "UTC"}],  # always, for the test
        "comment": "weekly reload",
    }
    r = await api.call("POST", "/api/alertd/v1/maintenance", body, token=SILENCE_TOKEN)
    assert r.status == 201, r.text
    mw = r.body["id"]
    listed = await api.get("/api/alertd/v1/maintenance")
    assert [(m["id"], m["state"], m["created_by"]) for m in listed] == [(mw, "active", "ops")]
    alert = (await api.get("/api/v2/alerts"))[0]
    conforms([alert], "[gettableAlert]")
    assert alert["status"]["silencedBy"] == [mw] and alert["status"]["state"] == "suppressed"
    r = await api.call("GET", f"/api/v2/silence/{mw}")
    assert r.status == 404 and "maintenance window" in r.body
    assert (await api.call("DELETE", f"/api/v2/silence/{mw}", token=SILENCE_TOKEN)).status == 200
    assert (await api.get("/api/v2/alerts"))[0]["status"]["silencedBy"] == []
    assert (await api.get("/api/alertd/v1/maintenance"))[0]["state"] == "expired"
    bad = {**body, "time_intervals": [{"weekdays": ["caturday"]}]}
    r = await api.call("POST", "/api/alertd/v1/maintenance", bad, token=SILENCE_TOKEN)
    assert r.status == 400 and "caturday" in r.body["error"]


async def _silence(api: Harness, name: str, start: float, end: float, **extra: Any) -> str:
    body = {
        "matchers": [{"name": "queue", "value": name, "isRegex": False}],
        "startsAt": rfc(start),
        "endsAt": rfc(end),
        "createdBy": "ana",
        "comment": name,
        **extra,
    }
    r = await api.call("POST", "/api/v2/silences", body, token=SILENCE_TOKEN)
    assert r.status == 200, r.text
    return str(r.body["silenceID"])


async def test_silence_state_filters_and_order_as_alertmanager_0_34(api_sqlite: Harness) -> None:
    """0.34's GET /api/v2/silences?active=&pending=&expired= (each true unless false), and its
    SortSilences order: active by soonest end, pending by soonest start, expired by latest end."""
    api, now = api_sqlite, api_sqlite.clock.now()
    late, soon = await _silence(api, "late", now, now + 7200), await _silence(api, "soon", now, now + 600)
    later, next_ = (
        await _silence(api, "later", now + 900, now + 7200),
        await _silence(api, "next", now + 300, now + 900),
    )
    old, recent = await _silence(api, "old", now, now + 60), await _silence(api, "recent", now, now + 120)
    api.clock.advance(200)

    async def ids(**params: str) -> list[str]:
        return [s["id"] for s in await api.get("/api/v2/silences", params=params or None)]

    assert await ids() == [soon, late, next_, later, recent, old]
    assert await ids(active="true", pending="true", expired="true") == await ids()
    assert await ids(expired="false") == [soon, late, next_, later]
    assert await ids(active="false", pending="false") == [recent, old]
    assert await ids(active="false", expired="false") == [next_, later]
    assert await ids(active="false", pending="false", expired="false") == []
    assert [
        s["id"] for s in await api.get("/api/v2/silences", params=[("filter", 'queue="old"'), ("expired", "true")])
    ] == [old]
    assert await ids(pending="true", active="false", expired="false", filter='queue="next"') == [next_]
    r = await api.call("GET", "/api/v2/silences", params={"expired": "maybe"})
    assert r.status == 400 and "expired" in r.body


async def test_silence_annotations_are_stored_returned_and_updated_in_place(api: Harness) -> None:
    """Alertmanager 0.32+ silences carry free-form annotations; older clients send none."""
    now = api.clock.now()
    sid = await _silence(api, "payments", now, now + 3600, annotations={"ticket": "OPS-123", "kind": "planned"})
    got = await api.get(f"/api/v2/silence/{sid}")
    assert got["annotations"] == {"ticket": "OPS-123", "kind": "planned"}
    plain = await _silence(api, "reports", now, now + 3600)
    assert (await api.get(f"/api/v2/silence/{plain}"))["annotations"] == {}  # required in 0.34's gettableSilence
    # an update of the annotations alone keeps the ID, as Alertmanager's canUpdate does
    same = await _silence(api, "payments", now, now + 3600, id=sid, annotations={"ticket": "OPS-124"})
    assert same == sid and (await api.get(f"/api/v2/silence/{sid}"))["annotations"] == {"ticket": "OPS-124"}
    # stored with the silence: a fresh reader of the same store (another replica) sees them
    other = Silences(api.daemon.store, api.clock)
    await other.load()
    assert other.get(sid).annotations == {"ticket": "OPS-124"} and other.get(plain).annotations == {}
    for bad in ({"ticket": 123}, ["ticket"], "ticket=OPS-1"):
        r = await api.call(
            "POST", "/api/v2/silences",
            {"matchers": ['queue="x"'], "startsAt": rfc(now), "endsAt": rfc(now + 60), "createdBy": "ana",
             "comment": "", "annotations": bad},
            token=SILENCE_TOKEN,
        )  # fmt: skip
        assert r.status == 400 and "annotations" in r.body, (bad, r.text)


async def test_alert_groups_carry_route_labels(api_sqlite: Harness) -> None:
    """0.34's alertGroup requires routeLabels: alertd's routes attach no labels, so it is empty."""
    await firing(api_sqlite)
    [group] = await api_sqlite.get("/api/v2/alerts/groups")
    assert group["routeLabels"] == {} and group["labels"] == {"alertname": "TaskFailed"}


async def test_receiver_matchers_and_muted_groups_as_alertmanager_0_34(tmp_path: Path, sink: Sink) -> None:
    """0.33's `receiver_matchers` (receivers' labels: alertd's have none) and 0.34's `muted=false`
    on groups (leave out groups a time interval mutes). The root route here is muted all week."""
    always = (
        "  mute_time_intervals: [always]\n"
        "time_intervals:\n  - name: always\n    time_intervals: [{weekdays: ['monday:sunday']}]\n"
    )
    cfg = write_config(tmp_path, store=f"sqlite:///{tmp_path}/state.db", sink=sink, extra=always)
    async for api in start_harness(cfg):
        await firing(api)
        [group] = await api.get("/api/v2/alerts/groups")
        assert group["alerts"][0]["status"]["mutedBy"] == ["always"]
        assert await api.get("/api/v2/alerts/groups", params={"muted": "false"}) == []
        assert len(await api.get("/api/v2/alerts/groups", params={"muted": "true"})) == 1
        for params, found in (({"receiver_matchers": 'team="ops"'}, 0), ({"receiver_matchers": 'team!="ops"'}, 1)):
            assert len(await api.get("/api/v2/alerts", params=params)) == found
            assert len(await api.get("/api/v2/alerts/groups", params=params)) == found
            assert len(await api.get("/api/v2/receivers", params=params)) == (2 if found else 0)
        r = await api.call("GET", "/api/v2/receivers", params={"receiver_matchers": "team=~("})
        assert r.status == 400 and r.body.startswith("receiver_matchers:")
        # the status's Alertmanager config cannot put time intervals on the root: it says so
        original = (await api.get("/api/v2/status"))["config"]["original"]
        assert "root route's time intervals (always) apply" in original
