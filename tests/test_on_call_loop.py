"""The on-call loop closed, end to end on one daemon: a task fails, the native Slack receiver posts
the page with Ack / Silence buttons carrying real signed links, the escalation policy pages the
secondary at 15 m, the Ack button (its link, POSTed as the confirmation page does) acknowledges
the group - the Slack message is updated in place with a thread reply and the paged secondary
hears it too - so the 45 m step never fires; when the failures stop and the alert resolves, the
ack ends by itself and everyone who was paged gets the resolved notice once, Slack on the same
message."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from alertd.silence.silences import State
from tests.api_fixtures import Harness, start_harness, write_config
from tests.notify_fixtures import Sink
from tests.slack_fixtures import FakeSlack

EXTERNAL = "https://alertd.example"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
async def oncall(tmp_path: Path, sink: Sink, slack: FakeSlack) -> AsyncIterator[Harness]:
    cfg = write_config(tmp_path, store=f"sqlite:///{tmp_path}/state.db", sink=sink)
    text = cfg.read_text().replace("api: {", f'api: {{external_url: "{EXTERNAL}", ', 1)
    head, _, _ = text.partition("route:\n")
    receivers = f"""  - name: ops
    slack_api: {{token: "${{SLACK_BOT_TOKEN}}", channel: "#ops", api_url: "{slack.url()}"}}
    retries: 0
  - name: manager
    apprise: ["json://127.0.0.1:{sink.port}/manager"]
    retries: 0
"""
    head = head.replace("receivers:\n", "receivers:\n" + receivers, 1)
    cfg.write_text(
        head
        + """route:
  receiver: ops
  group_by: [alertname]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 4h
  escalate:
    - {after: 15m, receiver: hook}
    - {after: 45m, receiver: manager}
"""
    )
    async for h in start_harness(cfg):
        yield h


def posts(sink: Sink, path: str) -> list[dict[str, Any]]:
    return [r["json"] for r in sink.requests if r["path"].startswith(path)]


def button(message: dict[str, Any], text: str) -> str:
    for block in message["blocks"]:
        for element in block.get("elements", []) if block["type"] == "actions" else []:
            if element["text"]["text"] == text:
                return str(element["url"])
    raise AssertionError(f"no {text!r} button in {message['blocks']}")


async def run_until(h: Harness, start: float, t: float, *, failing: bool) -> None:
    """Step the daemon to `t` seconds after `start`, a task failing every minute if `failing`."""
    while h.clock.now() < start + t:
        if failing and int(h.clock.now() - start) % 60 == 0:
            h.fail_task()
        await h.step(1)


async def test_page_escalate_ack_by_the_slack_button_then_resolve(
    oncall: Harness, sink: Sink, slack: FakeSlack
) -> None:
    h = oncall
    t0 = h.clock.now()
    await run_until(h, t0, 5, failing=True)
    (post,) = slack.posts()
    ts = next(iter(slack.messages))
    ack_url = button(post.body, "Ack")
    assert ack_url.startswith(f"{EXTERNAL}/link/ack?") and button(post.body, "Silence 2h").startswith(
        f"{EXTERNAL}/link/silence?"
    )
    assert posts(sink, "/hook") == []

    # 15 m after the first page, still firing and nobody has it: the secondary is paged
    await run_until(h, t0, 15 * 60 + 5, failing=True)
    (secondary,) = posts(sink, "/hook")
    assert "escalated" in secondary["message"] and posts(sink, "/manager") == []

    # 20 m: the Ack button (GET shows the confirmation page; its form POSTs)
    await run_until(h, t0, 20 * 60, failing=True)
    link = urlsplit(ack_url)
    page = await h.call("GET", f"{link.path}?{link.query}", token=None)
    assert page.status == 200 and h.daemon.silences.query() == []
    r = await h.call("POST", f"{link.path}?{link.query}", "by=ana", token=None, headers=FORM)
    assert r.status == 200, r.text
    await h.daemon.acking.settle()
    assert len(slack.posts()) == 1 and len(slack.of("chat.update")) >= 1  # the same message, updated
    assert slack.of("chat.update")[-1].body["ts"] == ts
    assert any("acknowledged by ana" in reply for reply in slack.replies[ts]), slack.replies
    assert "acknowledged by ana" in posts(sink, "/hook")[-1]["message"]  # the paged secondary hears it
    told = len(posts(sink, "/hook"))

    # acked: the 45 m step never fires, and nothing else pages while it fails on
    await run_until(h, t0, 50 * 60, failing=True)
    assert posts(sink, "/manager") == [] and len(posts(sink, "/hook")) == told and len(slack.posts()) == 1

    # the failures stop; 10 m later (resolve_after) the alert resolves: the ack ends by itself,
    # and everyone paged gets the resolved notice once - Slack on its first message
    await run_until(h, t0, 62 * 60, failing=False)
    (ack,) = h.daemon.silences.query()
    assert ack.state(h.clock.now()) is State.EXPIRED
    resolved = [p for p in posts(sink, "/hook") if p["type"] == "success"]
    assert len(resolved) == 1 and len(posts(sink, "/hook")) == told + 1
    assert posts(sink, "/manager") == []
    assert len(slack.posts()) == 1 and slack.of("chat.update")[-1].body["ts"] == ts
    assert "RESOLVED" in slack.messages[ts]["text"].upper()
    await run_until(h, t0, 70 * 60, failing=False)
    assert len(posts(sink, "/hook")) == told + 1 and len(slack.posts()) == 1  # once
