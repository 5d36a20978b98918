"""Alertmanager's amtool sees an ack as a silence on the group (comment "ACK: ...", alertd's
annotations), active while its alert fires and expired (`amtool silence query --expired`) once
the alert resolved, without anyone expiring it. amtool judges states by the wall clock, so
alertd's virtual clock starts eleven minutes behind it and catches up through the resolve."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from alertd.alert import fingerprint
from tests.api_fixtures import SILENCE_TOKEN, ThreadedHarness
from tests.test_amtool import amtool, ok, pytestmark, query  # noqa: F401 (pytestmark: skip without amtool)

GROUP = "root{}{alertname='TaskFailed'}"
CHARGE = {"alertname": "TaskFailed", "severity": "critical", "task": "billing.charge"}


@pytest.fixture(name="behind")
def behind_fixture(tmp_path: Path) -> Iterator[ThreadedHarness]:
    t = ThreadedHarness(tmp_path, f"sqlite:///{tmp_path}/a.db", ahead=-660)
    yield t
    t.close()


def fail_and_ack(t: ThreadedHarness) -> str:
    """A task fails, its page goes out, and its group is acked through the API: the ack's id."""
    t.h.fail_task()
    t.run(t.h.step(0.1))
    t.run(t.h.step(1))
    status, raw, _ = t.request(
        "POST", "/api/alertd/v1/acks", json.dumps({"group": GROUP, "comment": "on it"}).encode(), token=SILENCE_TOKEN
    )
    assert status == 201, raw
    return str(json.loads(raw)["id"])


def test_an_ack_is_an_active_silence_then_expired_once_its_alert_resolves(behind: ThreadedHarness) -> None:
    t = behind
    ack_id = fail_and_ack(t)
    [active] = query(t)
    assert active["id"] == ack_id and active["status"]["state"] == "active"
    # resolve_after 10m: at the wall clock's now, the failure is 11 minutes old
    t.h.clock.set(time.time() - 30)
    t.run(t.h.step(0))  # 630 s after the failure: resolved, and the tick ends its ack
    assert query(t) == []  # no longer active: ended by the resolve, not by anyone
    [gone] = query(t, "--expired")
    assert gone["id"] == ack_id and gone["status"]["state"] == "expired"
    assert gone["comment"] == "ACK: on it" and gone["createdBy"] == "ops"
    assert [(m["name"], m["value"]) for m in gone["matchers"]] == [("alertname", "TaskFailed")]
    assert ok(amtool(t, "silence", "query", "--expired", "-q")).split() == [ack_id]
    acks = t.get_json("/api/alertd/v1/acks")["acks"]
    assert [(a["id"], a["ended"], a["fingerprints"]) for a in acks] == [(ack_id, "resolved", [fingerprint(CHARGE)])]


def test_an_ack_updated_with_amtool_stays_an_ack_and_still_ends_by_itself(behind: ThreadedHarness) -> None:
    # amtool (0.25 - 0.28) knows no silence annotations: its update posts the silence without
    # them, and the ack's binding to its alerts went with them - a plain silence on the group,
    # muting new failures too and never ending on the resolve.
    t = behind
    ok(amtool(t, "silence", "update", fail_and_ack(t), "--comment=ACK: rolling back 4.2"))
    [active] = query(t)
    new_id = active["id"]
    assert active["comment"] == "ACK: rolling back 4.2"
    acks = t.get_json("/api/alertd/v1/acks")["acks"]
    assert [(a["id"], a["state"], a["fingerprints"]) for a in acks if a["id"] == new_id] == [
        (new_id, "active", [fingerprint(CHARGE)])
    ]
    t.h.clock.set(time.time() - 30)
    t.run(t.h.step(0))  # resolved: the ack ends by itself
    assert query(t) == []
    assert [g["id"] for g in query(t, "--expired") if g["id"] == new_id] == [new_id]
