"""What one message may hold, per receiver kind, and fitting a rendered group into it.

A service refuses (or cuts) a message past its limits: Slack answers 400 for a section over 3000
characters or a message over 50 blocks (alertmanager#2769: a group of 20+ alerts never arrived),
PagerDuty cuts a summary at 1024, Telegram refuses a text over 4096. A group too large for one
message is summarised instead: the first alerts, then "+N more" and the link to alertd's page
(`external_url`). Templates read `max_alerts` (how many alerts to list); the renderer lowers it
until the message fits, then clips whatever a custom template still made too long.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from alertd.notify.template import Rendered

ELLIPSIS = "…"
_NEWLINES = re.compile(r"\s*[\r\n]+\s*")

# Slack's documented limits (api.slack.com/reference/block-kit/blocks, chat.postMessage).
SLACK_BLOCKS = 50  # blocks per message
SLACK_SECTION = 3000  # characters of a section's text
SLACK_HEADER = 150  # characters of a header block's text
SLACK_TEXT = 40_000  # characters of a message's `text` (Slack truncates past it)
SLACK_CONTEXT_ELEMENTS = 10  # elements of a context block
SLACK_BUTTON_TEXT = 75  # characters of a button's label
SLACK_URL = 3000  # characters of a button's url
PAGERDUTY_SUMMARY = 1024  # characters of an event's summary
PAGERDUTY_EVENT = 512 * 1024  # bytes of an event (custom_details included)
TELEGRAM_TEXT = 4096  # characters of a message, title included
TEAMS_PAYLOAD = 28 * 1024  # bytes of a Teams (Workflows) card
EMAIL_SUBJECT = 255  # RFC 5322 allows 998 per line; mail clients show far less


@dataclass(frozen=True)
class Limits:
    kind: str
    title: int  # characters of the title (subject, header), on one line
    body: int  # characters of the body (and of the HTML part, for email)
    message: int | None = None  # title and body together, where the service sends one text
    alerts: int = 1000  # alerts a message lists before "+N more"

    def tighter(self, other: Limits) -> Limits:
        message = min((m for m in (self.message, other.message) if m is not None), default=None)
        kind = self.kind if self.kind == other.kind else f"{self.kind}+{other.kind}"
        return Limits(
            kind, min(self.title, other.title), min(self.body, other.body), message, min(self.alerts, other.alerts)
        )


# Slack recommends at most 4000 characters of text (Apprise's webhook plugin sends the body as
# an attachment's text); the native receiver's blocks have their own limits above.
SLACK = Limits("slack", title=SLACK_HEADER, body=4000, alerts=10)
# Apprise sends PagerDuty the title and body together as the event's summary.
PAGERDUTY = Limits("pagerduty", title=PAGERDUTY_SUMMARY, body=PAGERDUTY_SUMMARY, message=PAGERDUTY_SUMMARY, alerts=10)
EMAIL = Limits("email", title=EMAIL_SUBJECT, body=200_000, alerts=50)
# Apprise sends Telegram the title and body as one text; a margin for its formatting
TELEGRAM = Limits("telegram", title=256, body=4000, message=4000, alerts=10)
# the card's JSON around the text, and escaping, take part of Teams' ~28 KB
TEAMS = Limits("teams", title=256, body=20_000, alerts=20)
GENERIC = Limits("generic", title=1000, body=1_000_000)  # json://, webhooks: nothing to protect but memory

_BY_SCHEME = {
    "slack": SLACK,
    "pagerduty": PAGERDUTY,
    "mailto": EMAIL,
    "mailtos": EMAIL,
    "tgram": TELEGRAM,
    "workflow": TEAMS,
    "workflows": TEAMS,
    "msteams": TEAMS,
}
# the services' own https:// webhook URLs, which Apprise also accepts
_BY_HOST = {
    "hooks.slack.com": SLACK,
    "events.pagerduty.com": PAGERDUTY,
    "api.telegram.org": TELEGRAM,
    ".logic.azure.com": TEAMS,
    ".powerplatform.com": TEAMS,
}


def limits_of(url: str) -> Limits:
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return GENERIC
    by_host = next((lim for h, lim in _BY_HOST.items() if host == h or (h[0] == "." and host.endswith(h))), None)
    return _BY_SCHEME.get(parts.scheme.lower()) or by_host or GENERIC


def receiver_limits(urls: Iterable[str], *, native_slack: bool = False) -> Limits:
    """The tightest limits of a receiver's targets: one rendered message goes to all of them."""
    out = SLACK if native_slack else None
    for url in urls:
        lim = limits_of(url)
        out = lim if out is None else out.tighter(lim)
    return out or GENERIC


def clip(text: str, limit: int) -> str:
    """At most `limit` characters, marked as cut."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + ELLIPSIS


def one_line(text: str) -> str:
    return _NEWLINES.sub(" ", text).strip()


def _size(r: Rendered, limits: Limits) -> float:
    """How far over its limits a message is (<= 1 fits)."""
    ratios = [len(r.title) / limits.title, len(r.body) / limits.body, len(r.html or "") / limits.body]
    if limits.message is not None:
        ratios.append((len(r.title) + len(r.body) + 2) / limits.message)
    return max(ratios)


def fits(r: Rendered, limits: Limits) -> bool:
    return _size(r, limits) <= 1


def fit(render: Callable[[int], Rendered], limits: Limits) -> Rendered:
    """Render with `max_alerts` lowered until the message fits, then clip what is still over.

    `render(n)` renders the group listing at most n alerts (the rest as "+N more").
    """
    shown = limits.alerts
    rendered = render(shown)
    while not fits(rendered, limits) and shown > 1:
        # in proportion to the excess (a few renders even for 1000 alerts), at least one fewer
        shown = max(1, min(shown - 1, int(shown / _size(rendered, limits))))
        rendered = render(shown)
    return clip_rendered(rendered, limits)


def clip_rendered(r: Rendered, limits: Limits) -> Rendered:
    """The last resort for a template that ignores `max_alerts`: cut, never refused."""
    title = clip(one_line(r.title), limits.title)
    body_limit = limits.body
    if limits.message is not None:
        body_limit = min(body_limit, max(limits.message - len(title) - 2, 0))
    html = r.html if r.html is None or len(r.html) <= limits.body else None  # cut HTML is broken HTML
    return replace(r, title=title, body=clip(r.body, body_limit), html=html)
