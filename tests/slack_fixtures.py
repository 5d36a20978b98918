"""A local Slack Web API for the native Slack receiver: chat.postMessage and chat.update answered
as Slack documents them (ok, channel id, ts; ok:false with an error code; 429 with Retry-After),
and Slack's message limits enforced as Slack does (invalid_blocks, msg_too_long)."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import free_port

BOT_TOKEN = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"
CHANNEL_ID = "C0123OPS"


@dataclass
class Call:
    method: str
    body: dict[str, Any]
    authorization: str


@dataclass
class FakeSlack:
    port: int
    calls: list[Call] = field(default_factory=list)
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)  # ts -> current body
    replies: dict[str, list[str]] = field(default_factory=dict)  # thread ts -> reply texts
    # answers forced on the next calls, in order: (HTTP status, JSON body, headers)
    answers: deque[tuple[int, dict[str, Any], dict[str, str]]] = field(default_factory=deque)
    delay: float = 0.0  # seconds before answering (a slow Slack)
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(247))

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def posts(self) -> list[Call]:
        """Top-level messages posted (not thread replies)."""
        return [c for c in self.of("chat.postMessage") if "thread_ts" not in c.body]

    def delete(self, ts: str) -> None:
        self.messages.pop(ts)

    async def handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        body = await request.json()
        auth = request.headers.get("Authorization", "")
        self.calls.append(Call(method, body, auth))
        if self.delay:
            await asyncio.sleep(self.delay)
        if auth != f"Bearer {BOT_TOKEN}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if self.answers:
            status, doc, headers = self.answers.popleft()
            return web.json_response(doc, status=status, headers=headers)
        problem = _over_limits(body)
        if problem:
            return web.json_response({"ok": False, "error": problem})
        if method == "chat.postMessage":
            return self._post(body)
        if method == "chat.update":
            ts = body.get("ts", "")
            if body.get("channel") != CHANNEL_ID:
                return web.json_response({"ok": False, "error": "channel_not_found"})
            if ts not in self.messages:
                return web.json_response({"ok": False, "error": "message_not_found"})
            self.messages[ts] = body
            return web.json_response({"ok": True, "channel": CHANNEL_ID, "ts": ts, "text": body.get("text", "")})
        return web.json_response({"ok": False, "error": "unknown_method"}, status=404)

    def _post(self, body: dict[str, Any]) -> web.Response:
        if body.get("channel") not in ("#ops", CHANNEL_ID):
            return web.json_response({"ok": False, "error": "channel_not_found"})
        ts = f"1503435956.{next(self._ts):06d}"
        thread = body.get("thread_ts")
        if thread is not None:
            if thread not in self.messages:
                return web.json_response({"ok": False, "error": "thread_not_found"})
            self.replies.setdefault(thread, []).append(body["text"])
        else:
            self.messages[ts] = body
        message = {"type": "message", "bot_id": "B123", "text": body.get("text", ""), "ts": ts}
        return web.json_response({"ok": True, "channel": CHANNEL_ID, "ts": ts, "message": message})


def _over_limits(body: dict[str, Any]) -> str:
    """Slack's answer to a message past its limits (api.slack.com/reference/block-kit/blocks)."""
    if len(body.get("text", "")) > 40_000:
        return "msg_too_long"
    blocks = body.get("blocks", [])
    if len(blocks) > 50:
        return "invalid_blocks"
    for b in blocks:
        text = b.get("text", {}).get("text", "")
        if (b["type"] == "header" and len(text) > 150) or (b["type"] == "section" and len(text) > 3000):
            return "invalid_blocks"
        if b["type"] == "context" and (len(b["elements"]) > 10 or any(len(e["text"]) > 3000 for e in b["elements"])):
            return "invalid_blocks"
    return ""


@pytest.fixture
async def slack(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeSlack]:
    """A local Slack API, and the bot token the receivers' `${SLACK_BOT_TOKEN}` names."""
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
    async with fake_slack() as s:
        yield s


@asynccontextmanager
async def fake_slack() -> AsyncIterator[FakeSlack]:
    s = FakeSlack(free_port())
    app = web.Application()
    app.router.add_post("/api/{method}", s.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", s.port).start()
    try:
        yield s
    finally:
        await runner.cleanup()


def slack_receiver(slack: FakeSlack, extra: str = "", *, repeat: str = "1h", retries: int = 0) -> str:
    """alertd.yaml with one native Slack receiver, `ops`, grouped by alertname."""
    return f"""
receivers:
  - name: ops
    slack_api:
      token: ${{SLACK_BOT_TOKEN}}
      channel: "#ops"
      api_url: {slack.url()}
    retries: {retries}
{extra}
route:
  receiver: ops
  group_by: [alertname]
  group_wait: 30s
  group_interval: 1m
  repeat_interval: {repeat}
"""
