"""The native Slack receiver's message: Block Kit blocks from the template context, within limits.

A header, one section per alert (its distinct labels in a context block under it), "+N more"
with the link to alertd when the group is larger than a message holds, the labels the alerts
share, and the Ack / Silence 2h buttons when the group has those links. Slack answers 400
(`invalid_blocks`) to a message over its limits (alertmanager#2769), so every text is clipped and
the alerts listed are bounded by the 50 blocks.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from alertd.notify.limits import (
    SLACK_BLOCKS,
    SLACK_BUTTON_TEXT,
    SLACK_CONTEXT_ELEMENTS,
    SLACK_HEADER,
    SLACK_SECTION,
    SLACK_TEXT,
    SLACK_URL,
    clip,
    one_line,
)
from alertd.notify.template import Rendered

ALERT_TEXT = 1500  # of a section's 3000: two lines of summary and a runbook, not a whole payload
LABELS_TEXT = 1000
MAX_ALERTS = 20  # listed in full; the rest are "+N more" (a message is read, not scrolled)
REPLY_ALERTS = 5
FIXED_BLOCKS = 5  # header, counts, "+N more", shared labels, buttons


def escape(text: Any) -> str:
    """Slack's mrkdwn control characters in values (task names, exception texts)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _mrkdwn(text: str, limit: int = SLACK_SECTION) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": clip(text, limit)}


def _section(text: str, limit: int = SLACK_SECTION) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(text, limit)}


def _labels(labels: Mapping[str, Any]) -> dict[str, Any] | None:
    if not labels:
        return None
    text = " ".join(f"`{escape(k)}={escape(v)}`" for k, v in labels.items())
    return {"type": "context", "elements": [_mrkdwn(text, LABELS_TEXT)][:SLACK_CONTEXT_ELEMENTS]}


def _firing_text(a: Mapping[str, Any]) -> str:
    ann = a.get("annotations", {})
    what = escape(one_line(str(ann.get("summary") or a.get("labels", {}).get("alertname", "alert"))))
    value = f" (value {escape(a['value_text'])})" if a.get("value_text") else ""
    lines = [f":red_circle: *{clip(what, 500)}*{value} since {escape(a.get('since', ''))}"]
    if ann.get("runbook_url"):
        lines.append(f"<{escape(ann['runbook_url'])}|Runbook>")
    elif ann.get("runbook"):
        lines.append(f"_Runbook:_ {escape(clip(str(ann['runbook']), 300))}")
    if ann.get("flapping"):
        lines.append(f"_{escape(ann['flapping'])}_")
    return "\n".join(lines)


def _resolved_text(a: Mapping[str, Any]) -> str:
    return f":large_green_circle: {escape(a.get('resolved_text') or a.get('fingerprint', ''))}"


def _button(text: str, url: str, action_id: str) -> dict[str, Any]:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": clip(text, SLACK_BUTTON_TEXT)},
        "url": url,
        "action_id": action_id,
    }


def blocks(rendered: Rendered, ctx: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The message's blocks: at most 50, each text within Slack's limits."""
    out: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": clip(one_line(rendered.title), SLACK_HEADER)}}
    ]
    firing: list[Mapping[str, Any]] = list(ctx.get("firing", []))
    resolved: list[Mapping[str, Any]] = list(ctx.get("resolved", []))
    if not firing and not resolved:  # no context (a test send): the rendered text is all there is
        return [*out, _section(escape(rendered.body) or " ")]
    reason = f" · _{escape(ctx['reason'])}_" if ctx.get("reason") else ""
    out.append(_section(f"*{len(firing)} firing*, {len(resolved)} resolved{reason}"))
    room = SLACK_BLOCKS - FIXED_BLOCKS
    shown = 0
    for a in firing[:MAX_ALERTS]:
        if room < 2:
            break
        out.append(_section(_firing_text(a), ALERT_TEXT))
        room -= 1
        labels = _labels(a.get("distinct_labels", {}))
        if labels is not None:
            out.append(labels)
            room -= 1
        shown += 1
    shown_resolved = 0
    for a in resolved[: max(MAX_ALERTS - shown, 0)]:
        if room < 1:
            break
        out.append(_section(_resolved_text(a), ALERT_TEXT))
        room -= 1
        shown_resolved += 1
    more = len(firing) - shown + len(resolved) - shown_resolved
    if more:
        url = str(ctx.get("external_url") or "")
        link = f": <{escape(url)}|all alerts in alertd>" if url else ""
        out.append(_section(f"+{more} more{link}"))
    shared = _labels(ctx.get("common_labels", {}))
    if shared is not None:
        out.append(shared)
    buttons = [
        _button(text, str(ctx.get(key) or ""), key)
        for text, key in (("Ack", "ack_url"), ("Silence 2h", "silence_url"))
        if ctx.get(key) and len(str(ctx[key])) <= SLACK_URL
    ]
    if buttons:
        out.append({"type": "actions", "elements": buttons})
    return out[:SLACK_BLOCKS]


def fallback_text(rendered: Rendered) -> str:
    """`text`: what notifications and screen readers show, and what a client without blocks shows."""
    return clip(f"{rendered.title}\n{rendered.body}".strip(), SLACK_TEXT)


def change_text(ctx: Mapping[str, Any], told: Collection[str]) -> str:
    """The thread reply: what this notification changes in the message above."""
    firing: list[Mapping[str, Any]] = list(ctx.get("firing", []))
    resolved: list[Mapping[str, Any]] = list(ctx.get("resolved", []))
    new = [a for a in firing if a.get("fingerprint") not in told]
    lines = [f"*{escape(ctx.get('reason') or 'update')}*: {len(firing)} firing, {len(resolved)} resolved"]
    lines += [f"• new: {escape(clip(_summary(a), 300))}" for a in new[:REPLY_ALERTS]]
    lines += [f"• {escape(clip(str(a.get('resolved_text', '')), 300))}" for a in resolved[:REPLY_ALERTS]]
    more = max(len(new) - REPLY_ALERTS, 0) + max(len(resolved) - REPLY_ALERTS, 0)
    if more:
        lines.append(f"+{more} more")
    return clip("\n".join(lines), SLACK_SECTION)


def _summary(a: Mapping[str, Any]) -> str:
    return one_line(str(a.get("annotations", {}).get("summary") or a.get("labels", {}).get("alertname", "alert")))
