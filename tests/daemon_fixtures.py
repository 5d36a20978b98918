"""Running alertd for real: a temp config and rules, the daemon as a subprocess, an HTTP helper."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from alertd.auth import hash_token
from tests.conftest import ROOT, free_port, wait_until

SILENCE_TOKEN = "alertd_test_silence_token_0123456789"
READ_TOKEN = "alertd_test_read_token_0123456789abc"
ADMIN_TOKEN = "alertd_test_admin_token_0123456789ab"

FAIL_RULES = """
groups:
  - name: test
    interval: 1s
    rules:
      - alert: TaskFailed
        event: task-failed
        by: [task]
        resolve_after: 10m
        labels: {severity: critical}
        annotations:
          summary: "{{ labels.task }} failed"
"""


def hook_route(
    group_wait: str = "1s", group_interval: str = "2s", repeat_interval: str = "3s", group_by: str = "[alertname]"
) -> str:
    """A route tree of one receiver, `hook`, with these timers."""
    return f"""
route:
  receiver: hook
  group_by: {group_by}
  group_wait: {group_wait}
  group_interval: {group_interval}
  repeat_interval: {repeat_interval}
"""


def write_setup(
    tmp: Path,
    *,
    broker: str,
    store: str,
    sink_url: str,
    port: int,
    rules: str = FAIL_RULES,
    route: str = "",
    extra: str = "",
    keyprefix: str = "",
    hook: dict[str, Any] | None = None,
) -> Path:
    """alertd.yaml + rules + tokens in `tmp`; returns the config path.

    `keyprefix` puts the broker's keys and event channels under a private global_keyprefix, so
    only this test's worker is heard (other tests share Redis db 13). `hook` sets options of the
    `hook` receiver (retries: 0 unless given), e.g. {"retries": 2, "retry_backoff": "5s"}.
    """
    hook_options = "".join(f"\n    {k}: {json.dumps(v)}" for k, v in {"retries": 0, **(hook or {})}.items())
    (tmp / "rules").mkdir(exist_ok=True)
    (tmp / "rules" / "test.yaml").write_text(rules)
    (tmp / "tokens").write_text(
        f"ops silence {hash_token(SILENCE_TOKEN)}\nviewer read {hash_token(READ_TOKEN)}\n"
        f"root admin {hash_token(ADMIN_TOKEN)}\n"
    )
    route = (
        route
        or """
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 3s
"""
    )
    cfg = tmp / "alertd.yaml"
    cfg.write_text(f"""
broker: "{broker}"
broker_transport_options: {{{f'global_keyprefix: "{keyprefix}"' if keyprefix else ""}}}
rule_files: [rules/*.yaml]
store: "{store}"
api: {{listen: 127.0.0.1:{port}, tokens_file: tokens}}
sampler: {{interval: 2s, queues: []}}
receivers:
  - name: hook
    apprise: ["{sink_url}"]{hook_options}
{route}
{extra}
""")
    return cfg


@dataclass
class Api:
    base: str

    def call(
        self, method: str, path: str, body: Any = None, token: str | None = None, query: str = ""
    ) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
        req = urllib.request.Request(self.base + path + (f"?{query}" if query else ""), data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                raw, status = r.read(), r.status
        except urllib.error.HTTPError as e:
            raw, status = e.read(), e.code
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def get(self, path: str, token: str | None = READ_TOKEN, query: str = "") -> Any:
        status, body = self.call("GET", path, token=token, query=query)
        assert status == 200, (path, status, body)
        return body


@dataclass
class DaemonProcess:
    config: Path
    port: int
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def api(self) -> Api:
        return Api(f"http://127.0.0.1:{self.port}")

    def start(self) -> DaemonProcess:
        fh = self.log.open("ab")
        env = {**os.environ, **self.env, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "alertd", "-c", str(self.config), "run"],
            cwd=self.config.parent,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"alertd exited:\n{self.output()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        wait_until(ready, timeout=30, interval=0.1, what="alertd ready")
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the process group and wait; one that ignores SIGTERM for 15 s is SIGKILLed (and
        the test fails), so no daemon outlives its test."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
                raise AssertionError(f"alertd did not stop on signal {sig} within 15 s") from None

    def wait_exit(self, timeout: float = 20.0) -> int:
        """The exit code once the process has ended by itself (negative: the signal that ended it)."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"alertd still running after {timeout}s:\n{self.output()[-3000:]}") from None

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def alertd_process(tmp_path: Path) -> Iterator[Any]:
    """Call with (config_path, port) to start `python -m alertd run`; all are killed at the end.

    `env` adds environment variables (ALERTD_CRASH_AT for fault injection, say).
    """
    started: list[DaemonProcess] = []

    def start(config: Path, port: int, name: str = "alertd", env: dict[str, str] | None = None) -> DaemonProcess:
        d = DaemonProcess(config, port, tmp_path / f"{name}.log", env=dict(env or {})).start()
        started.append(d)
        return d

    yield start
    for d in started:
        d.kill(signal.SIGTERM)


@dataclass
class Deployment:
    """A private Celery deployment on the shared Redis - its own key prefix and queue - with
    alertd processes watching it and paging the http sink's /hook. The setup most end-to-end
    tests repeat: `alertd(...)`, `worker(...)`, `producer()`."""

    tmp: Path
    broker: str
    unique: str
    sink: Any
    start_alertd: Callable[..., DaemonProcess]
    start_worker: Callable[..., Any]

    @property
    def keyprefix(self) -> str:
        return f"{self.unique}:"

    @property
    def queue(self) -> str:
        return f"q-{self.unique}"

    def alertd(self, *, name: str = "alertd", store: str = "sqlite:///state.db", **setup: Any) -> DaemonProcess:
        """write_setup() in a directory of its own (rules=, route=, extra=, hook=), then `alertd run`."""
        port = free_port()
        home = self.tmp / name
        home.mkdir(exist_ok=True)
        cfg = write_setup(
            home,
            broker=self.broker,
            store=store,
            sink_url=self.sink.url(),
            port=port,
            keyprefix=self.keyprefix,
            **setup,
        )
        return self.start_alertd(cfg, port, name)

    def worker(self, **kw: Any) -> Any:
        """A real Celery worker on this deployment's queue (kw: concurrency, extra_env, ...)."""
        env = {"ALERTD_TEST_KEYPREFIX": self.keyprefix, **kw.pop("extra_env", {})}
        return self.start_worker(self.broker, extra_env=env, queues=kw.pop("queues", [self.queue]), **kw)

    def producer(self) -> Any:
        return producer(self.broker, self.keyprefix)


@pytest.fixture
def deployment(
    tmp_path: Path, redis_url: str, unique: str, http_sink: Any, celery_worker_factory: Any, alertd_process: Any
) -> Deployment:
    return Deployment(tmp_path, redis_url, unique, http_sink, alertd_process, celery_worker_factory)


def producer(broker: str, keyprefix: str = "") -> Any:
    """A Celery producer that sends task-sent events, as alertd's docs ask of a deployment."""
    from celery import Celery

    app = Celery("producer", broker=broker, set_as_current=False)
    app.conf.task_send_sent_event = True
    if keyprefix:
        app.conf.broker_transport_options = {"global_keyprefix": keyprefix}
    return app


def hook_posts(sink: Any) -> list[dict[str, Any]]:
    """What the `hook` receiver got (JSON documents, with arrival time under "at")."""
    return [{**r["json"], "at": r.get("at")} for r in sink.requests if r["path"] == "/hook"]


__all__ = ["ADMIN_TOKEN", "READ_TOKEN", "SILENCE_TOKEN", "Api", "free_port", "write_setup"]
