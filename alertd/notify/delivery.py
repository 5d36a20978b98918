"""Delivery through Apprise (or Slack's Web API): one receiver, with a timeout, retries, and redaction.

Receivers are resolved once at load: ${VAR} expanded, `apprise_file` read, every URL checked by
Apprise. The URLs are secrets (webhook tokens, integration keys): nothing here logs or returns
them; errors carry the redacted form (scheme and host only).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import apprise

from alertd.clock import Clock
from alertd.config import ReceiverConfig
from alertd.notify.pagerduty import acknowledge as pagerduty_acknowledge
from alertd.notify.pagerduty import is_pagerduty
from alertd.notify.slack_api import Sent, SlackApi, read_token
from alertd.notify.template import Rendered
from alertd.offloop import in_daemon_thread
from alertd.redact import redact_text, redact_url

log = logging.getLogger(__name__)

CONSOLE = "console://"
MAX_BACKOFF = 60.0
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ReceiverError(ValueError):
    """A receiver that cannot work: unknown env var, unreadable file, URL Apprise does not know."""

    def __init__(self, receiver: str, message: str) -> None:
        super().__init__(f"receiver {receiver!r}: {message}")


def expand_env(text: str, receiver: str = "") -> str:
    def sub(m: re.Match[str]) -> str:
        value = os.environ.get(m.group(1))
        if value is None:
            raise ReceiverError(receiver, f"environment variable {m.group(1)} is not set")
        return value

    return _ENV.sub(sub, text)


@dataclass
class Receiver:
    """A receiver ready to send: its config plus resolved (secret) URLs."""

    config: ReceiverConfig
    urls: list[str] = field(default_factory=list)  # never log these
    api: SlackApi | None = None  # a receiver that keeps one message per incident (slack_api)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def console(self) -> bool:
        if self.api is not None:
            return False
        return not self.urls or all(u.startswith(CONSOLE) for u in self.urls)

    def redacted(self) -> list[str]:
        if self.api is not None and self.config.slack_api is not None:
            return [f"slack_api {redact_url(self.config.slack_api.api_url)} {self.config.slack_api.channel}"]
        return [redact_url(u) for u in self.urls] or [CONSOLE]

    def secrets(self) -> list[str]:
        """Pieces of the URLs (and the API token) that must not appear in any log or error."""
        out = self.api.secrets() if self.api is not None else []
        for u in self.urls:
            out.append(u)
            out.extend(p for p in re.split(r"[/:@?&=]+", u.split("://", 1)[-1]) if len(p) >= 6)
        return out


def resolve_receiver(cfg: ReceiverConfig, base_dir: Path) -> Receiver:
    """Expand env vars and files, check each URL with Apprise. Raises ReceiverError (redacted)."""
    raw = list(cfg.apprise)
    if cfg.apprise_file:
        path = Path(cfg.apprise_file)
        path = path if path.is_absolute() else base_dir / path
        try:
            raw += [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        except OSError as e:
            raise ReceiverError(cfg.name, f"apprise_file {path}: {e.strerror}") from None
    urls = [expand_env(u, cfg.name) for u in raw]
    api = None
    if cfg.slack_api is not None:
        try:
            token = read_token(cfg.slack_api, base_dir, lambda t: expand_env(t, cfg.name))
        except OSError as e:
            raise ReceiverError(cfg.name, f"slack_api token_file {cfg.slack_api.token_file}: {e.strerror}") from None
        if not token:
            raise ReceiverError(cfg.name, "slack_api token is empty")
        api = SlackApi(cfg.slack_api, token)
    receiver = Receiver(cfg, urls, api)
    register_secrets(receiver)  # before Apprise sees them: it logs a URL it refuses, whole
    for u in urls:
        if u.startswith(CONSOLE):
            continue
        if apprise.Apprise.instantiate(u) is None:
            raise ReceiverError(
                cfg.name, f"Apprise does not accept the URL {redact_url(u)} (check the scheme and its fields)"
            )
    return receiver


@dataclass
class Update:
    """For a receiver that keeps one message per incident: which message, and what it is about."""

    refs: Mapping[str, Any]  # the message as the receiver last posted it ({}: post a new one)
    context: Mapping[str, Any]  # the template's context: the receiver lays the message out from it
    told: frozenset[str] = frozenset()  # fingerprints the message showed as firing: the rest is news


@dataclass
class DeliveryResult:
    receiver: str
    ok: bool
    attempts: int
    error: str = ""
    targets: list[str] = field(default_factory=list)  # redacted
    refs: dict[str, Any] = field(default_factory=dict)  # the message to update next time (Update receivers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "receiver": self.receiver,
            "ok": self.ok,
            "attempts": self.attempts,
            "error": self.error,
            "targets": self.targets,
        }


class _RedactingFilter(logging.Filter):
    """Apprise logs what its plugins say; strip receiver secrets before any handler sees it."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg = redact_text(record.getMessage(), sorted(self.secrets, key=len, reverse=True))
            record.args = None
        return True


_FILTER = _RedactingFilter()
logging.getLogger("apprise").addFilter(_FILTER)


def register_secrets(receiver: Receiver) -> None:
    _FILTER.secrets.update(receiver.secrets())


async def deliver(
    receiver: Receiver,
    message: Rendered,
    *,
    clock: Clock,
    resolved: bool,
    params: dict[str, str] | None = None,
    body_format: str = "text",
    on_retry: Callable[[int, str, float], Awaitable[None]] | None = None,
    update: Update | None = None,
    acknowledge: bool = False,
) -> DeliveryResult:
    """Send with retries and exponential backoff (on the injected clock). Never raises.

    `acknowledge`: the message tells that the alerts were acked; a PagerDuty URL gets the
    acknowledge event for its incident instead (alertd.notify.pagerduty).

    `on_retry(attempt, redacted_error, backoff)` is awaited before each retry so history shows
    every failed attempt, not only the last. `update` is for receivers with message refs
    (`receiver.api`): the result's `refs` is the message they posted or updated.
    """
    cfg = receiver.config
    if receiver.console:
        _print(receiver, message)
        return DeliveryResult(receiver.name, True, 1, targets=[CONSOLE])
    register_secrets(receiver)
    backoff = cfg.retry_backoff
    error = ""
    attempts = 0
    refs = dict(update.refs) if update is not None else {}
    for attempt in range(cfg.retries + 1):
        attempts = attempt + 1
        try:
            sent = await asyncio.wait_for(
                _attempt(receiver, message, resolved, params or {}, body_format, update, acknowledge),
                timeout=cfg.timeout,
            )
        except TimeoutError:
            sent = Sent(False, f"timed out after {cfg.timeout:g}s")
        except Exception as e:  # a plugin bug is one failed attempt, not a lost notification
            sent = Sent(False, f"{type(e).__name__}: {e}")
        if sent.ok:
            return DeliveryResult(receiver.name, True, attempts, targets=receiver.redacted(), refs=sent.refs)
        error = redact_text(sent.error, receiver.secrets())
        if attempt < cfg.retries:
            # the service asked for a pause (Slack's 429 Retry-After): wait at least that, bounded
            wait = max(backoff, min(sent.retry_after or 0.0, MAX_BACKOFF))
            log.warning("receiver %s: attempt %d failed (%s); retrying in %.0fs", receiver.name, attempts, error, wait)
            if on_retry is not None:
                await on_retry(attempts, error, wait)
            await clock.sleep(wait)
            backoff = min(backoff * 2, MAX_BACKOFF)
    return DeliveryResult(receiver.name, False, attempts, error=error, targets=receiver.redacted(), refs=refs)


async def _attempt(
    receiver: Receiver,
    message: Rendered,
    resolved: bool,
    params: dict[str, str],
    body_format: str,
    update: Update | None,
    acknowledge: bool = False,
) -> Sent:
    if receiver.api is not None:
        u = update or Update({}, {})
        return await receiver.api.send(message, u.context, u.refs, u.told, receiver.config.timeout)
    ok, error = await _send_once(receiver, message, resolved, params, body_format, acknowledge)
    return Sent(ok, error)


async def _send_once(
    receiver: Receiver,
    message: Rendered,
    resolved: bool,
    params: dict[str, str],
    body_format: str,
    acknowledge: bool = False,
) -> tuple[bool, str]:
    ap = apprise.Apprise()
    acks: list[str] = []
    for url in receiver.urls:
        if url.startswith(CONSOLE):
            continue
        full = _with_params(url, {**_timeouts(url, receiver.config.timeout), **params})
        if acknowledge and is_pagerduty(url):
            acks.append(full)
        else:
            ap.add(full)
    for url in acks:
        ok, error = await in_daemon_thread(
            functools.partial(pagerduty_acknowledge, url, receiver.config.timeout), name="pagerduty-ack"
        )
        if not ok:
            return False, error
    if not len(ap):
        return True, ""
    body, fmt = message.body, body_format
    if message.html is not None:
        body, fmt = message.html, apprise.NotifyFormat.HTML
    notify_type = apprise.NotifyType.SUCCESS if resolved else apprise.NotifyType.FAILURE
    result = await ap.async_notify(
        body=body or message.title, title=message.title, notify_type=notify_type, body_format=fmt
    )
    if result:
        return True, ""
    errors = [e.message for e in result.logs() if e.level in ("ERROR", "WARNING")]
    return False, "; ".join(errors[-3:]) or f"delivery failed ({getattr(result, 'status', 'error')})"


def _timeouts(url: str, timeout: float) -> dict[str, str]:
    """Apprise's own socket timeouts (4 s by default) from the receiver's `timeout`.

    The attempt is also bounded by asyncio.wait_for, but Apprise runs its plugins in a thread that
    a cancelled wait does not stop: without these, a slow receiver would outlive the attempt.
    A URL that sets cto/rto itself keeps them.
    """
    query = parse_qs(urlsplit(url).query)
    value = f"{max(timeout, 0.1):g}"
    return {k: value for k in ("cto", "rto") if k not in query}


def _with_params(url: str, params: dict[str, str]) -> str:
    if not params:
        return url
    return url + ("&" if "?" in url else "?") + urlencode(params)


def _print(receiver: Receiver, message: Rendered) -> None:
    # The quick start's receiver: what would have been sent, on stdout.
    rule = "─" * 72
    sys.stdout.write(f"{rule}\n[alertd → {receiver.name}] {message.title}\n{message.body}\n{rule}\n")
    sys.stdout.flush()
