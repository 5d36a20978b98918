"""Real endpoints for delivery tests: an aiohttp sink that records what receivers send, and the
requests Apprise's plugins for outside services would send, captured at their transport."""

from __future__ import annotations

import asyncio
import email
import email.message
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import requests.adapters
from aiohttp import web

from tests.conftest import free_port
from tests.waiting import T0


@dataclass
class Sink:
    """An HTTP server that records every request; `status` and `delay` make it fail or be slow."""

    port: int
    requests: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    delay: float = 0.0
    fail_times: int = 0  # answer 500 to this many requests first, then `status`

    def url(self, scheme: str = "json", path: str = "/hook") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.delay:
            await asyncio.sleep(self.delay)
        self.requests.append(
            {"path": request.path, "headers": dict(request.headers), "body": body, "json": _json(body)}
        )
        status = self.status
        if self.fail_times > 0:
            self.fail_times -= 1
            status = 500
        return web.Response(status=status, text="ok" if status < 400 else "nope")

    def titles(self) -> list[str]:
        return [r["json"].get("title", "") for r in self.requests if isinstance(r["json"], dict)]


def _json(body: bytes) -> Any:
    import json

    try:
        return json.loads(body)
    except ValueError:
        return None


@pytest.fixture
async def store(tmp_path: Any) -> AsyncIterator[Any]:
    """A real SQLite store in the test's directory (notification log, history, claims)."""
    from alertd.store.sqlite import SqliteStore

    s = SqliteStore(tmp_path / "state.db")
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    s = Sink(free_port())
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", s.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", s.port).start()
    yield s
    await runner.cleanup()


sink2 = sink


class ThreadedSink:
    """The same recording endpoint for synchronous tests that drive alertd as a subprocess.

    Each request is recorded when it arrives, with `status` None until it is answered. For fault
    injection: `statuses` answers the next requests with these codes in order (then 200), `delay`
    waits before every answer, and `hold(n)` keeps the next n requests open until `release()`, so
    a test can kill the sender while its POST is in flight.
    """

    def __init__(self) -> None:
        import threading
        import time
        from collections import deque
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.statuses: deque[int] = deque()
        self.delay = 0.0
        self._hold = 0
        self._released = threading.Event()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request: dict[str, Any] = {
                    "path": self.path,
                    "json": _json(body),
                    "body": body,
                    "at": time.time(),
                    "status": None,
                }
                with sink.lock:
                    sink.requests.append(request)
                    held = sink._hold > 0
                    if held:
                        sink._hold -= 1
                    status = sink.statuses.popleft() if sink.statuses else 200
                if held:
                    sink._released.wait(60)
                if sink.delay:
                    time.sleep(sink.delay)
                try:
                    self.send_response(status)
                    self.end_headers()
                    self.wfile.write(b"ok" if status < 400 else b"nope")
                except OSError:  # the sender is gone (killed mid-request): the body still arrived
                    pass
                request["status"] = status

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, scheme: str = "json", path: str = "/hook") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def titles(self) -> list[str]:
        with self.lock:
            return [r["json"].get("title", "") for r in self.requests if isinstance(r["json"], dict)]

    def hold(self, n: int = 1) -> None:
        """Keep the next `n` requests open (received, unanswered) until release()."""
        with self.lock:
            self._hold = n
            self._released.clear()

    def release(self) -> None:
        """Answer the held requests (and let later ones through)."""
        with self.lock:
            self._hold = 0
        self._released.set()

    def held(self) -> list[dict[str, Any]]:
        """Requests received and not answered yet."""
        with self.lock:
            return [r for r in self.requests if r["status"] is None]

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def http_sink() -> Any:
    s = ThreadedSink()
    yield s
    s.close()


def make_alert(name: str, state: Any = None, *, starts_at: float = T0, **labels: str) -> Any:
    """A firing (or resolved) alert as the rules engine hands it to the notifier."""
    from alertd.alert import Alert, AlertState

    st = state or AlertState.FIRING
    return Alert(
        labels={"alertname": name, **labels},
        annotations={"summary": f"{name} on {labels.get('queue', '-')}"},
        state=st,
        starts_at=starts_at,
        ends_at=starts_at + 1 if st is AlertState.RESOLVED else None,
    )


class Stepper:
    """Drives a Notifier on a VirtualClock: advance in steps, re-putting the current alerts and
    flushing due groups at each step, as the daemon does after every rules tick."""

    def __init__(self, notifier: Any, clock: Any, step: float = 1.0) -> None:
        self.notifier = notifier
        self.clock = clock
        self.step = step

    async def until(self, t: float, alerts: list[Any] | None = None) -> None:
        while self.clock.now() < t:
            self.clock.advance(min(self.step, t - self.clock.now()))
            if alerts is not None:
                self.notifier.put(alerts)
            await self.notifier.flush_due()


def one_receiver(
    sink: Sink,
    receiver_extra: str = "",
    route_extra: str = "",
    extra: str = "",
    *,
    group_wait: str = "30s",
    group_interval: str = "1m",
) -> str:
    """alertd.yaml with one receiver, `team`, posting to the sink's /team, grouped by alertname."""
    return f"""
receivers:
  - name: team
    apprise: ["{sink.url(path="/team")}"]
    retries: 0
{receiver_extra}
route:
  receiver: team
  group_by: [alertname]
  group_wait: {group_wait}
  group_interval: {group_interval}
  repeat_interval: 4h
{route_extra}
{extra}
"""


def sink_posts(sink: Sink, path: str) -> list[dict[str, Any]]:
    """JSON bodies Apprise's json:// plugin posted to `path` (title, message, type)."""
    return [r["json"] for r in sink.requests if r["path"] == path]


class Captured:
    """Requests the real Apprise plugins would have sent (Slack, PagerDuty, Telegram, Teams...),
    answered as each service answers a success."""

    def __init__(self) -> None:
        self.requests: list[requests.PreparedRequest] = []

    def to(self, host: str) -> list[requests.PreparedRequest]:
        return [r for r in self.requests if host in (r.url or "")]

    def json(self, i: int = -1) -> Any:
        return json.loads(body_of(self.requests[i]))


def body_of(r: requests.PreparedRequest) -> bytes:
    return r.body if isinstance(r.body, bytes) else str(r.body or "").encode()


@pytest.fixture
def https(monkeypatch: pytest.MonkeyPatch) -> Iterator[Captured]:
    """Intercept at requests' transport adapter: the plugin code runs for real, nothing leaves the host."""
    captured = Captured()

    def send(self: Any, request: requests.PreparedRequest, **kw: Any) -> requests.Response:
        captured.requests.append(request)
        r = requests.Response()
        url = request.url or ""
        r.status_code = 202 if "pagerduty" in url else 200
        r._content = b"ok" if "slack" in url else b'{"ok": true, "status": "success", "result": {}}'
        r.url, r.request = url, request
        return r

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
    yield captured


class Mailbox:
    """A real SMTP server's inbox (aiosmtpd); `url` is the Apprise mailto:// URL that reaches it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.messages: list[email.message.Message] = []
        self.url = f"mailto://127.0.0.1:{port}?from=alertd@example.com&to=oncall@example.com&mode=insecure"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    from aiosmtpd.controller import Controller

    box = Mailbox(free_port())
    smtp = Controller(box, hostname="127.0.0.1", port=box.port)
    smtp.start()
    yield box
    smtp.stop()


async def through_backoffs(notifier: Any, clock: Any) -> None:
    """Until the notifier's sends are done, wake each retry backoff at its deadline on the virtual
    clock. Time stands still while an attempt is in flight: only a sleeper due within a backoff's
    bound (60 s) is woken, so a claim's renewal far off (ha.claim_ttl) is left alone."""
    from alertd.notify.delivery import MAX_BACKOFF

    while notifier._inflight:
        await asyncio.sleep(0.01)
        deadline = clock.next_deadline()
        if deadline is not None and deadline - clock.now() <= MAX_BACKOFF:
            clock.set(deadline)
