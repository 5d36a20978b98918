"""A Slack receiver on the Web API with a bot token: one message per incident, kept current.

The first notification of a group posts a message (`chat.postMessage`); every later one for the
same incident (new alerts, resolved, repeat, and whatever a later reason is) updates that message
in place (`chat.update` of its channel and ts) and replies in its thread with what changed. The
message's ref (channel id, ts) travels in the notification log entry (`Entry.refs`), which is in
the store: a restarted alertd and the other HA replicas update the same message.

A deleted message (`message_not_found`) is posted anew and its ref kept. The token is a secret:
it is only ever in the Authorization header; errors name the method and Slack's error code.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from alertd.config.routing import SlackApiConfig
from alertd.notify.slack_blocks import blocks, change_text, fallback_text
from alertd.notify.template import Rendered

REF = "slack"  # the key of this receiver kind's ref in Entry.refs
# chat.update cannot reach the message any more: post the incident's message again
GONE = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})


@dataclass
class Sent:
    """One attempt's outcome; `refs` is the message to update next time."""

    ok: bool
    error: str = ""
    refs: dict[str, Any] = field(default_factory=dict)
    retry_after: float | None = None  # Slack asked to wait this long (HTTP 429)


class SlackCallError(Exception):
    def __init__(self, method: str, error: str, retry_after: float | None = None) -> None:
        super().__init__(f"Slack {method}: {error}")
        self.error = error
        self.retry_after = retry_after


def read_token(cfg: SlackApiConfig, base_dir: Path, expand: Any) -> str:
    """The bot token from `token` (${VAR} expanded by `expand`) or from `token_file`."""
    if cfg.token is not None:
        return str(expand(cfg.token)).strip()
    assert cfg.token_file is not None
    path = Path(cfg.token_file)
    path = path if path.is_absolute() else base_dir / path
    return path.read_text().strip()


class SlackApi:
    def __init__(self, cfg: SlackApiConfig, token: str) -> None:
        self.url = cfg.api_url.rstrip("/") + "/"
        self.channel = cfg.channel
        self._token = token  # never logged: only the Authorization header carries it

    def secrets(self) -> list[str]:
        return [self._token] if self._token else []

    async def send(
        self,
        rendered: Rendered,
        ctx: Mapping[str, Any],
        refs: Mapping[str, Any],
        told: Collection[str],
        timeout: float,
    ) -> Sent:
        """Post, or update and reply in the thread. Never raises for Slack's or the network's errors."""
        ref = refs.get(REF)
        if not (isinstance(ref, Mapping) and ref.get("channel") and ref.get("ts")):
            ref = None  # none yet (or unreadable): post the incident's message
        payload = {"text": fallback_text(rendered), "blocks": blocks(rendered, ctx)}
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
                if ref:
                    try:
                        await self._call(
                            session, "chat.update", {"channel": ref["channel"], "ts": ref["ts"], **payload}
                        )
                    except SlackCallError as e:
                        if e.error not in GONE:
                            raise
                        ref = None  # deleted: post it again, and update that one from now on
                    else:
                        reply = {"channel": ref["channel"], "thread_ts": ref["ts"], "text": change_text(ctx, told)}
                        await self._call(session, "chat.postMessage", reply)
                        return Sent(True, refs={REF: dict(ref)})
                doc = await self._call(session, "chat.postMessage", {"channel": self.channel, **payload})
                return Sent(True, refs={REF: {"channel": str(doc["channel"]), "ts": str(doc["ts"])}})
        except SlackCallError as e:
            return Sent(False, str(e), dict(refs), e.retry_after)
        except aiohttp.ClientError as e:
            return Sent(False, f"Slack API unreachable: {type(e).__name__}: {e}", dict(refs))

    async def _call(self, session: aiohttp.ClientSession, method: str, body: Mapping[str, Any]) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self._token}", "Content-Type": "application/json; charset=utf-8"}
        async with session.post(self.url + method, json=body, headers=headers) as resp:
            if resp.status == 429:
                raise SlackCallError(method, "ratelimited (HTTP 429)", _retry_after(resp.headers.get("Retry-After")))
            try:
                doc = await resp.json(content_type=None)
            except ValueError:
                doc = None
            if not isinstance(doc, dict):
                raise SlackCallError(method, f"HTTP {resp.status}, not a Slack API answer")
            if not doc.get("ok"):
                raise SlackCallError(method, str(doc.get("error") or f"HTTP {resp.status}"))
            if method == "chat.postMessage" and not (doc.get("channel") and doc.get("ts")):
                raise SlackCallError(method, "answer without channel and ts")
            return doc


def _retry_after(value: str | None) -> float | None:
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None
