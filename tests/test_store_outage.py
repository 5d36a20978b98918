"""A real `alertd run` whose Redis store (a private redis-server) is killed mid-incident: the page
and the resolved notice still reach the receiver, /readyz and /metrics say the store is down,
silences answer a one-line 503, and once the store is back history and the notification log in
it hold both sends. Celery events are published on the broker's event channel as a worker does."""

from __future__ import annotations

import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
import redis

from tests.conftest import RedisServer, free_port
from tests.daemon_fixtures import READ_TOKEN, SILENCE_TOKEN, hook_posts, wait_until, write_setup
from tests.sources_fixtures import envelope

RULES = """
groups:
  - name: test
    interval: 1s
    rules:
      - alert: TaskFailed
        event: task-failed
        by: [task]
        resolve_after: 3s
        labels: {severity: critical}
        annotations:
          summary: "{{ labels.task }} failed"
"""


def fail_task(broker: redis.Redis, channel: str, task: str) -> None:
    """task-received then task-failed, the pair a worker sends (only task-received names the task)."""
    now = time.time()
    common = {"uuid": str(uuid.uuid4()), "hostname": "celery@outage", "timestamp": now}
    received = {"type": "task-received", "name": task, **common}
    failed = {"type": "task-failed", "exception": "ValueError('x')", "traceback": "", **common}
    broker.publish(channel + "task.received", envelope(received, "task.received"))
    broker.publish(channel + "task.failed", envelope(failed, "task.failed"))


def setup(tmp_path: Path, broker: str, store: RedisServer, sink_url: str, unique: str) -> tuple[Path, int]:
    """alertd.yaml for these tests: the store is the private redis-server; quick group timers."""
    port = free_port()
    route = "route: {receiver: hook, group_by: [alertname], group_wait: 1s, group_interval: 2s, repeat_interval: 1h}"
    cfg = write_setup(
        tmp_path,
        broker=broker,
        store=store.url,
        sink_url=sink_url,
        port=port,
        rules=RULES,
        route=route,
        keyprefix=f"{unique}:",
    )
    return cfg, port


def readyz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_store_killed_during_an_incident_the_page_and_the_resolved_notice_still_go_out(
    tmp_path: Path, redis_url: str, unique: str, redis_server: RedisServer, http_sink: Any, alertd_process: Any
) -> None:
    cfg, port = setup(tmp_path, redis_url, redis_server, http_sink.url(), unique)
    daemon = alertd_process(cfg, port)
    api = daemon.api
    broker = redis.Redis.from_url(redis_url)
    channel = f"{unique}:/{redis_url.rsplit('/', 1)[1]}.celeryev/"

    redis_server.kill()
    # the silence refresh (every second) is the first to find the store gone
    wait_until(lambda: readyz(port)[0] == 503, timeout=10, what="/readyz to say the store is down")
    status, text = readyz(port)
    assert f"store {redis_server.url} unreachable" in text, text

    fail_task(broker, channel, "t.outage")
    wait_until(lambda: hook_posts(http_sink), timeout=10, what="the page, with the store down")
    assert hook_posts(http_sink)[0]["title"] == "[FIRING:1] TaskFailed"

    status, body = api.call("GET", "/api/v2/silences", token=READ_TOKEN)
    assert status == 503 and set(body) == {"error"}, body
    assert body["error"].startswith(f"store unavailable: store {redis_server.url} unreachable")
    assert "\n" not in body["error"]
    silence = {
        "matchers": [{"name": "task", "value": "t.outage", "isRegex": False, "isEqual": True}],
        "startsAt": "2020-01-01T00:00:00Z",
        "endsAt": "2099-01-01T00:00:00Z",
        "createdBy": "ana",
        "comment": "during the outage",
    }
    assert api.call("POST", "/api/v2/silences", silence, token=SILENCE_TOKEN)[0] == 503
    assert api.call("GET", "/api/alertd/v1/history", token=READ_TOKEN)[0] == 503
    assert api.call("GET", "/api/alertd/v1/maintenance", token=READ_TOKEN)[0] == 503
    status, metrics = api.call("GET", "/metrics", token=READ_TOKEN)
    assert status == 200
    assert "alertd_store_up 0.0" in metrics and "alertd_store_outages_total 1.0" in metrics
    claims = next(line for line in metrics.splitlines() if line.startswith("alertd_ha_claims_failed_open_total"))
    assert float(claims.split()[1]) >= 1
    assert "AlertdStoreDown" not in str(api.get("/api/v2/alerts"))  # its `for` is 30 s; not yet

    wait_until(
        lambda: [p["title"] for p in hook_posts(http_sink)] == ["[FIRING:1] TaskFailed", "[RESOLVED] TaskFailed"],
        timeout=15,
        what="the resolved notice, with the store down",
    )
    assert readyz(port)[0] == 503

    redis_server.start()
    wait_until(lambda: readyz(port)[0] == 200, timeout=10, what="/readyz once the store is back")
    sent = [(e["kind"], e["reason"]) for e in api.get("/api/alertd/v1/history", query="kind=sent")]
    assert sent == [("sent", "all resolved"), ("sent", "first notification")], sent
    store = redis.Redis(port=redis_server.port)
    log = {k.decode(): orjson.loads(v) for k, v in store.hgetall("alertd:doc:nflog").items()}
    (entry,) = log.values()
    assert entry["receiver"] == "hook" and entry["reason"] == "all resolved" and entry["resolved"]
    store.close()
    broker.close()

    output = daemon.output()
    assert output.count(" unreachable (") == 1 and output.count(" is back after ") == 1, output[-3000:]
    assert "Traceback" not in output, output[-3000:]


def test_alertd_started_while_its_store_is_down_still_pages_and_takes_the_store_when_it_is_back(
    tmp_path: Path, redis_url: str, unique: str, redis_server: RedisServer, http_sink: Any
) -> None:
    """A restart during a store outage must not turn it into an alerting outage."""
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import ROOT, wait_until
    from tests.daemon_fixtures import Api

    cfg, port = setup(tmp_path, redis_url, redis_server, http_sink.url(), unique)
    redis_server.kill()
    log = (tmp_path / "alertd.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "alertd", "-c", str(cfg), "run"],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        start_new_session=True,
    )
    try:

        def not_ready() -> bool:
            try:
                # Not ready for its store alone: subscribed to the events (else those published
                # next would reach nobody, as Redis keeps nothing for a subscriber not there yet).
                status, why = readyz(port)
                return status == 503 and "event stream not connected" not in why
            except OSError:  # not listening yet
                assert proc.poll() is None, (tmp_path / "alertd.log").read_text()[-3000:]
                return False

        wait_until(not_ready, timeout=30, what="alertd up, not ready: its store is down")
        assert f"store {redis_server.url} unreachable" in readyz(port)[1]
        broker = redis.Redis.from_url(redis_url)
        fail_task(broker, f"{unique}:/{redis_url.rsplit('/', 1)[1]}.celeryev/", "t.blind-start")
        wait_until(lambda: hook_posts(http_sink), timeout=15, what="the page from an alertd started without its store")
        assert hook_posts(http_sink)[0]["title"] == "[FIRING:1] TaskFailed"

        redis_server.start()
        wait_until(lambda: readyz(port)[0] == 200, timeout=10, what="/readyz once the store answers")
        api = Api(f"http://127.0.0.1:{port}")
        wait_until(
            lambda: api.get("/api/alertd/v1/history", query="kind=sent"), timeout=10, what="the send in the store"
        )
        # the store opened late is a working store: a silence can be created now
        silence = {
            "matchers": [{"name": "task", "value": "x", "isRegex": False, "isEqual": True}],
            "startsAt": "2020-01-01T00:00:00Z",
            "endsAt": "2099-01-01T00:00:00Z",
            "createdBy": "ana",
            "comment": "after the outage",
        }
        assert api.call("POST", "/api/v2/silences", silence, token=SILENCE_TOKEN)[0] == 200
        broker.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
        log.close()
    output = (tmp_path / "alertd.log").read_text()
    assert "started without the saved state" in output and "Traceback" not in output, output[-3000:]
