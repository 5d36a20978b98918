"""Keep secrets out of logs, errors and API output.

Broker URLs, store URLs and Apprise URLs carry passwords, tokens and webhook keys. Anything that
prints or returns one passes it through here first.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# Schemes whose host part is a real host name, not a token.
_HOST_SCHEMES = frozenset(
    {"redis", "rediss", "sentinel", "amqp", "amqps", "pyamqp", "sqlite", "http", "https"}
    | {"json", "jsons", "xml", "xmls", "form", "forms", "mailto", "mailtos", "console"}
)

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^@/]*@)")


def redact_url(url: str) -> str:
    """scheme://host[:port]/path with any user, password, query and fragment replaced by '***'."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if not parts.scheme:
        return "***"
    if parts.scheme not in _HOST_SCHEMES:
        # Apprise service URLs (slack://, pagerduty://, tgram://, ...) keep tokens where a host
        # would be: nothing after the scheme is safe to show.
        return f"{parts.scheme}://***"
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    auth = "***@" if parts.username or parts.password else ""
    path = parts.path if parts.scheme in {"redis", "rediss", "amqp", "amqps", "pyamqp", "sqlite"} else ""
    tail = "?***" if parts.query else ""
    return f"{parts.scheme}://{auth}{host}{path}{tail}"


def redact_text(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """Remove userinfo from any URL inside free text, and each known secret string."""
    out = _USERINFO.sub(lambda m: f"{m.group('scheme')}***@", text)
    for s in secrets:
        if s and len(s) >= 4:
            out = out.replace(s, "***")
    return out
