"""Times are held on the way in to what RFC 3339 can write out (years 1 to 9999 in UTC).

`endsAt: 9999-12-31T23:59:59-23:59` is year 10000 in UTC: accepted, it made every later listing
of silences answer 500. Now it is a 400 at the door: in the API, in history bounds, in the CLI and
in durations, which the CLI and rule files turn into times.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from alertd.durations import DurationError, parse_duration
from tests.api_fixtures import (
    SILENCE_TOKEN,
    Harness,
    ThreadedHarness,
    api_sqlite_fixture,  # noqa: F401 (registers the fixture)
    rfc,
    threaded_api_fixture,  # noqa: F401 (registers the fixture)
)
from tests.conftest import ROOT

YEAR_10000 = "9999-12-31T23:59:59-23:59"
YEAR_0 = "0001-01-01T00:00:00+01:00"
LATEST = 253402300799.999  # 9999-12-31T23:59:59.999Z


def silence_body(h: Harness, **times: str) -> dict[str, Any]:
    now = h.clock.now()
    return {
        "matchers": [{"name": "task", "value": "billing.charge", "isRegex": False}],
        "startsAt": times.get("startsAt", rfc(now)),
        "endsAt": times.get("endsAt", rfc(now + 3600)),
        "createdBy": "ana",
        "comment": "deploy",
    }


@pytest.mark.parametrize(("field", "value"), [("endsAt", YEAR_10000), ("startsAt", YEAR_0)])
async def test_a_silence_time_past_what_rfc3339_writes_is_a_400_and_listings_stay_200(
    api_sqlite: Harness, field: str, value: str
) -> None:
    h = api_sqlite
    r = await h.call("POST", "/api/v2/silences", silence_body(h, **{field: value}), token=SILENCE_TOKEN)
    assert r.status == 400, r.text
    assert field in r.text and "9999-12-31T23:59:59Z" in r.text
    assert await h.get("/api/v2/silences") == []


async def test_the_last_writable_second_is_a_silence_that_lists(api_sqlite: Harness) -> None:
    h = api_sqlite
    r = await h.call("POST", "/api/v2/silences", silence_body(h, endsAt="9999-12-31T23:59:59Z"), token=SILENCE_TOKEN)
    assert r.status == 200, r.text
    (s,) = await h.get("/api/v2/silences")
    assert s["endsAt"] == "9999-12-31T23:59:59.000Z"
    assert (await h.get(f"/api/v2/silence/{s['id']}"))["endsAt"] == s["endsAt"]


async def test_a_silence_stored_before_the_check_still_lists(api_sqlite: Harness) -> None:
    """One written by an older alertd (year 10000 in the store) must not take the listing down."""
    h = api_sqlite
    r = await h.call("POST", "/api/v2/silences", silence_body(h), token=SILENCE_TOKEN)
    doc = await h.daemon.store.get("silence", r.body["silenceID"])
    assert doc is not None
    await h.daemon.store.put("silence", doc["id"], {**doc, "ends_at": LATEST + 86400})
    await h.daemon.silences.load()
    (s,) = await h.get("/api/v2/silences")
    assert s["endsAt"] == "9999-12-31T23:59:59.998Z"  # the last millisecond a float can hold there
    assert (await h.get(f"/api/v2/silence/{doc['id']}"))["id"] == doc["id"]


@pytest.mark.parametrize("query", [{"since": "1e300"}, {"until": YEAR_10000}, {"since": "nan"}, {"until": "-1e20"}])
async def test_history_bounds_out_of_range_are_a_400(api_sqlite: Harness, query: dict[str, str]) -> None:
    r = await api_sqlite.call("GET", "/api/alertd/v1/history", params=query)
    assert r.status == 400, r.text
    assert next(iter(query)) in r.text


def cli(t: ThreadedHarness, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ALERTD_URL": t.base, "ALERTD_TOKEN": SILENCE_TOKEN}
    return subprocess.run(
        [sys.executable, "-m", "alertd", *argv], capture_output=True, text=True, env=env, timeout=60, cwd=ROOT
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--start", YEAR_10000], "--start"),
        (["--start", "9999-12-31T00:00:00Z", "--duration", "2d"], "--duration"),
        (["--duration", "300y"], "292y"),
    ],
)
def test_the_cli_refuses_times_it_could_not_write_out(
    threaded_api: ThreadedHarness, args: list[str], says: str
) -> None:
    out = cli(threaded_api, "silence", "add", 'task="billing.charge"', "-c", "deploy", *args)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert says in out.stderr and "Traceback" not in out.stderr
    assert json.loads(threaded_api.request("GET", "/api/v2/silences")[1]) == []
    listed = cli(threaded_api, "silence", "query")
    assert listed.returncode == 0, listed.stderr


@pytest.mark.parametrize("value", ["300y", 1e12, float("inf"), float("nan"), "1e400s"])
def test_durations_stop_at_go_s_longest(value: Any) -> None:
    with pytest.raises(DurationError):
        parse_duration(value)
    assert parse_duration("292y") == 292 * 365 * 86400
