"""Keep secrets out of logs, errors and API output.

Broker URLs, store URLs and Apprise URLs carry passwords, tokens and webhook keys. Anything that
prints or returns one passes it through here first. Config documents are redacted by key name
(`redact_config`), not field by field, so a secret in a new or free-form setting (transport
options) is hidden without anyone remembering to list it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
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


# Words that make a setting secret wherever it sits: `password` in broker_transport_options'
# sentinel_kwargs, `api_key` in some future receiver option, `token`... Matched as whole words of
# the key (split at _, -, . and camelCase humps), so `global_keyprefix` stays readable.
_SECRET_WORDS = frozenset(
    {"password", "passwd", "pwd", "pass", "passphrase", "secret", "token", "key", "apikey"}
    | {"credential", "credentials", "auth", "authorization", "cookie", "private", "signature", "dsn"}
)
_PATH_WORDS = frozenset({"file", "path", "dir"})  # `tokens_file` names where a secret is, not the secret
_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
REDACTED = "***"


def is_secret_key(key: str) -> bool:
    """Whether a setting named `key` holds a secret (by the words of its name)."""
    words = [w.lower() for w in _WORD.findall(key)]
    return bool(words) and words[-1] not in _PATH_WORDS and not _SECRET_WORDS.isdisjoint(words)


def redact_config(value: Any, key: str = "") -> Any:
    """A copy of a config document safe to show: values of secret-named keys replaced, at any
    depth, and every URL in any string passed through redact_url."""
    if key and is_secret_key(key):
        return REDACTED if value not in (None, "", [], {}) else value
    if isinstance(value, Mapping):
        return {k: redact_config(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_config(v) for v in value]
    if isinstance(value, str) and "://" in value:
        return redact_url(value)
    return value
