"""A group too large for one message reaches every receiver kind within that service's limits
(alertmanager#2769: Slack refused groups of 20+ alerts): 200 alerts with long labels and
annotations, summarised as the first alerts, "+N more" and the link to alertd. Each request is
the real one: Apprise's Slack, PagerDuty, Telegram and Teams (Workflows) plugins captured at the
transport, email through a local SMTP server (aiosmtpd), the native Slack receiver against a
local Slack API that refuses what Slack refuses."""

from __future__ import annotations

import email
import json

from alertd.alert import Alert
from alertd.clock import VirtualClock
from alertd.config import load_config
from alertd.notify import limits
from alertd.notify.limits import Limits, fit, receiver_limits
from alertd.notify.service import Notifier
from alertd.notify.template import Rendered
from alertd.store.sqlite import SqliteStore
from tests.notify_fixtures import Captured, Mailbox, body_of
from tests.slack_fixtures import FakeSlack, slack_receiver
from tests.test_delivery import PD_API, PD_INTEGRATION, SLACK_TOKEN
from tests.waiting import T0

TELEGRAM_BOT = "123456789:AABCeFGhIJKLmnOPqrStuvWXYzaBcDeFgHI"
TEAMS_URL = "workflows://prod-01.westus.logic.azure.com:443/a1b2c3d4e5f6/Sig-Nature_0123abcd"
EXTERNAL = "https://alertd.example.com"
N = 200


def big_group() -> list[Alert]:
    """200 alerts of one group, each with long labels (an exception repr as a label value) and
    long annotations (a summary, a description, a runbook, a traceback)."""
    return [
        Alert(
            labels={
                "alertname": "CeleryTaskFailureRateHigh",
                "task": f"billing.charge_{i:03d}." + "sub" * 90,
                "queue": "payments",
                "severity": "critical",
                "exception": f"ValueError('{i}: " + "card declined " * 40 + "')",
            },
            annotations={
                "summary": f"billing.charge_{i:03d} fails " + "12.0% of its runs, " * 120,
                "description": "d" * 3000,
                "runbook": "Look at the exceptions. " * 60,
                "traceback": "Traceback (most recent call last):\n" + '  File "billing.py", line 9\n' * 80,
            },
            starts_at=T0,
            value=0.12,
        )
        for i in range(N)
    ]


async def page(text: str, store: SqliteStore) -> Notifier:
    clock = VirtualClock(start=T0)
    n = Notifier(load_config(text=text + f"api: {{external_url: '{EXTERNAL}'}}\n"), store, clock)
    n.put(big_group())
    clock.advance(31)
    await n.flush_due()
    assert n.sent_total == 1 and n.failed_total == 0
    return n


def one(name: str, url: str, template: str) -> str:
    return f"""
receivers: [{{name: {name}, apprise: ["{url}"], template: {template}, retries: 0}}]
route: {{receiver: {name}, group_by: [alertname], group_wait: 30s}}
"""


async def test_slack_webhook_within_slacks_limits(store: SqliteStore, https: Captured) -> None:
    await page(one("slack", f"https://hooks.slack.com/services/{SLACK_TOKEN}", "slack"), store)
    (req,) = https.to("hooks.slack.com")
    assert len(body_of(req)) <= limits.SLACK_TEXT
    (attachment,) = json.loads(body_of(req))["attachments"]
    assert attachment["title"] == "[FIRING:200] CeleryTaskFailureRateHigh"
    assert len(attachment["text"]) <= limits.SLACK.body
    assert "more: <https://alertd.example.com|all alerts>" in attachment["text"]
    assert "billing.charge_000 fails" in attachment["text"]


async def test_native_slack_within_slacks_limits(store: SqliteStore, slack: FakeSlack) -> None:
    await page(slack_receiver(slack), store)
    (post,) = slack.posts()  # the local API answers invalid_blocks / msg_too_long as Slack does: it took it
    blocks = post.body["blocks"]
    assert len(blocks) <= limits.SLACK_BLOCKS and len(post.body["text"]) <= limits.SLACK_TEXT
    assert blocks[0]["text"]["text"] == "[FIRING:200] CeleryTaskFailureRateHigh"
    assert all(len(b["text"]["text"]) <= limits.SLACK_SECTION for b in blocks if b["type"] == "section")
    (more,) = [b for b in blocks if b["type"] == "section" and b["text"]["text"].startswith("+")]
    assert more["text"]["text"] == f"+180 more: <{EXTERNAL}|all alerts in alertd>"


async def test_pagerduty_within_its_limits(store: SqliteStore, https: Captured) -> None:
    await page(one("pd", f"pagerduty://{PD_INTEGRATION}@{PD_API}", "pagerduty"), store)
    (req,) = https.to("pagerduty")
    assert len(body_of(req)) <= limits.PAGERDUTY_EVENT
    event = json.loads(body_of(req))["payload"]
    assert len(event["summary"]) <= limits.PAGERDUTY_SUMMARY
    assert event["summary"].startswith("[FIRING:200] CeleryTaskFailureRateHigh")
    assert "(+199 more)" in event["summary"] or event["summary"].endswith("…")


async def test_email_within_its_limits(store: SqliteStore, mailbox: Mailbox) -> None:
    await page(one("mail", mailbox.url, "email"), store)
    (msg,) = mailbox.messages
    subject = str(email.header.make_header(email.header.decode_header(msg["Subject"])))
    assert subject == "[FIRING:200] CeleryTaskFailureRateHigh" and len(subject) <= limits.EMAIL_SUBJECT
    parts = {p.get_content_type(): p.get_payload(decode=True).decode() for p in msg.walk() if not p.is_multipart()}
    assert len(parts["text/plain"]) <= limits.EMAIL.body and len(parts["text/html"]) <= limits.EMAIL.body
    # Apprise writes the plain part from the HTML one
    assert "more firing: all alerts" in parts["text/plain"]
    assert f'more firing: <a href="{EXTERNAL}">all alerts</a>' in parts["text/html"]


def test_a_subject_is_one_line_and_a_custom_template_is_clipped_not_refused() -> None:
    rendered = fit(lambda n: Rendered("line one\nline two " + "s" * 300, "b" * 10_000, "<p>" * 10_000), limits.EMAIL)
    assert "\n" not in rendered.title and len(rendered.title) == limits.EMAIL_SUBJECT
    tele = fit(lambda n: Rendered("t" * 300, "b" * 10_000), limits.TELEGRAM)
    assert len(tele.title) + len(tele.body) + 2 <= limits.TELEGRAM_TEXT and tele.body.endswith("…")


def test_each_receiver_kind_knows_its_limits() -> None:
    def kind(*urls: str) -> Limits:
        return receiver_limits(urls)

    assert kind(f"slack://{SLACK_TOKEN}") == kind(f"https://hooks.slack.com/services/{SLACK_TOKEN}") == limits.SLACK
    assert receiver_limits([], native_slack=True) == limits.SLACK
    assert kind(f"pagerduty://{PD_INTEGRATION}@{PD_API}") == limits.PAGERDUTY
    assert kind("mailtos://u:p@smtp.example.com") == limits.EMAIL
    assert kind(f"tgram://{TELEGRAM_BOT}/-100123") == limits.TELEGRAM
    assert kind(TEAMS_URL) == kind("https://prod-01.westus.logic.azure.com/workflows/x") == limits.TEAMS
    assert kind("json://localhost/hook") == kind() == limits.GENERIC
    both = kind(f"tgram://{TELEGRAM_BOT}/-100123", "mailtos://u:p@smtp.example.com")
    assert both.body == limits.TELEGRAM.body and both.title == limits.EMAIL_SUBJECT and both.message is not None


async def test_telegram_carries_the_notification_within_4096(store: SqliteStore, https: Captured) -> None:
    await page(one("tg", f"tgram://{TELEGRAM_BOT}/-100123456", "generic"), store)
    (req,) = https.to("api.telegram.org")
    assert req.url == f"https://api.telegram.org/bot{TELEGRAM_BOT}/sendMessage"
    doc = json.loads(body_of(req))
    assert str(doc["chat_id"]) == "-100123456" and len(doc["text"]) <= limits.TELEGRAM_TEXT
    assert "[FIRING:200] CeleryTaskFailureRateHigh" in doc["text"]
    assert "billing.charge_000 fails" in doc["text"] and "more firing: https://alertd.example.com" in doc["text"]


async def test_teams_workflows_carries_the_notification_within_its_payload(store: SqliteStore, https: Captured) -> None:
    await page(one("teams", TEAMS_URL, "generic"), store)
    (req,) = https.to("logic.azure.com")
    assert "/workflows/a1b2c3d4e5f6/triggers/manual/paths/invoke" in (req.url or "")
    assert len(body_of(req)) <= limits.TEAMS_PAYLOAD
    (card,) = json.loads(body_of(req))["attachments"]  # an Adaptive Card: the texts are its TextBlocks
    texts = [b["text"] for b in card["content"]["body"] if b["type"] == "TextBlock"]
    assert texts[0] == "[FIRING:200] CeleryTaskFailureRateHigh"
    body = texts[1].replace("\\", "")  # Apprise escapes Markdown in a text body
    assert "billing.charge_000 fails" in body and "more firing: https://alertd.example.com" in body
