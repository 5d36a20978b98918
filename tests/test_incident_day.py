"""An incident day, replayed: the exact notifications of a recorded real-worker capture (issue 11).

tests/fixtures/incident-day.jsonl was recorded once (16 minutes of wall time) by
scripts/record_incident_day.py with `alertd capture` (events, the sampler's samples every 5 s,
the event stream's disconnects and reconnects) from a private redis-server, three real Celery
workers (w1 serves `default`, w2 `emails`, w3 `reports`) and a producer sending to all three:

    healthy 1 m
    OOM      w1 SIGKILLed (with its pool) while running a 30 s task with 4 more prefetched;
             started again under the same name 22 s later
    healthy  ~2 m
    deploy   w2 SIGTERMed (warm shutdown) and started again at once, within restart_grace
    healthy  1 m
    backlog  w3, the only worker of `reports`, stopped for 3 m while its tasks keep coming
    healthy  ~2.5 m
    broker   the redis-server SIGKILLed, started again (empty) 150 s later
    healthy  3 m

Nothing in the capture was edited or thinned (1.2 MB: every heartbeat is there). The sidecar
incident-day.timeline.json is the script's own log of what it did and when, on the capture's
clock; the healthy stretches run from the moment everything was back up to the next incident.

The capture goes through a real Daemon on a virtual clock - observer, engine with the shipped
pack rules/celery.yaml, built-in inhibit rules, notifier - with ReplaySource feeding events,
samples and stream marks at their recorded times through the daemon's handlers and ticking once a
virtual second, as the live tick loop does. Nothing is scaled: the pack's `for`s and evaluation
intervals as shipped, the route's timers as deploy/alertd.yaml ships them (group_wait 30 s,
group_interval 5 m, repeat_interval 4 h); the recording kept each incident as long as it would
last in production instead. Delivery is real: Apprise's json:// to an aiohttp sink, the `json`
template (Alertmanager's webhook document), one group per alert (group_by: ['...']).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from alertd.alert import AlertState
from alertd.clock import VirtualClock
from alertd.config import load_config
from alertd.daemon import Daemon
from alertd.sources.jsonl import ReplaySource, item_time, read_lines
from tests.notify_fixtures import Sink

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "incident-day.jsonl"
PACK = ROOT / "rules" / "celery.yaml"
# After the recording ends the notifier runs on this long (one group_interval and a minute), so
# every notice already owed goes out; the engine is not evaluated past the end, where it would
# judge from the missing recording (every worker "lost" once the heartbeats stop).
TAIL = 6 * 60.0

# (virtual time sent, alert's startsAt, status, alertname, labels)
Notification = tuple[float, float, str, str, dict[str, str]]


def timeline(path: Path = FIXTURE) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.with_suffix(".timeline.json").read_text())
    return data


def span(path: Path) -> tuple[float, float]:
    """The times of the first and the last line of a capture."""
    times = [at for _, item in read_lines(path) if item is not None and (at := item_time(item)) is not None]
    assert times, f"{path}: nothing timed in it"
    return times[0], max(times)


@dataclass
class Day:
    notifications: list[Notification] = field(default_factory=list)
    fired: list[tuple[float, str, dict[str, str]]] = field(default_factory=list)  # engine: (time, name, labels)
    annotations: dict[str, dict[str, str]] = field(default_factory=dict)  # alertname: its first page's


async def replay_day(path: Path, sink: Sink, tmp_path: Path) -> Day:
    """Every notification the sink got, in order, stamped with the virtual time it was sent at."""
    config_file = tmp_path / "alertd.yaml"
    # The route's timers as deploy/alertd.yaml ships them (Alertmanager's defaults).
    config_file.write_text(f"""
rule_files: ["{PACK}"]
store: "sqlite:///{tmp_path / "state.db"}"
receivers:
  - name: team
    apprise: ["{sink.url(path="/team")}"]
    template: json
    retries: 0
route:
  receiver: team
  group_by: ['...']
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
""")
    config = load_config(config_file)
    start, end = span(path)
    clock = VirtualClock(start=start)
    daemon = Daemon(config, clock, replica="incident-day")
    await daemon.open_state()
    # The test flushes the notifier itself after each tick and awaits the deliveries, so every
    # notification is stamped with the virtual second it went out in; the live loop sends the
    # same ones without being awaited.
    await daemon.notifier.stop()
    day = Day()
    seen = 0

    async def step() -> None:
        nonlocal seen
        # As live: each tick evaluates, then flushes the groups due (alertd.daemon.Daemon.tick);
        # the test awaits the sends it started, to stamp each with the second it went out in.
        if clock.now() <= end:
            for alert in await daemon.tick():
                if alert.state is AlertState.FIRING:
                    day.fired.append((clock.now(), alert.name, dict(alert.labels)))
        else:
            daemon.notifier.put(daemon.engine.alerts())
            await daemon.notifier.flush_due(wait=False)
        await daemon.notifier.settle()
        batch = []
        for request in sink.requests[seen:]:
            doc = json.loads(request["json"]["message"])
            (alert,) = doc["alerts"]  # one group per alert
            labels = dict(alert["labels"])
            name = labels.pop("alertname")
            starts = datetime.fromisoformat(alert["startsAt"]).timestamp()
            batch.append((clock.now(), starts, alert["status"], name, labels))
            if alert["status"] == "firing":
                day.annotations.setdefault(name, alert["annotations"])
        seen = len(sink.requests)
        # Groups due in the same second are sent concurrently: their order of arrival is not
        # part of the behaviour, so they are listed by name.
        day.notifications.extend(sorted(batch, key=lambda n: (n[3], sorted(n[4].items()), n[2])))

    observer = daemon.observer
    source = ReplaySource(
        path,
        observer.on_events,
        clock,
        daemon.health,
        on_queue=observer.on_queue_sample,
        on_worker=observer.on_worker_sample,
        on_broker=observer.on_broker_sample,
        step=step,
        tail=TAIL,
    )
    try:
        await source.start()
        await source.wait_done(300)
    finally:
        await source.stop()
        await daemon.stop()
    assert daemon.health.malformed == 0 and source.samples > 0
    return day


@pytest.fixture
async def day(sink: Sink, tmp_path: Path) -> Day:
    if not FIXTURE.is_file():
        pytest.skip("the incident-day capture is not recorded (scripts/record_incident_day.py)")
    return await replay_day(FIXTURE, sink, tmp_path)


def when(prefix: str, nth: int = 0) -> float:
    """When the recording script did the nth thing its log line starts with `prefix`."""
    times = [a["at"] for a in timeline()["actions"] if a["what"].startswith(prefix)]
    return float(times[nth])


async def test_incident_day_sends_exactly_these_notifications(day: Day) -> None:
    assert timeline()["thinned_heartbeats"] == 0  # the capture is as recorded
    sent = [(status, name, labels) for _, _, status, name, labels in day.notifications]
    assert sent == EXPECTED, "\n".join(map(repr, day.notifications))
    # the OOM page says what the worker took with it: the running task and the prefetched ones
    lost = day.annotations["CeleryWorkerLost"]
    assert "took 5 task(s)" in lost["summary"], lost
    assert "3 t.sleep (reserved), 1 t.add (reserved), 1 t.sleep (running)" in lost["description"], lost


async def test_each_page_goes_out_during_its_incident(day: Day) -> None:
    stretches = timeline()["healthy"]
    firing = {n[3]: n for n in day.notifications if n[2] == "firing"}
    # the OOM: paged once the worker's heartbeats had been missing for the window (10 s) and
    # the 15 s evaluation came, before the recovery
    assert when("OOM:") < firing["CeleryWorkerLost"][1] < stretches[1][0]
    # the backlog: the queue without a consumer is paged while the worker is still away; the
    # latency alert fires then too (for 2m after the wait crossed 5 s), muted by that page
    back = when("w3@alertdtest ready", 1)
    assert when("backlog:") + 120 < firing["CeleryQueueNoConsumers"][0] < back
    assert any(name == "CeleryTaskLatencyHigh" and when("backlog:") + 120 < t < back for t, name, _ in day.fired)
    # the broker: paged while it is down
    assert when("broker: SIGKILL") + 60 < firing["CeleryBrokerUnreachable"][0] < when("broker: redis-server started")


async def test_nothing_fires_in_the_healthy_stretches_nor_for_the_deploy(day: Day) -> None:
    stretches = timeline()["healthy"]
    assert len(stretches) == 5
    # The deploy restart (SIGTERM, started again within restart_grace) pages nothing: the two
    # stretches around it count as one.
    deploy = when("deploy:")
    assert stretches[1][1] < deploy < stretches[2][0]
    quiet = [stretches[0], [stretches[1][0], stretches[2][1]], *stretches[3:]]
    for start, end in quiet:
        # no alert fired in the stretch, paged or not (inhibited, or resolved within group_wait)
        fired = [f for f in day.fired if start <= f[0] <= end]
        assert fired == [], (start, end, fired)
        # and no page about one that started there (a page may go out later, after group_wait)
        paged = [n for n in day.notifications if n[2] == "firing" and start <= n[1] <= end]
        assert paged == [], (start, end, paged)


async def test_the_backlog_pages_once(day: Day) -> None:
    stretches = timeline()["healthy"]
    pages = [n for n in day.notifications if n[2] == "firing" and when("backlog:") <= n[1] < stretches[3][0]]
    assert len(pages) == 1, pages


async def test_the_broker_outage_pages_once(day: Day) -> None:
    stretches = timeline()["healthy"]
    pages = [n for n in day.notifications if n[2] == "firing" and when("broker: SIGKILL") <= n[1] < stretches[4][0]]
    assert len(pages) == 1, pages


CRIT, WARN, INFO = {"severity": "critical"}, {"severity": "warning"}, {"severity": "info"}
W1, W3, REPORTS = {"worker": "w1@alertdtest"}, {"worker": "w3@alertdtest"}, {"queue": "reports"}

EXPECTED: list[tuple[str, str, dict[str, str]]] = [
    # OOM: w1 SIGKILLed with 1 running and 4 prefetched tasks, restarted 22 s later under the
    # same name: one critical page naming the 5 tasks; resolved a minute after it is back, the
    # notice one group_interval (5 m) after the page
    ("firing", "CeleryWorkerLost", {**CRIT, **W1}),
    # (the deploy restart of w2 pages nothing; the resolved notice of the OOM goes out 5 m after
    # its page, by when the backlog has begun)
    ("resolved", "CeleryWorkerLost", {**CRIT, **W1}),
    # backlog: w3, the only worker of reports, away for 3 minutes. One page: the queue has no
    # consumer, naming the worker that served it. Its tasks waiting (CeleryTaskLatencyHigh) and
    # the worker's shutdown (CeleryWorkerShutDown) fire at the same evaluation, muted by it.
    ("firing", "CeleryQueueNoConsumers", {**CRIT, **REPORTS, **W3}),
    # broker: redis-server down 150 s. One page: CeleryEventStreamDisconnected fires 30 s in,
    # its group_wait ends at the very evaluation CeleryBrokerUnreachable fires (`for: 1m`), and
    # the daemon flushes after evaluating, so the cause is known and the stream alert muted. No
    # worker is judged lost when the stream and the workers come back.
    ("firing", "CeleryBrokerUnreachable", CRIT),
    # every resolved notice of a page goes out, one group_interval after it
    ("resolved", "CeleryQueueNoConsumers", {**CRIT, **REPORTS, **W3}),
    ("resolved", "CeleryBrokerUnreachable", CRIT),
]
