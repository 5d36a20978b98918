"""Never lose a page (issue 10), attacked from outside: real `alertd run` processes, a real HTTP
sink, real Celery task events on the broker's event channel (under a private global_keyprefix),
a private redis-server as the store.

Each fault kills alertd at one instant of a send - at a crash point (ALERTD_CRASH_AT: before or
after the send claim, with the attempt logged but no request sent, delivered but not yet in the
notification log), while the sink holds the POST open, during a retry backoff - or stops it with
SIGTERM during a backoff; then the same config starts again without the fault. Per group, the
sink must answer the firing and the resolved notification at least once, and twice only where
alertd cannot know whether the receiver has it (killed mid-request or after it), where history
names the re-send a possible duplicate and /metrics counts it. The restart sends what is owed at
once: it does not wait out the dead process's claim (60 s).

Then two replicas on one store, groups growing during group_wait: each notification once, none
missing.
"""

from __future__ import annotations

import itertools
import re
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from alertd.faults import POINTS
from tests.conftest import REDIS_URL, RedisServer, free_port
from tests.daemon_fixtures import FAIL_RULES, READ_TOKEN, DaemonProcess, hook_route, producer, wait_until, write_setup
from tests.notify_fixtures import ThreadedSink

pytestmark = pytest.mark.broker

TASK = "t.fault"
CLAIM_TTL = 60.0  # alertd's default: a restart that waited for the claim would take this long
RESTART_SENDS_WITHIN = 10.0  # group_wait, a rules tick and a busy machine; far below CLAIM_TTL


def rules(resolve_after: float, *, per_worker: bool = False) -> str:
    """The shared TaskFailed event rule, resolving `resolve_after` s after the last failure; an
    alert per task, or per task and worker."""
    text = FAIL_RULES.replace("resolve_after: 10m", f"resolve_after: {resolve_after:g}s")
    if per_worker:
        text = text.replace("by: [task]", "by: [task, worker]").replace(
            "{{ labels.task }} failed", "{{ labels.task }} failed on {{ labels.worker }}"
        )
    return text


# -- what the receiver got ----------------------------------------------------------------------

_FIRING = re.compile(r"^FIRING: (.+?)(?: \[value .*\])? since ", re.M)
_RESOLVED = re.compile(r"^RESOLVED: .+ is resolved after .*\n  while firing: (.+)$", re.M)


@dataclass
class Notice:
    """One request the sink got, read back from alertd's generic template."""

    group: str  # the group labels' values, from the title
    kind: str  # firing (some alert firing) | resolved (all resolved)
    reason: str
    firing: frozenset[str]  # summaries of the alerts listed firing
    resolved: frozenset[str]  # ... and resolved
    status: int | None  # what the sink answered; None while it holds the request
    at: float

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def notices(sink: ThreadedSink) -> list[Notice]:
    """What the `hook` receiver got, in order of arrival. Apprise's json:// posts type `failure` for
    a notification with firing alerts, `success` when all are resolved."""
    with sink.lock:
        requests = list(sink.requests)
    out = []
    for r in requests:
        doc = r["json"] if isinstance(r["json"], dict) else {}
        if r["path"] != "/hook":
            continue
        message = str(doc.get("message", ""))
        reason = re.match(r"\((.*)\)", message)
        out.append(
            Notice(
                group=str(doc.get("title", "")).partition("] ")[2],
                kind="resolved" if doc.get("type") == "success" else "firing",
                reason=reason.group(1) if reason else "",
                firing=frozenset(_FIRING.findall(message)),
                resolved=frozenset(_RESOLVED.findall(message)),
                status=r["status"],
                at=float(r["at"]),
            )
        )
    return out


def delivered(sink: ThreadedSink, kind: str | None = None) -> list[Notice]:
    """Notifications the sink answered 2xx (of `kind`)."""
    return [n for n in notices(sink) if n.ok and kind in (None, n.kind)]


def wait_or_explain(
    predicate: Callable[[], object], what: str, timeout: float, sink: ThreadedSink, *daemons: DaemonProcess
) -> None:
    """wait_until, failing with what the sink got and what the daemons logged."""
    try:
        wait_until(predicate, timeout=timeout, what=what)
    except AssertionError as e:
        logs = "\n".join(f"--- {d.log.name}\n{d.output()[-4000:]}" for d in daemons)
        raise AssertionError(f"{e}\nsink: {notices(sink)}\n{logs}") from None


def metric(daemon: DaemonProcess, name: str) -> float | None:
    """A sample from alertd's /metrics, or None if it does not expose that metric."""
    status, text = daemon.api.call("GET", "/metrics", token=READ_TOKEN)
    assert status == 200, text
    for line in str(text).splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    return None


# -- one test's alertd, sink, store and events ---------------------------------------------------


@pytest.fixture(scope="module")
def store_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One private redis-server for the module's stores (each test its own key prefix): the shared
    db 13 is flushed by other tests as they start, and one server is quicker than one per test."""
    for attempt in range(3):  # a free port can be taken before redis-server binds it
        server = RedisServer(port=free_port(), dir=tmp_path_factory.mktemp("store"))
        try:
            server.start()
        except AssertionError:
            server.kill()
            if attempt == 2:
                raise
            continue
        yield server
        server.kill()
        return


@dataclass
class Rig:
    tmp: Path
    sink: ThreadedSink
    store: RedisServer
    launch: Callable[..., DaemonProcess]
    keyprefix: str  # the broker's global_keyprefix and the store's key prefix
    cfg: Path = field(init=False)
    port: int = field(default_factory=free_port)
    _producer: Any = None

    @property
    def store_url(self) -> str:
        return f"{self.store.url}?prefix={self.keyprefix}"

    @property
    def replica(self) -> str:
        """alertd's default identity for this config: host:API port."""
        return f"{socket.gethostname()}:{self.port}"

    def configure(self, *, resolve_after: float, hook: dict[str, Any] | None = None) -> None:
        self.cfg = write_setup(
            self.tmp,
            broker=REDIS_URL,
            store=self.store_url,
            sink_url=self.sink.url(),
            port=self.port,
            rules=rules(resolve_after),
            route=hook_route("1s", "1s", "1h", group_by="[task]"),
            keyprefix=self.keyprefix,
            hook=hook,
        )

    def start(self, name: str, env: dict[str, str] | None = None) -> DaemonProcess:
        return self.launch(self.cfg, self.port, name, env=env)

    def fail(self, task: str = TASK, worker: str = "celery@faults") -> None:
        """A task fails on `worker`, as Celery's events tell it: received, then failed."""
        self.fail_many([(task, worker)])

    def fail_many(self, failures: list[tuple[str, str]]) -> None:
        if self._producer is None:
            self._producer = producer(REDIS_URL, self.keyprefix)
        with self._producer.connection_for_write() as conn:
            for task, worker in failures:
                dispatcher = self._producer.events.Dispatcher(conn, hostname=worker)
                task_id = str(uuid.uuid4())
                dispatcher.send("task-received", uuid=task_id, name=task, args="()", kwargs="{}", retries=0)
                dispatcher.send(
                    "task-failed", uuid=task_id, exception="RuntimeError('boom')", traceback="RuntimeError: boom"
                )
                dispatcher.close()

    def history(self, daemon: DaemonProcess, kind: str) -> list[dict[str, Any]]:
        """History entries of `kind`, oldest first."""
        return list(reversed(daemon.api.get("/api/alertd/v1/history", query=f"kind={kind}&limit=1000")))

    def claims(self) -> dict[str, str]:
        """Send claims held in the store: key -> owner."""
        r = redis.Redis(port=self.store.port, decode_responses=True)
        try:
            return {k: str(r.get(k)) for k in r.scan_iter(f"{self.keyprefix}claim:*")}
        finally:
            r.close()


@pytest.fixture
def rig(tmp_path: Path, unique: str, http_sink: ThreadedSink, store_server: RedisServer, alertd_process: Any) -> Rig:
    return Rig(tmp_path, http_sink, store_server, alertd_process, keyprefix=f"faults-{unique}:")


# -- one send, killed at every instant -----------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """Where alertd dies during the send of one notification (`kind`)."""

    at: str  # a crash point of alertd.faults, "mid-request", "backoff" (SIGKILL) or "sigterm-backoff"
    kind: str  # firing | resolved

    @property
    def id(self) -> str:
        return f"{self.at}:{self.kind}"

    @property
    def duplicate(self) -> bool:
        """The receiver has the notification already, and alertd cannot know it."""
        return self.at in ("mid-request", "after-request")

    @property
    def attempt_logged(self) -> bool:
        """The attempt was in the notification log at the crash, so its re-send is named."""
        return self.at not in ("before-claim", "after-claim")

    @property
    def resolve_after(self) -> float:
        # a firing fault leaves the restarted process time to page before the alert resolves;
        # SIGTERM also waits out alertd's 5 s grace for sends in flight
        return {"firing": 8.0, "resolved": 3.0}[self.kind] + (6.0 if self.at == "sigterm-backoff" else 0.0)

    @property
    def hook(self) -> dict[str, Any]:
        # the first attempt gets a 500; the backoff outlasts the SIGTERM grace, so the send is cut
        if self.at == "backoff":
            return {"retries": 2, "retry_backoff": "4s"}
        if self.at == "sigterm-backoff":
            return {"retries": 2, "retry_backoff": "8s"}
        return {}


FAULTS = [
    *(Fault(point, kind) for kind in ("firing", "resolved") for point in POINTS),
    Fault("mid-request", "firing"),
    Fault("mid-request", "resolved"),
    Fault("backoff", "firing"),
    Fault("sigterm-backoff", "firing"),
]


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.id)
def test_a_send_killed_at_any_instant_is_completed_after_restart(rig: Rig, fault: Fault) -> None:
    rig.configure(resolve_after=fault.resolve_after, hook=fault.hook)
    sink = rig.sink
    if fault.at in ("backoff", "sigterm-backoff"):
        sink.statuses.append(500)
    if fault.id == "mid-request:firing":
        sink.hold(1)
    first = rig.start("first", env={"ALERTD_CRASH_AT": fault.id} if fault.at in POINTS else None)
    rig.fail()

    if fault.at in POINTS:
        assert first.wait_exit() == -signal.SIGKILL, first.output()[-3000:]
    elif fault.at == "mid-request":
        if fault.kind == "resolved":
            wait_until(lambda: delivered(sink, "firing"), what="the page")
            sink.hold(1)
        wait_until(sink.held, what=f"the {fault.kind} POST in flight")
        first.kill(signal.SIGKILL)
        sink.release()  # ...answered to nobody: the receiver has it, alertd never heard back
        wait_until(lambda: not sink.held(), what="the held request answered")
    else:
        wait_until(lambda: rig.history(first, "retry"), what="the first attempt's 500 and its retry backoff")
        if fault.at == "backoff":
            first.kill(signal.SIGKILL)
        else:
            stopping = time.monotonic()
            first.kill(signal.SIGTERM)
            assert first.proc is not None and first.proc.returncode == 0, first.output()[-3000:]
            assert time.monotonic() - stopping < 10
            assert rig.claims() == {}, "a graceful stop hands its send claim back"
    if fault.at != "sigterm-backoff":
        # a dead sender's claim stays until it expires; the restart must recognise it as its own
        held = {rig.replica} if fault.at != "before-claim" else set()
        assert set(rig.claims().values()) == held
    before = notices(sink)
    # the fault hit where it was meant to: what reached the receiver before the restart
    told = (["firing"] if fault.kind == "resolved" else []) + ([fault.kind] if fault.duplicate else [])
    assert [n.kind for n in before if n.ok] == told, before
    assert [n.status for n in before if not n.ok] == ([500] if "backoff" in fault.at else [])

    restarted = time.time()
    second = rig.start("second")

    def since_restart() -> list[Notice]:
        return [n for n in notices(sink)[len(before) :] if n.ok]

    # whatever the fault, the resolved notice is still owed (or may be: re-sent) after the restart
    wait_or_explain(
        lambda: any(n.kind == "resolved" for n in since_restart()), "the resolved notice", 25, sink, first, second
    )
    assert since_restart()[0].at - restarted < RESTART_SENDS_WITHIN < CLAIM_TTL, "the restart waited for a claim"
    time.sleep(1.5)  # a group_interval and a rules tick more: room for a duplicate to show

    got = notices(sink)
    summary = f"{TASK} failed"
    for kind in ("firing", "resolved"):
        ok = delivered(sink, kind)
        expected = 2 if fault.duplicate and kind == fault.kind else 1
        assert len(ok) == expected, (kind, got)
        assert all(n.group == TASK and summary in (n.firing | n.resolved) for n in ok), got
    kinds = [n.kind for n in delivered(sink)]
    assert kinds.index("resolved") > max(i for i, k in enumerate(kinds) if k == "firing"), kinds

    sent = rig.history(second, "sent")
    named = [e for e in sent if "possible_duplicate" in e["detail"]]
    assert len(named) == fault.attempt_logged, sent
    for e in named:
        assert e["detail"]["possible_duplicate"]["by"] == rig.replica
        assert (e["reason"] == "all resolved") == (fault.kind == "resolved"), e
    counted = metric(second, "alertd_notifications_possible_duplicates_total")
    assert counted is None or counted == len(named)
    assert "Traceback" not in second.output()
    print(f"\n{fault.id}: sink {[(n.kind, n.status) for n in got]}; named possible duplicates {len(named)}")
    second.kill(signal.SIGKILL)  # done; a graceful stop would only slow the suite down


# -- two replicas, groups growing during group_wait ----------------------------------------------

ROUNDS = 20
ROUND_EVERY = 0.3  # a new group starts this often
ARRIVALS = (0.0, 0.9, 1.8, 2.7, 4.5)  # its alerts, in seconds from its first: during group_wait, and one after
HA_GROUP_WAIT, HA_GROUP_INTERVAL = 3.0, 4.0
SKEW = 0.5  # sink arrival times vs. alertd's send times


def test_two_replicas_with_groups_growing_during_group_wait_page_each_alert_once(
    tmp_path: Path, unique: str, http_sink: ThreadedSink, store_server: RedisServer, alertd_process: Any
) -> None:
    rig = Rig(tmp_path, http_sink, store_server, alertd_process, keyprefix=f"faults-ha-{unique}:")
    replicas = []
    for name in ("a", "b"):
        d = tmp_path / name
        d.mkdir()
        port = free_port()
        cfg = write_setup(
            d,
            broker=REDIS_URL,
            store=rig.store_url,
            sink_url=http_sink.url(),
            port=port,
            rules=rules(5, per_worker=True),
            route=hook_route(f"{HA_GROUP_WAIT:g}s", f"{HA_GROUP_INTERVAL:g}s", "1h", group_by="[task]"),
            keyprefix=rig.keyprefix,
        )
        replicas.append(alertd_process(cfg, port, name))

    schedule = sorted(
        (r * ROUND_EVERY + offset, f"t.round{r}", f"celery@w{i}")
        for r in range(ROUNDS)
        for i, offset in enumerate(ARRIVALS)
    )
    alerts = {(task, f"{task} failed on {worker}") for _, task, worker in schedule}
    t0 = time.monotonic()
    for at, task, worker in schedule:
        time.sleep(max(0.0, t0 + at - time.monotonic()))
        rig.fail(task, worker)

    def told(kind: str) -> set[tuple[str, str]]:
        return {(n.group, a) for n in delivered(http_sink) for a in (n.firing if kind == "firing" else n.resolved)}

    wait_or_explain(lambda: told("resolved") >= alerts, "every alert's resolved notice", 40, http_sink, *replicas)
    time.sleep(HA_GROUP_INTERVAL + 1)  # room for a late duplicate from either replica

    got = delivered(http_sink)
    assert told("firing") == alerts, "every alert paged"
    assert told("resolved") == alerts, "every alert's resolved notice sent"
    assert all(n.status is not None for n in notices(http_sink))
    for group, group_notices in itertools.groupby(sorted(got, key=lambda n: (n.group, n.at)), key=lambda n: n.group):
        seen = list(group_notices)
        what = [(n.reason, sorted(n.firing), sorted(n.resolved)) for n in seen]
        assert len(set(map(str, what))) == len(what), (group, what)  # never the same notification twice
        gaps = [b.at - a.at for a, b in itertools.pairwise(seen)]
        assert all(g >= HA_GROUP_INTERVAL - SKEW for g in gaps), (group, gaps, what)
        firsts = [n for n in seen if n.reason == "first notification"]
        assert len(firsts) == 1, (group, what)
    sent = rig.history(replicas[0], "sent")
    assert len(sent) == len(got)  # one store, one history: every delivery recorded once
    assert not [e for e in sent if "possible_duplicate" in e["detail"]], "no re-send of a send cut short"
    for r in replicas:
        assert "Traceback" not in r.output()
    reasons = {k: sum(1 for n in got if n.reason == k) for k in sorted({n.reason for n in got})}
    by = {r.log.stem: r.output().count("Sent JSON POST") for r in replicas}
    waited = {r.log.stem: r.output().count("another replica holds the send") for r in replicas}
    print(f"\n{len(got)} notifications, {ROUNDS} groups of {len(ARRIVALS)}: {reasons}; sent by {by}; waited {waited}")
