"""alertd as its users meet it: a real Celery worker fails a task, `alertd run` pages a real HTTP
receiver, an operator silences the alert through the API, and the pages stop until it expires.
Also: every /api/v2 response against Alertmanager's spec, auth, restart after kill -9 on both
stores, and two replicas on one Redis sending each page once."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.conftest import ROOT, free_port
from tests.daemon_fixtures import (
    ADMIN_TOKEN,
    READ_TOKEN,
    SILENCE_TOKEN,
    Api,
    hook_posts,
    hook_route,
    producer,
    wait_until,
    write_setup,
)

SPEC = (
    yaml.safe_load((ROOT.parent / "shared" / "reference" / "alertmanager-api-v2.yaml").read_text())
    if (ROOT.parent / "shared" / "reference" / "alertmanager-api-v2.yaml").exists()
    else None
)


def schema(ref: str) -> dict[str, Any]:
    assert SPEC is not None, "../shared/reference/alertmanager-api-v2.yaml is missing"
    return {"definitions": SPEC["definitions"], **ref_or(ref)}


def ref_or(ref: str) -> dict[str, Any]:
    return (
        {"$ref": f"#/definitions/{ref}"}
        if not ref.startswith("[")
        else {"type": "array", "items": {"$ref": f"#/definitions/{ref[1:-1]}"}}
    )


def conforms(body: Any, ref: str) -> None:
    jsonschema.Draft4Validator(schema(ref), format_checker=jsonschema.FormatChecker()).validate(body)


def test_page_silence_expire_against_a_real_worker(
    tmp_path: Path, redis_url: str, unique: str, http_sink: Any, celery_worker_factory: Any, alertd_process: Any
) -> None:
    port = free_port()
    cfg = write_setup(
        tmp_path,
        broker=redis_url,
        store="sqlite:///state.db",
        sink_url=http_sink.url(),
        port=port,
        keyprefix=f"{unique}:",
    )
    daemon = alertd_process(cfg, port)
    api = daemon.api
    queue = f"q-{unique}"
    worker = celery_worker_factory(redis_url, extra_env={"ALERTD_TEST_KEYPREFIX": f"{unique}:"}, queues=[queue])
    app = producer(redis_url, f"{unique}:")
    app.send_task("t.fail", ("boom",), queue=queue)

    # 1. the page
    wait_until(lambda: hook_posts(http_sink), timeout=20, what="the first notification")
    first = hook_posts(http_sink)[0]
    assert first["title"] == "[FIRING:1] TaskFailed" and "t.fail failed" in first["message"]
    alerts = api.get("/api/v2/alerts")
    conforms(alerts, "[gettableAlert]")
    (alert,) = alerts
    assert alert["labels"] == {"alertname": "TaskFailed", "task": "t.fail", "severity": "critical"}
    assert alert["receivers"] == [{"name": "hook"}] and alert["status"]["state"] == "active"
    conforms(api.get("/api/v2/alerts/groups"), "[alertGroup]")

    # 2. the silence: strangers and readers are refused and change nothing
    body = {
        "matchers": [{"name": "task", "value": "t.fail", "isRegex": False, "isEqual": True}],
        "startsAt": "2020-01-01T00:00:00Z",
        "endsAt": "2099-01-01T00:00:00Z",
        "createdBy": "ana",
        "comment": "deploy",
    }
    assert api.call("POST", "/api/v2/silences", body)[0] == 401
    assert api.call("POST", "/api/v2/silences", body, token=READ_TOKEN)[0] == 403
    assert api.call("POST", "/api/v2/silences", body, token="wrong-token")[0] == 401
    assert api.get("/api/v2/silences") == []
    status, created = api.call("POST", "/api/v2/silences", body, token=SILENCE_TOKEN)
    assert status == 200, created
    sid = created["silenceID"]
    silenced = api.get("/api/v2/alerts")[0]
    assert silenced["status"] == {"state": "suppressed", "silencedBy": [sid], "inhibitedBy": [], "mutedBy": []}
    conforms(api.get(f"/api/v2/silence/{sid}"), "gettableSilence")
    conforms(api.get("/api/v2/silences"), "[gettableSilence]")
    assert api.get("/api/v2/alerts", query="silenced=false") == []

    # repeat_interval is 3 s: while silenced, no repeat goes out
    sent_before = len(hook_posts(http_sink))
    time.sleep(5)
    assert len(hook_posts(http_sink)) == sent_before
    kinds = {e["kind"] for e in api.get("/api/alertd/v1/history")}
    assert "silenced" in kinds

    # 3. expire: the next repeat goes through
    assert api.call("DELETE", f"/api/v2/silence/{sid}", token=SILENCE_TOKEN)[0] == 200
    wait_until(lambda: len(hook_posts(http_sink)) > sent_before, timeout=10, what="the page after expiry")
    assert "(repeat elapsed)" in hook_posts(http_sink)[-1]["message"]
    writes = [(e["author"], e["reason"]) for e in api.get("/api/alertd/v1/history", query="kind=api")]
    assert ("ops", "silence created") in writes and ("ops", "silence expired") in writes
    worker.kill()


def test_every_v2_endpoint_conforms_and_alertd_endpoints_answer(
    tmp_path: Path, redis_url: str, http_sink: Any, alertd_process: Any
) -> None:
    port = free_port()
    cfg = write_setup(tmp_path, broker=redis_url, store="sqlite:///state.db", sink_url=http_sink.url(), port=port)
    api = alertd_process(cfg, port).api
    status = api.get("/api/v2/status")
    conforms(status, "alertmanagerStatus")
    assert http_sink.url().split("//")[1] not in status["config"]["original"] or "***" in status["config"]["original"]
    conforms(api.get("/api/v2/receivers"), "[receiver]")
    conforms(api.get("/api/v2/alerts"), "[gettableAlert]")
    conforms(api.get("/api/v2/alerts/groups"), "[alertGroup]")
    conforms(api.get("/api/v2/silences"), "[gettableSilence]")
    assert api.call("GET", "/api/v2/silence/00000000-0000-0000-0000-000000000000", token=READ_TOKEN)[0] == 404
    assert api.call("GET", "/api/v2/alerts")[0] == 401  # tokens configured: reads need one too
    assert api.call("GET", "/healthz", token=None)[0] == 200
    rules = api.get("/api/alertd/v1/rules")
    assert [r["name"] for r in rules["rules"]] == ["TaskFailed"] and rules["problems"] == []
    assert api.get("/api/alertd/v1/whoami", token=SILENCE_TOKEN) == {
        "name": "ops",
        "role": "silence",
        "auth_enabled": True,
        "can_silence": True,
        "can_admin": False,
    }
    assert api.get("/api/alertd/v1/health")["stream"]["connected"] is True
    assert api.get("/api/alertd/v1/openapi.json")["openapi"].startswith("3.")
    bad = {
        "matchers": [{"name": "x", "value": "(", "isRegex": True}],
        "startsAt": "2020-01-01T00:00:00Z",
        "endsAt": "2099-01-01T00:00:00Z",
        "createdBy": "a",
        "comment": "",
    }
    code, err = api.call("POST", "/api/v2/silences", bad, token=SILENCE_TOKEN)
    assert code == 400 and "invalid regex" in err  # v2 errors are strings, as in the spec
    code, err = api.call(
        "POST", "/api/v2/silences", {**bad, "matchers": ['a="b"'], "endsAt": "tomorrow"}, token=SILENCE_TOKEN
    )
    assert code == 400 and "endsAt" in err
    assert api.call("POST", "/api/v2/silences", b"{not json", token=SILENCE_TOKEN)[0] == 400
    assert api.call("POST", "/api/v2/silences", b"x" * 300_000, token=SILENCE_TOKEN)[0] == 413
    assert api.call("POST", "/-/reload", token=SILENCE_TOKEN)[0] == 403
    assert api.call("POST", "/-/reload", token=ADMIN_TOKEN) == (200, {"ok": True, "problems": []})
    # a broken rule file: the reload is refused, the old rules keep running
    (tmp_path / "rules" / "test.yaml").write_text("groups: [{name: g, rules: [{alert: X, metric: nope, above: 1}]}]")
    code, out = api.call("POST", "/-/reload", token=ADMIN_TOKEN)
    assert code == 400 and "unknown metric 'nope'" in out["problems"][0]
    assert [r["name"] for r in api.get("/api/alertd/v1/rules")["rules"]] == ["TaskFailed"]
    assert "unknown metric" in api.get("/api/alertd/v1/rules")["problems"][0]["message"]
    metrics = api.call("GET", "/metrics", token=READ_TOKEN)[1]
    assert "alertd_rule_config_last_reload_successful 0.0" in metrics


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_kill_9_and_restart_keeps_silences_and_firing_state_and_does_not_page_twice(
    backend: str,
    tmp_path: Path,
    redis_url: str,
    unique: str,
    http_sink: Any,
    celery_worker_factory: Any,
    alertd_process: Any,
) -> None:
    store = "sqlite:///state.db" if backend == "sqlite" else f"{redis_url}?prefix=alertd-{unique}:"
    port = free_port()
    route = hook_route("1s", "2s", "1h", group_by="[alertname]")
    cfg = write_setup(
        tmp_path,
        broker=redis_url,
        store=store,
        sink_url=http_sink.url(),
        port=port,
        route=route,
        keyprefix=f"{unique}:",
    )
    daemon = alertd_process(cfg, port, "first")
    queue = f"q-{unique}"
    worker = celery_worker_factory(redis_url, extra_env={"ALERTD_TEST_KEYPREFIX": f"{unique}:"}, queues=[queue])
    producer(redis_url, f"{unique}:").send_task("t.fail", queue=queue)
    wait_until(lambda: hook_posts(http_sink), timeout=20, what="the first page")
    before = daemon.api.get("/api/v2/alerts")
    body = {
        "matchers": ['queue="other"'],
        "startsAt": "2020-01-01T00:00:00Z",
        "endsAt": "2099-01-01T00:00:00Z",
        "createdBy": "ana",
        "comment": "kept across restarts",
    }
    sid = daemon.api.call("POST", "/api/v2/silences", body, token=SILENCE_TOKEN)[1]["silenceID"]
    # the page is in the notification log once history says "sent" (written after the log);
    # under load the send can take a while to return after the receiver got it
    wait_until(
        lambda: daemon.api.get("/api/alertd/v1/history", query="kind=sent"), timeout=10, what="the send to be logged"
    )
    time.sleep(1.0)  # and a state snapshot after the transition (written on every change)
    daemon.kill(signal.SIGKILL)

    again = alertd_process(cfg, port, "second")
    time.sleep(5)  # group_wait + two group_intervals: time enough to page again if it would
    assert len(hook_posts(http_sink)) == 1, [p["message"].splitlines()[0] for p in hook_posts(http_sink)]
    after = again.api.get("/api/v2/alerts")
    assert [a["fingerprint"] for a in after] == [a["fingerprint"] for a in before]
    assert after[0]["startsAt"] == before[0]["startsAt"]
    assert again.api.get(f"/api/v2/silence/{sid}")["comment"] == "kept across restarts"
    worker.kill()


def test_two_replicas_on_one_redis_page_once_and_share_silences(
    tmp_path: Path, redis_url: str, unique: str, http_sink: Any, celery_worker_factory: Any, alertd_process: Any
) -> None:
    store = f"{redis_url}?prefix=alertd-ha-{unique}:"
    dirs = [tmp_path / "a", tmp_path / "b"]
    ports = [free_port(), free_port()]
    route = hook_route("2s", "2s", "1h", group_by="[alertname]")
    replicas = []
    for d, p in zip(dirs, ports, strict=True):
        d.mkdir()
        cfg = write_setup(
            d, broker=redis_url, store=store, sink_url=http_sink.url(), port=p, route=route, keyprefix=f"{unique}:"
        )
        replicas.append(alertd_process(cfg, p, d.name))
    queue = f"q-{unique}"
    worker = celery_worker_factory(
        redis_url, extra_env={"ALERTD_TEST_KEYPREFIX": f"{unique}:"}, queues=[queue], concurrency=4
    )
    app = producer(redis_url, f"{unique}:")
    for i in range(20):
        app.send_task("t.fail", (f"burst {i}",), queue=queue)
        app.send_task("t.flaky", (i, 1), queue=queue)  # every one fails: a second task name in the group
    wait_until(lambda: hook_posts(http_sink), timeout=20, what="the page")
    time.sleep(6)  # both replicas flushed their groups several times meanwhile
    titles = [p["title"] for p in hook_posts(http_sink)]
    # one group (by alertname) holding both tasks: paged once for the first, maybe once more when
    # the second joined - never the same notification twice
    assert titles.count("[FIRING:1] TaskFailed") <= 1 and titles.count("[FIRING:2] TaskFailed") <= 1
    assert 1 <= len(titles) <= 2, titles
    assert len(set(r["body"] for r in http_sink.requests)) == len(http_sink.requests)

    # a silence created on one replica applies on the other at once
    a, b = (r.api for r in replicas)
    body = {
        "matchers": ['task="t.fail"'],
        "startsAt": "2020-01-01T00:00:00Z",
        "endsAt": "2099-01-01T00:00:00Z",
        "createdBy": "ana",
        "comment": "ha",
    }
    sid = a.call("POST", "/api/v2/silences", body, token=SILENCE_TOKEN)[1]["silenceID"]
    wait_until(
        lambda: any(sid in x["status"]["silencedBy"] for x in b.get("/api/v2/alerts")),
        timeout=5,
        what="the silence on the other replica",
    )
    worker.kill()


def _fuzz_api() -> Api:
    return Api("")


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One daemon for the fuzz test, on a broker address nobody listens on (the API must not care)."""
    from tests.daemon_fixtures import DaemonProcess
    from tests.notify_fixtures import ThreadedSink

    tmp = tmp_path_factory.mktemp("fuzz")
    sink = ThreadedSink()
    port = free_port()
    cfg = write_setup(
        tmp, broker="redis://127.0.0.1:6379/13", store="sqlite:///state.db", sink_url=sink.url(), port=port
    )
    d = DaemonProcess(cfg, port, tmp / "alertd.log").start()
    yield d
    d.kill(signal.SIGTERM)
    sink.close()


json_values = None


def test_fuzzed_requests_never_get_a_5xx(fuzz_target: Any) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    api = fuzz_target.api
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=30))
    values = st.recursive(
        scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4), max_leaves=12
    )
    matcher = st.fixed_dictionaries(
        {"name": st.text(max_size=12), "value": st.text(max_size=12), "isRegex": st.booleans() | st.text(max_size=3)},
        optional={"isEqual": values},
    )
    silence = st.fixed_dictionaries(
        {},
        optional={
            "matchers": st.lists(matcher | values, max_size=3) | values,
            "startsAt": st.sampled_from(["2020-01-01T00:00:00Z", "2099-01-01T00:00:00Z", "", "nope"]) | values,
            "endsAt": st.sampled_from(["2099-01-01T00:00:00Z", "2000-01-01T00:00:00Z", "2099-13-45T99:00:00Z"])
            | values,
            "createdBy": values,
            "comment": values,
            "id": st.text(max_size=40) | values,
        },
    )
    paths = st.sampled_from(
        [
            "/api/v2/alerts",
            "/api/v2/alerts/groups",
            "/api/v2/silences",
            "/api/v2/status",
            "/api/alertd/v1/history",
            "/api/alertd/v1/alerts",
            "/api/alertd/v1/rules",
        ]
    )
    query = st.lists(
        st.tuples(
            st.sampled_from(["filter", "active", "silenced", "receiver", "limit", "since", "kind", "inhibited"]),
            st.text(max_size=20),
        ),
        max_size=3,
    )

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=silence, path=paths, q=query, raw=st.binary(max_size=64), sid=st.text(max_size=40))
    def check(body: Any, path: str, q: list[tuple[str, str]], raw: bytes, sid: str) -> None:
        from urllib.parse import quote, urlencode

        for method, p, b, kw in (
            ("POST", "/api/v2/silences", body, {}),
            ("POST", "/api/v2/silences", raw, {}),
            ("GET", path, None, {"query": urlencode(q)}),
            ("GET", f"/api/v2/silence/{quote(sid, safe='')}", None, {}),
            ("DELETE", f"/api/v2/silence/{quote(sid, safe='')}", None, {}),
            ("POST", "/api/alertd/v1/silences/preview", body, {}),
            ("POST", "/api/alertd/v1/maintenance", body, {}),
        ):
            status, out = api.call(method, p, b, token=SILENCE_TOKEN, **kw)
            assert status < 500, (method, p, b, status, out)

    check()
    assert "Traceback" not in fuzz_target.output()


def test_reload_picks_up_receivers_routes_and_tokens_and_refuses_a_broken_config(
    tmp_path: Path, redis_url: str, http_sink: Any, alertd_process: Any
) -> None:
    from alertd.auth import hash_token

    port = free_port()
    cfg = write_setup(tmp_path, broker=redis_url, store="sqlite:///state.db", sink_url=http_sink.url(), port=port)
    api = alertd_process(cfg, port).api
    assert api.get("/api/v2/receivers") == [{"name": "console"}, {"name": "hook"}]
    good = cfg.read_text().replace(
        "receivers:\n", f'receivers:\n  - {{name: second, apprise: ["{http_sink.url(path="/second")}"]}}\n'
    )
    cfg.write_text(good)
    new_token = "alertd_test_new_token_after_reload_00"
    with (tmp_path / "tokens").open("a") as f:
        f.write(f"newcomer silence {hash_token(new_token)}\n")
    assert api.call("POST", "/-/reload", token=ADMIN_TOKEN) == (200, {"ok": True, "problems": []})
    assert {"name": "second"} in api.get("/api/v2/receivers")
    assert api.get("/api/alertd/v1/whoami", token=new_token)["name"] == "newcomer"

    cfg.write_text(good.replace("receiver: hook", "receiver: nobody"))
    code, out = api.call("POST", "/-/reload", token=ADMIN_TOKEN)
    assert code == 400 and "no receiver named 'nobody'" in out["problems"][0]
    assert {"name": "second"} in api.get("/api/v2/receivers")  # the running config is kept
