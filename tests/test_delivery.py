"""Delivery to real endpoints: HTTP (json://), SMTP (aiosmtpd), and the real Slack and PagerDuty
Apprise plugins with their HTTPS request captured at the transport; retries, fallback, dead letters,
slow receivers, and secrets kept out of logs and history."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from alertd.alert import Alert, AlertState
from alertd.clock import VirtualClock, WallClock
from alertd.config import load_config
from alertd.notify.acked import tell_acknowledged
from alertd.notify.service import Notifier
from alertd.store.base import HistoryQuery
from alertd.store.sqlite import SqliteStore
from tests.notify_fixtures import Captured, Mailbox, Sink, body_of, through_backoffs
from tests.waiting import T0

SLACK_TOKEN = "T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ"
PD_INTEGRATION = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"
PD_API = "u+Kbq7aZnsxY1ZXvs8a9"


def firing(name: str = "CeleryTaskFailureRateHigh", **labels: str) -> Alert:
    labels = {"alertname": name, "task": "billing.charge", "queue": "payments", "severity": "critical", **labels}
    return Alert(
        labels=labels,
        annotations={"summary": "billing.charge fails 12.0% of runs", "runbook": "Look at the exceptions."},
        starts_at=T0,
        value=0.12,
    )


def resolved(a: Alert) -> Alert:
    return Alert(
        labels=a.labels, annotations=a.annotations, state=AlertState.RESOLVED, starts_at=a.starts_at, ends_at=T0 + 600
    )


async def run_groups(notifier: Notifier, clock: Any, alerts: list[Alert], seconds: float) -> None:
    """Put the alerts and flush until `seconds` of (virtual or real-but-skipped) group_wait passed."""
    notifier.put(alerts)
    if isinstance(clock, VirtualClock):
        clock.advance(seconds)
    else:
        for g in notifier.groups():
            g.next_flush = 0
    await notifier.flush_due()


ROUTE = "route: {receiver: %s, group_by: [alertname], group_wait: 1s, group_interval: 1m}\n"


async def test_slack_plugin_payload(store: SqliteStore, https: Captured) -> None:
    clock = VirtualClock(start=T0)
    cfg = load_config(
        text=f"""
receivers:
  - {{name: slack, apprise: ["https://hooks.slack.com/services/{SLACK_TOKEN}"], template: slack, retries: 0}}
{ROUTE % "slack"}"""
    )
    n = Notifier(cfg, store, clock)
    await run_groups(n, clock, [firing(), firing(task="billing.refund")], 2)
    (req,) = https.requests
    assert req.url == f"https://hooks.slack.com/services/{SLACK_TOKEN}"
    payload = https.json()
    text = json.dumps(payload)
    assert "[FIRING:2] CeleryTaskFailureRateHigh" in text
    assert "billing.charge fails 12.0% of runs" in text and "`task=billing.refund`" in text
    assert "Runbook" in text
    # Apprise turned the template's Markdown into Slack's mrkdwn: bold is *x*, not **x** or _x_
    (attachment,) = payload["attachments"]
    assert payload["mrkdwn"] is True and attachment["title"] == "[FIRING:2] CeleryTaskFailureRateHigh"
    assert attachment["text"].startswith("*Firing* (2) · _first notification_")
    assert "• *billing.charge fails 12.0% of runs*" in attachment["text"]


def pagerduty_notifier(store: SqliteStore, *urls: str) -> tuple[Notifier, VirtualClock]:
    """A notifier whose one receiver `pd` has these Apprise URLs and the pagerduty template."""
    clock = VirtualClock(start=T0)
    cfg = load_config(
        text=f"receivers: [{{name: pd, apprise: {json.dumps(list(urls))}, template: pagerduty, retries: 0}}]\n"
        + ROUTE % "pd"
    )
    return Notifier(cfg, store, clock), clock


async def test_pagerduty_plugin_triggers_then_resolves_with_a_stable_dedup_key(
    store: SqliteStore, https: Captured
) -> None:
    n, clock = pagerduty_notifier(store, f"pagerduty://{PD_INTEGRATION}@{PD_API}")
    a = firing()
    await run_groups(n, clock, [a], 2)
    trigger = https.json(0)
    assert trigger["routing_key"] == PD_INTEGRATION and trigger["event_action"] == "trigger"
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["summary"].startswith("[FIRING:1] CeleryTaskFailureRateHigh")
    assert trigger["payload"]["custom_details"]["queue"] == "payments"
    await run_groups(n, clock, [resolved(a)], 61)
    resolve = https.json(1)
    assert resolve["event_action"] == "resolve" and resolve["dedup_key"] == trigger["dedup_key"]


async def test_an_ack_acknowledges_the_pagerduty_incident_instead_of_triggering_it_again(
    store: SqliteStore, https: Captured
) -> None:
    # PagerDuty escalates by its own policy until its incident is acknowledged there.
    n, clock = pagerduty_notifier(store, f"pagerduty://{PD_INTEGRATION}@{PD_API}?region=eu", "jsons://hooks.example/a")
    a = firing()
    await run_groups(n, clock, [a], 2)
    (trigger_req,) = https.to("pagerduty")
    trigger = json.loads(body_of(trigger_req))
    assert trigger["event_action"] == "trigger"
    assert await tell_acknowledged(n, {a.fingerprint}, "ana", "on it") == 1
    (_, ack_req) = https.to("pagerduty")
    ack = json.loads(body_of(ack_req))
    assert ack_req.url == trigger_req.url == "https://events.eu.pagerduty.com/v2/enqueue"
    assert ack == {"routing_key": PD_INTEGRATION, "event_action": "acknowledge", "dedup_key": trigger["dedup_key"]}
    assert len(https.to("hooks.example")) == 2  # the receiver's other URL gets the notice itself
    (entry,) = [e for e in await store.history(HistoryQuery()) if e.kind == "acknowledged"]
    assert entry.outcome == "ok"
    await run_groups(n, clock, [resolved(a)], 61)
    resolve = json.loads(body_of(https.to("pagerduty")[-1]))
    assert resolve["event_action"] == "resolve" and resolve["dedup_key"] == trigger["dedup_key"]


async def test_json_receiver_gets_the_rendered_notification(store: SqliteStore, sink: Sink) -> None:
    cfg = load_config(
        text=f"""
receivers: [{{name: hook, apprise: ["{sink.url()}"], template: json, retries: 0}}]
{ROUTE % "hook"}"""
    )
    clock = VirtualClock(start=T0)
    n = Notifier(cfg, store, clock)
    await run_groups(n, clock, [firing()], 2)
    (req,) = sink.requests
    doc = json.loads(req["json"]["message"])  # Alertmanager's webhook shape inside Apprise's JSON
    assert doc["status"] == "firing" and doc["reason"] == "first notification"
    assert doc["alerts"][0]["labels"]["task"] == "billing.charge" and doc["groupLabels"] == {
        "alertname": "CeleryTaskFailureRateHigh"
    }


async def test_email_subject_html_and_plain_text(store: SqliteStore, mailbox: Mailbox) -> None:
    cfg = load_config(
        text=f"receivers: [{{name: mail, apprise: ['{mailbox.url}'], template: email, retries: 0}}]\n" + ROUTE % "mail"
    )
    clock = VirtualClock(start=T0)
    n = Notifier(cfg, store, clock)
    await run_groups(n, clock, [firing()], 2)
    (msg,) = mailbox.messages
    assert msg["Subject"] == "[FIRING:1] CeleryTaskFailureRateHigh" and msg["To"] == "oncall@example.com"
    parts = {p.get_content_type(): p.get_payload(decode=True).decode() for p in msg.walk() if not p.is_multipart()}
    assert "billing.charge fails 12.0% of runs" in parts["text/html"] and "<h2" in parts["text/html"]
    assert "billing.charge fails 12.0% of runs" in parts["text/plain"]


async def test_retry_then_fallback_then_dead_letter(store: SqliteStore, sink: Sink, sink2: Sink) -> None:
    sink.status = 500
    cfg = load_config(
        text=f"""
receivers:
  - {{name: primary, apprise: ["{sink.url()}"], retries: 2, retry_backoff: 1s, fallback: backup}}
  - {{name: backup, apprise: ["{sink2.url()}"], retries: 0}}
{ROUTE % "primary"}"""
    )
    clock = VirtualClock(start=T0)
    n = Notifier(cfg, store, clock)
    n.put([firing()])
    clock.advance(1)  # group_wait
    await n.flush_due(wait=False)
    await through_backoffs(n, clock)  # the backoffs (1 s, then 2 s) on the virtual clock
    assert len(sink.requests) == 3  # first try + 2 retries
    assert len(sink2.requests) == 1 and "[FIRING:1]" in sink2.titles()[0]
    kinds = [e.kind for e in await store.history(HistoryQuery())]
    assert kinds[:2] == ["fallback", "dead_letter"]
    dead = (await store.history(HistoryQuery(kind="dead_letter")))[0]
    assert dead.receiver == "primary" and dead.detail["attempts"] == 3 and "[FIRING:1]" in dead.detail["title"]


async def test_slow_receiver_does_not_delay_another(store: SqliteStore, sink: Sink, sink2: Sink) -> None:
    sink.delay = 3.0
    cfg = load_config(
        text=f"""
receivers:
  - {{name: slow, apprise: ["{sink.url()}"], retries: 0, timeout: 10s}}
  - {{name: fast, apprise: ["{sink2.url()}"], retries: 0}}
route:
  receiver: slow
  group_by: [alertname]
  group_wait: 1s
  routes:
    - {{matchers: ['alertname="A"'], receiver: slow}}
    - {{matchers: ['alertname="B"'], receiver: fast}}
"""
    )
    n = Notifier(cfg, store, WallClock())
    n.put([firing("A"), firing("B")])
    for g in n.groups():
        g.next_flush = 0
    started = asyncio.get_running_loop().time()
    await n.flush_due(wait=False)
    while not sink2.requests:
        await asyncio.sleep(0.02)
    assert asyncio.get_running_loop().time() - started < 2.0  # the fast one did not wait for the slow one
    await asyncio.gather(*list(n._inflight.values()))
    assert len(sink.requests) == 1


async def test_secrets_never_reach_logs_or_history(
    store: SqliteStore, sink: Sink, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink.status = 500
    monkeypatch.setenv("HOOK_TOKEN", "s3cr3t-token-value")
    cfg = load_config(
        text=f"""
receivers: [{{name: hook, apprise: ["json://user:${{HOOK_TOKEN}}@127.0.0.1:{sink.port}/hook"], retries: 1,
              retry_backoff: 0.1s}}]
{ROUTE % "hook"}"""
    )
    caplog.set_level(logging.DEBUG)
    n = Notifier(cfg, store, WallClock())
    await run_groups(n, WallClock(), [firing()], 0)
    assert sink.requests and sink.requests[0]["headers"]["Authorization"].startswith("Basic ")  # it was used
    history = json.dumps([e.to_dict() for e in await store.history(HistoryQuery())])
    assert "s3cr3t-token-value" not in caplog.text
    assert "s3cr3t-token-value" not in history
    assert "dead_letter" in history


def test_unknown_env_var_and_bad_url_are_config_errors(tmp_path: Path) -> None:
    from alertd.config import ReceiverConfig
    from alertd.notify.delivery import ReceiverError, resolve_receiver

    with pytest.raises(ReceiverError, match="environment variable NOPE_NOT_SET is not set"):
        resolve_receiver(ReceiverConfig(name="x", apprise=["${NOPE_NOT_SET}"]), tmp_path)
    with pytest.raises(ReceiverError) as e:
        resolve_receiver(ReceiverConfig(name="x", apprise=["notascheme://secretpart/abc"]), tmp_path)
    assert "secretpart" not in str(e.value)


async def test_a_receiver_that_fails_five_times_then_recovers_gets_the_notification_once(
    store: SqliteStore, sink: Sink
) -> None:
    sink.fail_times = 5
    cfg = load_config(
        text=f"""
receivers: [{{name: hook, apprise: ["{sink.url()}"], retries: 5, retry_backoff: 0.05s}}]
{ROUTE % "hook"}"""
    )
    clock = VirtualClock(start=T0)
    n = Notifier(cfg, store, clock)
    n.put([firing()])
    clock.advance(1)  # group_wait
    await n.flush_due(wait=False)
    await through_backoffs(n, clock)
    assert len(sink.requests) == 6  # five 500s, then the 200
    assert len({r["body"] for r in sink.requests}) == 1  # the same notification each time
    (sent,) = await store.history(HistoryQuery(kind="sent"))
    assert sent.detail["attempts"] == 6
    assert await store.history(HistoryQuery(kind="dead_letter")) == []
    # and it is logged as told: the next flush sends nothing
    for g in n.groups():
        g.next_flush = 0
    await n.flush_due()
    assert len(sink.requests) == 6


async def test_a_fallback_delivery_is_counted_and_the_receiver_catches_up_once_it_answers(
    store: SqliteStore, sink: Sink, sink2: Sink
) -> None:
    sink.status = 500
    cfg = load_config(
        text=f"""
receivers:
  - {{name: primary, apprise: ["{sink.url()}"], retries: 0, fallback: backup}}
  - {{name: backup, apprise: ["{sink2.url()}"], retries: 0}}
{ROUTE % "primary"}"""
    )
    clock = VirtualClock(start=T0)
    n = Notifier(cfg, store, clock)
    await run_groups(n, clock, [firing()], 1)
    assert len(sink2.requests) == 1
    assert (n.sent_total, n.fallback_total, n.failed_total) == (1, 1, 1)  # delivered, by the fallback
    sink.status = 200  # the primary is back
    for _ in range(3):  # three group_intervals: one catch-up, then nothing more to say
        await run_groups(n, clock, [firing()], 60)
    caught_up = [r for r in sink.requests if r["json"]]
    assert len(sink.requests) == 2 and "(catch-up after fallback)" in caught_up[-1]["json"]["message"]
    assert len(sink2.requests) == 1
    (sent,) = await store.history(HistoryQuery(kind="sent", receiver="primary"))
    assert sent.reason == "catch-up after fallback"


async def test_no_catch_up_when_the_receiver_says_so(store: SqliteStore, sink: Sink, sink2: Sink) -> None:
    sink.status = 500
    cfg = load_config(
        text=f"""
receivers:
  - {{name: primary, apprise: ["{sink.url()}"], retries: 0, fallback: backup, catch_up_after_fallback: false}}
  - {{name: backup, apprise: ["{sink2.url()}"], retries: 0}}
{ROUTE % "primary"}"""
    )
    clock = VirtualClock(start=T0)
    n = Notifier(cfg, store, clock)
    await run_groups(n, clock, [firing()], 1)
    sink.status = 200
    await run_groups(n, clock, [firing()], 60)
    assert len(sink.requests) == 1 and len(sink2.requests) == 1


async def test_the_receiver_timeout_is_what_bounds_an_attempt_not_apprises_own(store: SqliteStore, sink: Sink) -> None:
    """Apprise reads for 4 s by default: a receiver given 8 s that answers in 5 s must get through."""
    sink.delay = 5.0
    cfg = load_config(
        text=f"""
receivers: [{{name: hook, apprise: ["{sink.url()}"], retries: 0, timeout: 8s}}]
{ROUTE % "hook"}"""
    )
    n = Notifier(cfg, store, VirtualClock(start=T0))
    await run_groups(n, n.clock, [firing()], 1)
    (sent,) = await store.history(HistoryQuery(kind="sent"))
    assert sent.detail["attempts"] == 1
    assert await store.history(HistoryQuery(kind="dead_letter")) == []
