"""alertd on RabbitMQ as its users meet it: `alertd run` on an amqp:// broker pages a real HTTP
receiver when a real worker's task fails, keeps doing so after RabbitMQ drops its connection, and
shows the outage in its stream health.

Each test gets a RabbitMQ virtual host of its own: every worker of every other test publishes
task-failed events on the shared vhost's `celeryev` exchange, and they must not reach this alertd.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import free_port
from tests.daemon_fixtures import hook_posts, producer, wait_until, write_setup
from tests.test_sources_amqp import close_connection_from_the_broker


@pytest.fixture
def vhost_url(amqp_url: str, unique: str) -> Iterator[str]:
    vhost = f"alertd-e2e-{unique}"
    subprocess.run(["rabbitmqctl", "add_vhost", vhost], check=True, capture_output=True, stdin=subprocess.DEVNULL)
    subprocess.run(
        ["rabbitmqctl", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )
    yield amqp_url.rsplit("/", 2)[0] + "/" + quote(vhost, safe="")
    subprocess.run(["rabbitmqctl", "delete_vhost", vhost], capture_output=True, stdin=subprocess.DEVNULL)


def test_a_failed_task_pages_through_the_amqp_fast_path_across_a_dropped_connection(
    tmp_path: Path, vhost_url: str, unique: str, http_sink: Any, celery_worker_factory: Any, alertd_process: Any
) -> None:
    port = free_port()
    cfg = write_setup(
        tmp_path,
        broker=vhost_url,
        store="sqlite:///state.db",
        sink_url=http_sink.url(),
        port=port,
        extra="events: {reconnect_max: 1s}",
    )
    daemon = alertd_process(cfg, port)
    wait_until(lambda: daemon.api.get("/api/alertd/v1/health")["stream"]["connected"], what="alertd consuming")
    stream = daemon.api.get("/api/alertd/v1/health")["stream"]
    assert stream["transport"] == "amqp-fast" and stream["broker"].startswith("amqp://***@127.0.0.1:5672/")

    queue = f"q-{unique}"
    worker = celery_worker_factory(vhost_url, queues=[queue])
    app = producer(vhost_url)
    app.send_task("t.fail", ("boom",), queue=queue)
    wait_until(lambda: hook_posts(http_sink), timeout=20, what="the first page")
    assert hook_posts(http_sink)[0]["title"] == "[FIRING:1] TaskFailed"

    # RabbitMQ drops alertd's connection (a node restart, a policy, an operator): alertd comes back
    # by itself, the gap shows in its health, and events after it still count.
    close_connection_from_the_broker(f"alertd events ({socket.gethostname()}, pid {daemon.proc.pid})")
    wait_until(
        lambda: daemon.api.get("/api/alertd/v1/health")["stream"]["reconnects"] == 1,
        what="alertd to reconnect by itself",
    )
    stream = daemon.api.get("/api/alertd/v1/health")["stream"]
    assert stream["connected"] and len(stream["gaps"]) == 1 and "CONNECTION_FORCED" in stream["last_error"]
    before = stream["events"]
    app.send_task("t.add", (1, 2), queue=queue)
    wait_until(
        lambda: daemon.api.get("/api/alertd/v1/health")["stream"]["events"] >= before + 4,
        what="the next task's events after the reconnect",
    )
    assert worker.proc.poll() is None
    app.close()
