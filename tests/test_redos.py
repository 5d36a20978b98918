"""ReDoS: the classic catastrophic patterns against long labels, through every door a regex comes
in (a rule, a route, a silence, an API filter), into a real `alertd run`, while a probe checks
that /healthz keeps answering within 50 ms. With Python's `re` each of these froze the event loop
for seconds per evaluation; RE2 matches in time linear in the label.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.daemon_fixtures import READ_TOKEN, SILENCE_TOKEN, DaemonProcess, producer, wait_until, write_setup

N = 32  # Python's re needs ~2^N steps for these: 26 characters took 4.5 s, 32 would take minutes
TASK = "a" * N
EXCEPTION = "x" * N
BOUND = 0.050  # /healthz must answer within this throughout (generous: not a benchmark)
# On a shared 2-core machine the scheduler alone can hold a process back past BOUND now and then;
# a frozen loop is a different thing: seconds, on every probe while it lasts.
STRAYS, STRAY_BOUND = 2, 0.250

RULES = """
groups:
  - name: test
    interval: 1s
    rules:
      - alert: TaskFailed
        event: task-failed
        matchers: ['exception_repr!~"(x+x+)+y"']
        by: [task]
        resolve_after: 10m
"""

ROUTE = """
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
  routes:
    - matchers: ['task=~"(a+)+c"']
      receiver: other
"""


# The probe runs in a process of its own: in the test's process it would share a GIL with the test
# (a Celery producer connecting, eight attacking threads) and measure the test, not alertd.
PROBE = r"""
import json, select, sys, time, urllib.request
base, out = sys.argv[1], []
while not select.select([sys.stdin], [], [], 0)[0]:  # until the test says stop
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=2) as r:
            r.read()
        took = time.perf_counter() - t0
    except OSError:
        took = 2.0
    out.append((time.time(), took))
    time.sleep(0.01)
print(json.dumps(out))
"""


class Probe:
    """GET /healthz every 10 ms on a fresh connection from another process; a timeout counts as 2 s."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.latencies: list[float] = []
        self.slow: list[tuple[float, float]] = []  # (when, latency) of answers over the bound
        self.proc: subprocess.Popen[str] | None = None
        self.started = 0.0

    def start(self) -> None:
        self.started = time.time()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", PROBE, self.base], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def stop(self) -> list[float]:
        assert self.proc is not None
        out, _ = self.proc.communicate("stop\n", timeout=10)
        samples = json.loads(out)
        self.latencies = [took for _, took in samples]
        self.slow = [(at, took) for at, took in samples if took >= BOUND]
        return sorted(self.latencies)


@pytest.fixture
def daemon(tmp_path: Path, redis_url: str, unique: str, http_sink: Any) -> Iterator[DaemonProcess]:
    port = free_port()
    cfg = write_setup(
        tmp_path,
        broker=redis_url,
        store="sqlite:///state.db",
        sink_url=http_sink.url(),
        port=port,
        rules=RULES,
        route=ROUTE,
        keyprefix=f"{unique}:",
    )
    text = cfg.read_text().replace(
        "receivers:\n", f'receivers:\n  - name: other\n    apprise: ["{http_sink.url(path="/other")}"]\n'
    )
    cfg.write_text(text)
    d = DaemonProcess(cfg, port, tmp_path / "alertd.log")
    try:
        yield d.start()
    finally:
        d.kill(signal.SIGKILL)  # a loop frozen in a regex never gets to handle SIGTERM


def fail_task(broker: str, keyprefix: str, name: str, exception: str) -> None:
    """task-received then task-failed on the broker's event exchange, as a worker's dispatcher sends them."""
    app = producer(broker, keyprefix)
    with app.connection_for_write() as conn:
        dispatcher = app.events.Dispatcher(conn, hostname="celery@redos", enabled=True)
        uuid = f"redos-{time.time_ns()}"
        dispatcher.send("task-received", uuid=uuid, name=name, args="()", kwargs="{}", retries=0)
        dispatcher.send("task-failed", uuid=uuid, exception=exception, traceback="")
        dispatcher.close()
    app.close()


def test_catastrophic_patterns_in_rule_route_silence_and_filter_never_stall_the_loop(
    daemon: DaemonProcess, redis_url: str, unique: str
) -> None:
    api = daemon.api
    probe = Probe(api.base)
    probe.start()
    try:
        # the rule: its `exception_repr!~"(x+x+)+y"` runs on every task-failed event
        fail_task(redis_url, f"{unique}:", TASK, EXCEPTION)

        def firing() -> list[Any]:
            return [a for a in api.get("/api/v2/alerts") if a["labels"].get("task") == TASK]

        wait_until(firing, timeout=20, what="the alert from the rule")
        # the route: `task=~"(a+)+c"` does not match, so the alert stays with the root receiver
        (alert,) = firing()
        assert [r["name"] for r in alert["receivers"]] == ["hook"]

        # the silence: `task=~"(a|aa)+b"` is created, then runs against the alert on every flush
        now = time.time()
        status, body = api.call(
            "POST",
            "/api/v2/silences",
            {
                "matchers": [{"name": "task", "value": "(a|aa)+b", "isRegex": True}],
                "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 1)),
                "endsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 3600)),
                "createdBy": "redos",
                "comment": "a pattern that never matches a's",
            },
            token=SILENCE_TOKEN,
        )
        assert status == 200, body
        time.sleep(1.5)  # a few flushes and ticks with the silence in place
        assert firing()[0]["status"]["silencedBy"] == []

        # the API filter, anonymous-readable by default: each pattern against the long label
        for pattern in ["(a+)+c", "(a|aa)+b", "(a*)*b", "(a|a?)+b", "(.*a){12}b"]:
            q = urllib.parse.urlencode({"filter": f'task=~"{pattern}"'})
            t0 = time.perf_counter()
            assert api.get("/api/v2/alerts", token=READ_TOKEN, query=q) == []
            assert time.perf_counter() - t0 < 1.0, pattern
        # a pattern RE2 refuses is a 400 naming the matcher, not a hang or a 500
        status, body = api.call("GET", "/api/v2/alerts", token=READ_TOKEN, query="filter=task%3D~%22(a)%5C1%22")
        assert status == 400 and "matcher for 'task'" in str(body) and "backreferences" in str(body), body
        time.sleep(0.5)
    finally:
        latencies = probe.stop()
        p50, worst = latencies[len(latencies) // 2], latencies[-1]
        print(f"/healthz during the ReDoS probe: n={len(latencies)} p50={p50 * 1000:.1f} ms max={worst * 1000:.1f} ms")
        print(
            "over the bound (s after start, ms):",
            [(round(a - probe.started, 2), round(t * 1000)) for a, t in probe.slow],
        )
    assert_responsive(probe, latencies)


def assert_responsive(probe: Probe, latencies: list[float]) -> None:
    """Every /healthz answer within BOUND, bar STRAYS scheduling hiccups under STRAY_BOUND."""
    assert len(latencies) > 50, "the probe hardly ran"
    over = [t for t in latencies if t >= BOUND]
    slow = [(round(at - probe.started, 2), round(took * 1000)) for at, took in probe.slow]
    assert len(over) <= STRAYS and all(t < STRAY_BOUND for t in over), (
        f"/healthz over {BOUND * 1000:.0f} ms {len(over)} times of {len(latencies)}; (s after start, ms): {slow}"
    )
