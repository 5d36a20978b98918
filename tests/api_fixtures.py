"""An in-process alertd for API tests: the real Daemon (engine, notifier, store, silences, auth)
on a virtual clock, its real aiohttp app on a real port, fed Celery events directly.

Only ingest (broker connection) and the background loops are left out: tests move the clock,
tick the engine and flush the notifier themselves, so every step is deterministic and fast.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
import uuid as uuidlib
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
import yaml
from aiohttp import web

from alertd.api.app import make_app
from alertd.auth import hash_password, hash_token
from alertd.clock import VirtualClock
from alertd.config import load_config
from alertd.daemon import Daemon
from tests.conftest import ROOT, free_port
from tests.daemon_fixtures import FAIL_RULES
from tests.notify_fixtures import Sink

SILENCE_TOKEN = "alertd_api_test_silence_token_0123456789"
READ_TOKEN = "alertd_api_test_read_token_0123456789abcd"
ADMIN_TOKEN = "alertd_api_test_admin_token_0123456789abc"
GRAFANA_USER, GRAFANA_PASSWORD = "grafana", "correct horse battery"
SINK_SECRET = "s3cr3t-webhook-path-4f2a"  # part of the receiver URL: must never show in a response

RULES = FAIL_RULES  # the same event rule the subprocess end-to-end tests use

SPEC_PATH = ROOT.parent / "shared" / "reference" / "alertmanager-api-v2.yaml"
SPEC: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())


def conforms(body: Any, ref: str) -> None:
    """Validate `body` against a definition of Alertmanager's v2 spec ("[x]" = array of x)."""
    root = (
        {"$ref": f"#/definitions/{ref}"}
        if not ref.startswith("[")
        else {
            "type": "array",
            "items": {"$ref": f"#/definitions/{ref[1:-1]}"},
        }
    )
    schema = {"definitions": SPEC["definitions"], **root}
    jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker()).validate(body)


def write_config(
    tmp: Path, *, store: str, sink: Sink, tokens: bool = True, extra: str = "", max_body: int = 64 * 1024
) -> Path:
    """alertd.yaml with one rule, one receiver (`hook`, at the sink) and, if asked, tokens files."""
    (tmp / "rules").mkdir(exist_ok=True)
    (tmp / "rules" / "test.yaml").write_text(RULES)
    auth = ""
    if tokens:
        (tmp / "tokens").write_text(
            f"ops silence {hash_token(SILENCE_TOKEN)}\nviewer read {hash_token(READ_TOKEN)}\n"
            f"root admin {hash_token(ADMIN_TOKEN)}\n"
        )
        (tmp / "users").write_text(f"{GRAFANA_USER} read {hash_password(GRAFANA_PASSWORD, iterations=1000)}\n")
        auth = ", tokens_file: tokens, basic_auth_file: users"
    cfg = tmp / "alertd.yaml"
    cfg.write_text(f"""
broker: "redis://127.0.0.1:6379/13"
rule_files: [rules/*.yaml]
store: "{store}"
api: {{listen: "127.0.0.1:0", max_body_bytes: {max_body}, cors_origins: ["https://grafana.example"]{auth}}}
receivers:
  - name: hook
    apprise: ["json://127.0.0.1:{sink.port}/hook/{SINK_SECRET}"]
    retries: 0
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 3s
{extra}
""")
    return cfg


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]
    text: str


class Harness:
    """The daemon, its clock, and an HTTP client for its API."""

    def __init__(self, daemon: Daemon, clock: VirtualClock, base: str, session: aiohttp.ClientSession) -> None:
        self.daemon, self.clock, self.base, self.session = daemon, clock, base, session

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = READ_TOKEN,
        params: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        hdrs = dict(headers or {})
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        kw: dict[str, Any] = {}
        if isinstance(body, bytes | str):
            kw["data"] = body
            hdrs.setdefault("Content-Type", "application/json")
        elif body is not None:
            kw["json"] = body
        async with self.session.request(method, self.base + path, params=params, headers=hdrs, **kw) as r:
            text = await r.text()
            try:
                parsed = await r.json(content_type=None) if text else None
            except ValueError:
                parsed = None
            return Reply(r.status, parsed, dict(r.headers), text)

    async def get(self, path: str, *, token: str | None = READ_TOKEN, params: Any = None) -> Any:
        r = await self.call("GET", path, token=token, params=params)
        assert r.status == 200, (path, r.status, r.text)
        return r.body

    def fail_task(self, task: str = "billing.charge") -> None:
        """A task-received then task-failed pair, as a Celery worker sends them."""
        now = self.clock.now()
        u = str(uuidlib.uuid4())
        common = {"uuid": u, "hostname": "celery@w1", "timestamp": now, "local_received": now}
        self.daemon.observer.on_events(
            [
                {"type": "task-received", "name": task, **common},
                {"type": "task-failed", "exception": "ValueError('x')", "traceback": "", **common},
            ]
        )

    async def step(self, seconds: float = 1.0) -> None:
        """Move time on, evaluate the rules, hand alerts to the notifier, flush what is due."""
        self.clock.advance(seconds)
        await self.daemon.tick()  # which flushes what is due
        await self.daemon.notifier.settle()

    async def silence(self, matchers: list[Any], hours: float = 2.0, token: str = SILENCE_TOKEN) -> str:
        now = self.clock.now()
        r = await self.call(
            "POST",
            "/api/v2/silences",
            {
                "matchers": matchers,
                "startsAt": rfc(now),
                "endsAt": rfc(now + hours * 3600),
                "createdBy": "ana",
                "comment": "deploy 4.2",
            },
            token=token,
        )
        assert r.status == 200, r.text
        return str(r.body["silenceID"])


def rfc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


async def start_harness(config: Path, *, start: float | None = None) -> AsyncIterator[Harness]:
    """Open the daemon's state (no broker ingest), serve its API on a free port, yield, close."""
    clock = VirtualClock(start=start or round(time.time()))
    daemon = Daemon(load_config(config), clock, replica="test-replica")
    await daemon.open_state()
    await daemon.notifier.stop()  # tests flush on their own schedule: no background flusher
    daemon.health.mark_connected(clock.now())
    runner = web.AppRunner(make_app(daemon), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    async with aiohttp.ClientSession() as session:
        try:
            yield Harness(daemon, clock, f"http://127.0.0.1:{port}", session)
        finally:
            await runner.cleanup()
            await daemon.stop()


@pytest.fixture(params=["sqlite", "redis"], name="store_url")
def store_url_fixture(request: pytest.FixtureRequest, tmp_path: Path, redis_url: str, unique: str) -> str:
    """Both backends: a SQLite file, and Redis db 13 under a key prefix private to the test."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    return f"{redis_url}?prefix=alertd-api-{unique}:"


@pytest.fixture(name="api")
async def api_fixture(tmp_path: Path, store_url: str, sink: Sink) -> AsyncIterator[Harness]:
    """alertd with tokens configured, on both stores."""
    async for h in start_harness(write_config(tmp_path, store=store_url, sink=sink)):
        yield h


@pytest.fixture(name="api_sqlite")
async def api_sqlite_fixture(tmp_path: Path, sink: Sink) -> AsyncIterator[Harness]:
    """alertd with tokens configured, on SQLite only (for tests where the backend is not the point)."""
    async for h in start_harness(write_config(tmp_path, store=f"sqlite:///{tmp_path}/state.db", sink=sink)):
        yield h


@pytest.fixture(name="api_open")
async def api_open_fixture(tmp_path: Path, sink: Sink) -> AsyncIterator[Harness]:
    """A fresh install: no tokens file, so reads are open and writes refused."""
    cfg = write_config(tmp_path, store=f"sqlite:///{tmp_path}/state.db", sink=sink, tokens=False)
    async for h in start_harness(cfg):
        yield h


async def serve_sink() -> tuple[Sink, web.AppRunner]:
    """The recording HTTP receiver, started on the running loop."""
    sink = Sink(free_port())
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", sink.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", sink.port).start()
    return sink, runner


class ThreadedHarness:
    """The same in-process alertd on a loop in a thread, for synchronous callers: hypothesis
    tests and the CLI (a subprocess) talk to it over HTTP while the test drives its clock."""

    def __init__(self, tmp: Path, store: str, *, extra: str = "", ahead: float = 60.0) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="alertd-api", daemon=True)
        self.thread.start()
        self.sink, self._sink_runner = self.run(serve_sink())
        # The virtual clock runs a minute ahead of the wall clock: a CLI (wall time) asking for a
        # silence "from now" must get an active one however long the test has taken so far.
        # (`ahead=0` for clients that judge silence states by their own clock, as amtool does.)
        config = write_config(tmp, store=store, sink=self.sink, extra=extra)
        self._gen = start_harness(config, start=time.time() + ahead)
        self.h: Harness = self.run(self._gen.__anext__())
        self.base = self.h.base

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
        """Run a coroutine on the harness's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def request(
        self, method: str, path: str, body: bytes | None = None, token: str | None = READ_TOKEN, query: str = ""
    ) -> tuple[int, bytes, dict[str, str]]:
        """A plain blocking HTTP call; never raises for an HTTP status."""
        req = urllib.request.Request(self.base + path + (f"?{query}" if query else ""), data=body, method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)

    def get_json(self, path: str, query: str = "") -> Any:
        status, raw, _ = self.request("GET", path, query=query)
        assert status == 200, (path, status, raw)
        return json.loads(raw)

    def close(self) -> None:
        self.run(self._gen.aclose())
        self.run(self._sink_runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(name="threaded_api")
def threaded_api_fixture(tmp_path: Path) -> Iterator[ThreadedHarness]:
    """alertd (SQLite store, tokens configured) served from a thread, for synchronous tests."""
    t = ThreadedHarness(tmp_path, f"sqlite:///{tmp_path}/state.db")
    yield t
    t.close()
