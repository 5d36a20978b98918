"""Silence limits, as Alertmanager 0.28's: a count of active and pending silences and a size per
silence, configurable in alertd.yaml's `silences:` section, each passed with a 400 that says which.
Against a real `alertd run`: 500 silences with 200 KB comments once added 99 MB of RSS."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.conftest import free_port
from tests.daemon_fixtures import SILENCE_TOKEN, Api, write_setup


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def add(api: Api, comment: str = "deploy", value: str = "billing.charge") -> tuple[int, Any]:
    now = time.time()
    return api.call(
        "POST",
        "/api/v2/silences",
        {
            "matchers": [{"name": "task", "value": value, "isRegex": False}],
            "startsAt": iso(now - 1),
            "endsAt": iso(now + 3600),
            "createdBy": "ana",
            "comment": comment,
        },
        token=SILENCE_TOKEN,
    )


def start(tmp_path: Path, redis_url: str, unique: str, http_sink: Any, alertd_process: Any, extra: str = "") -> Api:
    port = free_port()
    cfg = write_setup(
        tmp_path, broker=redis_url, store="sqlite:///state.db", sink_url=http_sink.url(), port=port,
        keyprefix=f"{unique}:", extra=extra,
    )  # fmt: skip
    return alertd_process(cfg, port).api  # type: ignore[no-any-return]


def test_by_default_a_200_kb_comment_is_refused(
    tmp_path: Path, redis_url: str, unique: str, http_sink: Any, alertd_process: Any
) -> None:
    api = start(tmp_path, redis_url, unique, http_sink, alertd_process)
    status, body = add(api, comment="x" * 200_000)
    assert status == 400, body
    assert "over the limit of 32768" in str(body) and "silences.max_silence_bytes" in str(body)
    assert api.get("/api/v2/silences") == []
    assert add(api, comment="a normal comment")[0] == 200


def test_configured_count_and_size_limits_hold_and_expired_silences_stay_bounded(
    tmp_path: Path, redis_url: str, unique: str, http_sink: Any, alertd_process: Any
) -> None:
    api = start(
        tmp_path,
        redis_url,
        unique,
        http_sink,
        alertd_process,
        extra="silences: {max_silences: 3, max_silence_bytes: 2048}",
    )
    status, body = add(api, comment="x" * 3000)
    assert status == 400 and "over the limit of 2048" in str(body), body

    ids = []
    for i in range(3):
        status, body = add(api, value=f"t{i}")
        assert status == 200, body
        ids.append(body["silenceID"])
    status, body = add(api, value="t3")
    assert status == 400, body
    assert "already 3 active and pending silences" in str(body) and "silences.max_silences" in str(body)

    # expiring makes room; creating and expiring in a loop keeps at most max_silences expired ones
    for i in range(6):
        assert api.call("DELETE", f"/api/v2/silence/{ids.pop(0)}", token=SILENCE_TOKEN)[0] == 200
        status, body = add(api, value=f"loop{i}")
        assert status == 200, body
        ids.append(body["silenceID"])
    states = [s["status"]["state"] for s in api.get("/api/v2/silences")]
    assert states.count("active") == 3 and states.count("expired") == 3, states

    # maintenance windows have the same count limit
    window = {
        "matchers": ['queue="etl"'],
        "time_intervals": [{"weekdays": ["saturday"]}],
        "comment": "weekly",
    }
    for _ in range(3):
        assert api.call("POST", "/api/alertd/v1/maintenance", window, token=SILENCE_TOKEN)[0] == 201
    status, body = api.call("POST", "/api/alertd/v1/maintenance", window, token=SILENCE_TOKEN)
    assert status == 400 and "maintenance windows" in str(body), body
