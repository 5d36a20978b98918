"""Shared fixtures: real brokers, a real Celery worker subprocess, private redis-servers.

Redis tests use database 13 (flushed per test) so they never touch another project's keys;
RabbitMQ tests use queue names unique to the test.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from tests.waiting import wait_until

# Fixtures of one area, shared by its test modules (an aiohttp sink for receivers, ...).
pytest_plugins = ["tests.notify_fixtures", "tests.daemon_fixtures", "tests.slack_fixtures"]

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("ALERTD_TEST_REDIS", "redis://127.0.0.1:6379/13")
AMQP_URL = os.environ.get("ALERTD_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672//")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The shared Redis service, private database 13, empty at the start of the test."""
    r = redis.Redis.from_url(REDIS_URL)
    try:
        r.ping()
    except redis.ConnectionError:
        pytest.fail(f"Redis is not answering at {REDIS_URL}; .ci/run starts it")
    r.flushdb()
    yield REDIS_URL
    r.flushdb()
    r.close()


@pytest.fixture
def amqp_url() -> str:
    import kombu

    with kombu.Connection(AMQP_URL, connect_timeout=3) as conn:
        try:
            conn.ensure_connection(max_retries=1)
        except Exception as e:
            pytest.fail(f"RabbitMQ is not answering at {AMQP_URL}: {e}; .ci/run starts it")
    return AMQP_URL


@pytest.fixture
def unique() -> str:
    """A short unique token for queue names, hostnames and key prefixes."""
    return uuid.uuid4().hex[:8]


@dataclass
class RedisServer:
    """A private redis-server on a free port that a test may kill and restart."""

    port: int
    dir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if not binary:
            pytest.fail("redis-server is not installed (apt-get install redis-server)")
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Timeouts: if the port was taken meanwhile by a server that accepts and never answers
        # (another test's), the ping must fail, not hang the test.
        client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        wait_until(lambda: _pings(client), timeout=10, what=f"redis-server on port {self.port}")
        client.close()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.kill()
        self.start()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError):
        return False


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(port=free_port(), dir=tmp_path)
    server.start()
    yield server
    server.kill()


@dataclass
class CeleryWorker:
    """A real `celery worker -E` subprocess running tests/celeryapp.py."""

    broker: str
    hostname: str
    queues: list[str]
    proc: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """SIGKILL the whole worker (main process and pool): it sends no worker-offline."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            self.proc.wait(15)

    def stop(self) -> None:
        """Warm shutdown: the worker sends worker-offline."""
        self.kill(signal.SIGTERM)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_celery_worker(
    broker: str,
    tmp_path: Path,
    queues: list[str] | None = None,
    concurrency: int = 2,
    name: str | None = None,
    extra_env: dict[str, str] | None = None,
    wait: bool = True,
) -> CeleryWorker:
    queues = queues or ["celery"]
    hostname = f"{name or 'w' + uuid.uuid4().hex[:6]}@alertdtest"
    log = tmp_path / f"{hostname}.log"
    env = {**os.environ, "ALERTD_TEST_BROKER": broker, "ALERTD_TEST_QUEUE": queues[0], **(extra_env or {})}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tests.celeryapp",
        "worker",
        "-E",
        "-P",
        "prefork",
        "-c",
        str(concurrency),
        "-n",
        hostname,
        "-Q",
        ",".join(queues),
        "--without-mingle",
        "--without-gossip",
        "-l",
        "INFO",
    ]
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    worker = CeleryWorker(broker, hostname, queues, proc, log, env)
    if wait:
        from tests.celeryapp import app

        app.conf.broker_url = broker

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"celery worker exited early:\n{worker.output()[-3000:]}")
            return "ready." in worker.output()

        wait_until(ready, timeout=40, interval=0.2, what=f"celery worker {hostname} ready")
    return worker


@pytest.fixture
def celery_worker_factory(tmp_path: Path) -> Iterator[object]:
    """Call with (broker, queues=[...], concurrency=2, name=...) to start a worker; all are killed at the end."""
    started: list[CeleryWorker] = []

    def factory(broker: str, **kw: object) -> CeleryWorker:
        w = start_celery_worker(broker, tmp_path, **kw)  # type: ignore[arg-type]
        started.append(w)
        return w

    yield factory
    for w in started:
        w.kill()


@pytest.fixture
def celery_app():  # type: ignore[no-untyped-def]
    """The producer side of tests/celeryapp.py; point it at a broker with app.conf.broker_url."""
    from tests.celeryapp import app

    yield app
    with contextlib.suppress(Exception):
        app.pool.force_close_all()


# Fixtures that need a broker service or a worker process: a test using one is marked `broker`
# (or `worker`) whether or not its module says so, so that `pytest -m "not broker"` is the
# offline part of the suite - engine, dispatcher, pipeline, API on SQLite - and runs in seconds.
BROKER_FIXTURES = {"redis_url", "amqp_url", "redis_server", "celery_worker_factory", "celery_app", "alertd_process"}
WORKER_FIXTURES = {"celery_worker_factory", "celery_app"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & BROKER_FIXTURES or item.get_closest_marker("wheel"):  # the wheel's install needs PyPI
            item.add_marker(pytest.mark.broker)
        if names & WORKER_FIXTURES:
            item.add_marker(pytest.mark.worker)


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which turns -n into its worker processes
def pytest_cmdline_main(config: pytest.Config) -> None:
    """`pytest -m "not broker"` (the offline part) runs in a process per core, up to four, unless
    -n says otherwise: nothing in it shares a broker or a clock with another test. Everything
    else runs in one process, in order: the broker tests' timings are real, they share the local
    Redis database and RabbitMQ, and a test on a stopped or loaded machine must not race another.
    (xdist's --dist loadgroup would keep them together, but pytest 9.2 no longer lets it tag
    node ids, so the split is by selection.)"""
    if hasattr(config, "workerinput") or config.getoption("markexpr", "").strip() != "not broker":
        return  # (an xdist worker runs this hook too)
    if getattr(config.option, "numprocesses", "unset") is None and not getattr(config.option, "tx", None):
        config.option.numprocesses = max(1, min(4, len(os.sched_getaffinity(0))))
