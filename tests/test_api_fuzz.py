"""Hypothesis throws malformed and almost-valid requests at every endpoint: no 5xx, every error
is a JSON body saying what was wrong, the daemon keeps answering, and whatever silences the
fuzzer managed to create still render as valid Alertmanager v2 JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote, urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api_fixtures import (
    ADMIN_TOKEN,
    READ_TOKEN,
    SILENCE_TOKEN,
    ThreadedHarness,
    conforms,
    threaded_api_fixture,  # noqa: F401 (registers the fixture)
)

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

LABEL = st.sampled_from(["alertname", "queue", "task", "severity", "a", "", "0bad", "x y", "\u00e9"])
OPS = st.sampled_from(["=", "!=", "=~", "!~", "==", "~", ""])
TEXT = st.text(max_size=20)
VALUE = st.one_of(TEXT, st.sampled_from(["payments", ".*", "(", "[a-", "a|b", "\\", '"', "x{1000}"]))

matcher_string = st.builds(
    lambda n, op, v, q: f'{n}{op}"{v}"' if q else f"{n}{op}{v}", LABEL, OPS, VALUE, st.booleans()
)
matcher_object = st.fixed_dictionaries(
    {"name": st.one_of(LABEL, st.integers(), st.none())},
    optional={
        "value": st.one_of(VALUE, st.integers(), st.none()),
        "isRegex": st.one_of(st.booleans(), st.sampled_from(["true", 1, None])),
        "isEqual": st.one_of(st.booleans(), st.sampled_from(["false", 0])),
    },
)
zones = st.sampled_from([UTC, timezone(timedelta(hours=9)), timezone(timedelta(hours=-14, minutes=-59))])
times = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=zones).map(
        lambda d: d.isoformat()
    ),
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2040, 1, 1)).map(lambda d: d.isoformat()),
    st.sampled_from(["", "now", "2026-13-01T00:00:00Z", "tomorrow", "0001-01-01T00:00:00Z", "1e400"]),
    st.integers(),
    st.none(),
)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
silence_body = st.fixed_dictionaries(
    {},
    optional={
        "matchers": st.one_of(st.lists(st.one_of(matcher_string, matcher_object), max_size=4), json_value),
        "startsAt": times,
        "endsAt": times,
        "createdBy": st.one_of(TEXT, st.integers()),
        "comment": st.one_of(TEXT, st.none(), st.lists(TEXT)),
        "id": st.one_of(st.none(), st.just(""), TEXT, st.uuids().map(str)),
    },
)
NOW = datetime.now(UTC)
valid_matcher = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["alertname", "queue", "task", "severity"]),
        "value": st.text(min_size=1, max_size=12),
        "isRegex": st.just(False),
        "isEqual": st.booleans(),
    }
) | st.builds(
    lambda n, v: {"name": n, "value": v, "isRegex": True}, LABEL.filter(bool), st.sampled_from(["pay.*", "a|b", "x+"])
)
# Mostly-valid silences, so the fuzzer reaches the update rules and the responses that follow,
# with one field then possibly replaced by something wrong.
valid_silence = st.builds(
    lambda ms, start, length, who, comment: {
        "matchers": ms,
        "startsAt": (NOW + timedelta(seconds=start)).isoformat(),
        "endsAt": (NOW + timedelta(seconds=start + length)).isoformat(),
        "createdBy": who,
        "comment": comment,
    },
    st.lists(valid_matcher, min_size=1, max_size=3),
    st.integers(-3600, 86400),
    st.integers(3601, 30 * 86400),
    st.text(min_size=1, max_size=10).filter(str.strip),
    TEXT,
)
interval = st.fixed_dictionaries(
    {},
    optional={
        "weekdays": st.lists(st.sampled_from(["monday", "sunday:monday", "caturday", "", "1"]), max_size=2),
        "times": st.lists(
            st.fixed_dictionaries(
                {"start_time": st.sampled_from(["02:00", "25:00", "x"]), "end_time": st.sampled_from(["04:00", ""])}
            ),
            max_size=2,
        ),
        "days_of_month": st.lists(st.sampled_from(["1:5", "-3:-1", "0", "40"]), max_size=2),
        "location": st.sampled_from(["UTC", "Europe/Berlin", "Mars/Olympus", ""]),
        "bogus": json_value,
    },
)
valid_maintenance = st.builds(
    lambda ms, days, loc: {
        "matchers": ms,
        "time_intervals": [
            {"weekdays": days, "times": [{"start_time": "02:00", "end_time": "04:00"}], "location": loc}
        ],
        "comment": "fuzz",
    },
    st.lists(valid_matcher, min_size=1, max_size=2),
    st.lists(st.sampled_from(["monday", "saturday:sunday", "tuesday"]), min_size=1, max_size=2),
    st.sampled_from(["UTC", "Europe/Berlin", "Asia/Tokyo"]),
)


def corrupt(strategy: st.SearchStrategy[dict[str, Any]], junk: st.SearchStrategy[dict[str, Any]]) -> Any:
    """A valid body, or the same with one field taken from a junk body."""
    return st.one_of(
        strategy,
        st.tuples(strategy, junk).map(lambda t: {**t[0], **dict(list(t[1].items())[:1])}),
    )


maintenance_body = st.fixed_dictionaries(
    {},
    optional={
        "matchers": st.lists(st.one_of(matcher_string, matcher_object), max_size=3),
        "time_intervals": st.one_of(st.lists(interval, max_size=2), json_value),
        "comment": st.one_of(TEXT, st.integers()),
        "createdBy": json_value,
    },
)
any_silence = st.one_of(corrupt(valid_silence, silence_body), silence_body)
any_maintenance = st.one_of(corrupt(valid_maintenance, maintenance_body), maintenance_body)
ids = st.one_of(st.uuids().map(str), TEXT.filter(lambda s: s not in ("", ".", "..")), st.just("mw-x"))

query_params = st.lists(
    st.tuples(
        st.sampled_from(
            [
                *("active", "silenced", "inhibited", "unprocessed", "filter", "receiver", "resolved"),
                *("since", "until", "kind", "limit", "alertname", "group_key"),
            ]
        ),
        st.one_of(TEXT, matcher_string, st.sampled_from(["true", "false", '{a="b",c=~"d"}', "(", "-1", "1e9"])),
    ),
    max_size=4,
)


def request_strategy() -> st.SearchStrategy[tuple[str, str, bytes | None, str]]:
    as_json = st.one_of(any_silence, any_maintenance, json_value).map(lambda b: json.dumps(b).encode())
    raw = st.one_of(as_json, st.binary(max_size=64), st.just(b"{"), st.just(b"\xff\xfe"))
    gets = st.tuples(
        st.just("GET"),
        st.one_of(
            st.sampled_from(
                [
                    "/api/v2/status",
                    "/api/v2/receivers",
                    "/api/v2/silences",
                    "/api/v2/alerts",
                    "/api/v2/alerts/groups",
                    "/api/alertd/v1/rules",
                    "/api/alertd/v1/alerts",
                    "/api/alertd/v1/history",
                    "/api/alertd/v1/maintenance",
                    "/api/alertd/v1/health",
                    "/api/alertd/v1/whoami",
                ]
            ),
            ids.map(lambda i: f"/api/v2/silence/{quote(i, safe='')}"),
            ids.map(lambda i: f"/api/alertd/v1/alerts/{quote(i, safe='')}/explain"),
        ),
        st.none(),
        query_params.map(urlencode),
    )
    writes = st.one_of(
        st.tuples(st.just("POST"), st.just("/api/v2/silences"), st.one_of(any_silence.map(_dump), raw), st.just("")),
        st.tuples(st.just("POST"), st.just("/api/alertd/v1/silences/preview"), raw, st.just("")),
        st.tuples(st.just("POST"), st.just("/api/alertd/v1/maintenance"), any_maintenance.map(_dump), st.just("")),
        st.tuples(st.just("POST"), st.just("/api/v2/alerts"), raw, st.just("")),
        st.tuples(st.just("DELETE"), ids.map(lambda i: f"/api/v2/silence/{quote(i, safe='')}"), st.none(), st.just("")),
        st.tuples(
            st.just("DELETE"),
            ids.map(lambda i: f"/api/alertd/v1/maintenance/{quote(i, safe='')}"),
            st.none(),
            st.just(""),
        ),
        st.tuples(st.sampled_from(["PUT", "PATCH"]), st.just("/api/v2/silences"), raw, st.just("")),
    )
    return st.one_of(gets, writes)


def _dump(body: Any) -> bytes:
    return json.dumps(body).encode()


@FUZZ
@given(req=request_strategy(), token=st.sampled_from([SILENCE_TOKEN, SILENCE_TOKEN, ADMIN_TOKEN, READ_TOKEN, None]))
def test_no_request_makes_the_api_fail(threaded_api: ThreadedHarness, req: Any, token: str | None) -> None:
    method, path, body, query = req
    status, raw, headers = threaded_api.request(method, path, body, token=token, query=query)
    assert status < 500, (method, path, body, query, status, raw[:500])
    if status >= 400:
        assert headers.get("Content-Type", "").startswith("application/json"), (path, status, raw[:200])
        doc = json.loads(raw)  # under /api/v2 a 400, 404 or 500 is a bare string, as in Alertmanager's spec
        assert doc if isinstance(doc, str) else doc["error"], raw


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=any_silence, update=st.booleans())
def test_whatever_silences_get_created_still_conform(
    threaded_api: ThreadedHarness, body: dict[str, Any], update: bool
) -> None:
    existing = threaded_api.get_json("/api/v2/silences")
    if update and existing and "id" not in body:
        body = {**body, "id": existing[0]["id"]}  # exercise the update rules too
    status, raw, _ = threaded_api.request("POST", "/api/v2/silences", _dump(body), token=SILENCE_TOKEN)
    assert status in (200, 400, 404), raw
    if status == 200:
        sid = json.loads(raw)["silenceID"]
        conforms(threaded_api.get_json(f"/api/v2/silence/{sid}"), "gettableSilence")
    conforms(threaded_api.get_json("/api/v2/silences"), "[gettableSilence]")
    assert threaded_api.request("GET", "/healthz", token=None)[0] == 200
