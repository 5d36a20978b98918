"""Escalation (issue 15): a route's policy pages more receivers while an incident stays unacknowledged.

A real Notifier on a virtual clock, real stores (SQLite; Redis for two replicas), real silences,
real delivery (Apprise json:// to a local aiohttp sink, one path per receiver). The group's
timers (group_wait 30 s, group_interval 4 m) never land on a step's time (15 m, 45 m after the
first page at +30 s), so a step sent on its second proves the dispatcher woke the group for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from alertd.alert import Alert, AlertState
from alertd.clock import VirtualClock
from alertd.config import load_config
from alertd.dispatch.route import Step
from alertd.matchers import parse_matchers
from alertd.nflog import Entry
from alertd.notify.escalate import EscalateStage, Incident, acknowledged, step_state
from alertd.notify.service import Notifier
from alertd.notify.stage import Flush, Suppression
from alertd.silence.silences import Silences
from alertd.store.base import HistoryQuery, Store
from alertd.store.buffered import BufferedStore
from alertd.store.open import open_store
from alertd.yamlfile import FileError
from tests.conftest import RedisServer
from tests.notify_fixtures import T0, Sink, Stepper, make_alert, sink_posts

M = 60.0
FIRST_PAGE = T0 + 1 + 30  # the stepper puts the alert at +1 s; group_wait
STEP1, STEP2 = FIRST_PAGE + 15 * M, FIRST_PAGE + 45 * M


def policy(sink: Sink) -> str:
    hooks = "\n".join(
        f'  - name: {name}\n    apprise: ["{sink.url(path="/" + name)}"]\n    retries: 0'
        for name in ("primary", "secondary", "manager", "team")
    )
    return f"""
receivers:
{hooks}
route:
  receiver: team
  group_by: [alertname]
  group_wait: 30s
  group_interval: 4m
  repeat_interval: 4h
  routes:
    - matchers: ['severity="critical"']
      receiver: primary
      escalate:
        - {{after: 15m, receiver: secondary}}
        - {{after: 45m, receiver: manager}}
"""


FIRING = make_alert("QueueLong", queue="a", severity="critical")
RESOLVED = make_alert("QueueLong", AlertState.RESOLVED, queue="a", severity="critical", starts_at=T0)
RESOLVED.ends_at = T0 + 50 * M


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(start=T0)


@pytest.fixture
async def silences(store: Store, clock: VirtualClock) -> Silences:
    s = Silences(store, clock)
    await s.load()
    return s


def posts(sink: Sink) -> dict[str, list[str]]:
    """Titles each receiver got, by receiver."""
    return {
        name: [p["title"] for p in sink_posts(sink, "/" + name)] for name in ("primary", "secondary", "manager", "team")
    }


async def escalated(store: Store) -> list[tuple[str, float, int]]:
    got = await store.history(HistoryQuery(kind="escalated"))
    return sorted((e.receiver, e.ts, e.detail["step"]) for e in got)


async def test_unacknowledged_each_step_pages_at_its_second_and_the_resolve_reaches_everyone_once(
    sink: Sink, store: Store, clock: VirtualClock, silences: Silences
) -> None:
    n = Notifier(load_config(text=policy(sink)), store, clock, silences=silences)
    run = Stepper(n, clock)
    await run.until(STEP1 - 1, [FIRING])
    assert posts(sink) == {"primary": ["[FIRING:1] QueueLong"], "secondary": [], "manager": [], "team": []}
    await run.until(STEP2 + 60, [FIRING])
    assert await escalated(store) == [("manager", STEP2, 2), ("secondary", STEP1, 1)]
    (group,) = n.groups()
    assert group.next_flush == FIRST_PAGE + 12 * 4 * M  # the wake-ups moved none of the group's timers
    got = posts(sink)
    assert got["secondary"] == got["manager"] == ["[FIRING:1] QueueLong"]
    assert got["primary"] == ["[FIRING:1] QueueLong"]  # no extra page to the route's receiver
    (route,) = n.explain(FIRING.labels, clock.now())["routes"]  # the alert's explain view shows the policy
    assert route["escalate"] == [{"after": 900.0, "receiver": "secondary"}, {"after": 2700.0, "receiver": "manager"}]
    (first_step,) = sink_posts(sink, "/secondary")
    assert "escalated: unacknowledged 15m after the first page" in first_step["message"]

    await run.until(T0 + 60 * M, [RESOLVED])
    got = posts(sink)
    for name in ("primary", "secondary", "manager"):
        assert got[name] == ["[FIRING:1] QueueLong", "[RESOLVED] QueueLong"], (name, got)
    assert got["team"] == []
    assert n.groups() == []  # everyone told: the resolved alert left its group
    assert await store.get("escalation", group.key) is None  # the incident is over


async def test_a_wake_up_sends_the_due_step_only_and_everyone_else_keeps_the_groups_pace(
    sink: Sink, store: Store, clock: VirtualClock, silences: Silences
) -> None:
    n = Notifier(load_config(text=policy(sink)), store, clock, silences=silences)
    run = Stepper(n, clock)
    await run.until(STEP2 - 30, [FIRING])
    late = make_alert("QueueLong", queue="b", severity="critical", starts_at=clock.now())
    regular = FIRST_PAGE + 12 * 4 * M  # the group's next flush after step 2
    await run.until(regular - 1, [FIRING, late])  # step 2's wake-up is in between
    got = posts(sink)
    assert got["manager"] == ["[FIRING:2] QueueLong"]  # its first page: the group as it is now
    assert got["primary"] == got["secondary"] == ["[FIRING:1] QueueLong"]  # not told early of b
    await run.until(regular, [FIRING, late])
    got = posts(sink)
    assert got["primary"][-1] == got["secondary"][-1] == "[FIRING:2] QueueLong", got
    assert len(got["manager"]) == 1


async def test_an_acknowledgement_at_20m_stops_the_policy_and_the_resolve_reaches_who_was_paged(
    sink: Sink, store: Store, clock: VirtualClock, silences: Silences
) -> None:
    n = Notifier(load_config(text=policy(sink)), store, clock, silences=silences)
    run = Stepper(n, clock)
    await run.until(T0 + 20 * M, [FIRING])
    assert [r for r, _, _ in await escalated(store)] == ["secondary"]
    # the on-call acknowledges: a silence on the group's alerts, for ten minutes only
    await silences.upsert(
        parse_matchers('alertname="QueueLong"'),
        clock.now(),
        clock.now() + 10 * M,
        created_by="ana",
        comment="ack",
        author="ana",
    )
    await run.until(STEP2 + 5 * M, [FIRING])  # the silence ended at 30 m: the policy stays stopped
    assert [r for r, _, _ in await escalated(store)] == ["secondary"]
    assert posts(sink)["manager"] == []
    (stopped,) = await store.history(HistoryQuery(kind="escalation_stopped"))
    assert T0 + 20 * M <= stopped.ts <= T0 + 20 * M + 4 * M  # seen at the group's next flush
    await run.until(T0 + 60 * M, [RESOLVED])
    got = posts(sink)
    assert got["primary"] == got["secondary"] == ["[FIRING:1] QueueLong", "[RESOLVED] QueueLong"], got
    assert got["manager"] == []


async def test_a_step_receivers_failed_resolved_notice_is_sent_again_after_the_primary_is_done(
    sink: Sink, store: Store, clock: VirtualClock, silences: Silences
) -> None:
    n = Notifier(load_config(text=policy(sink)), store, clock, silences=silences)
    run = Stepper(n, clock)
    await run.until(STEP1 + 60, [FIRING])
    n.put([RESOLVED])
    sink.fail_times = 1  # the first request of the resolving flush is the step receiver's: a 500
    await run.until(T0 + 60 * M, [RESOLVED])
    got = posts(sink)
    assert got["primary"] == ["[FIRING:1] QueueLong", "[RESOLVED] QueueLong"]
    # dead-lettered once, then sent at the group's next flush: the alert stayed in the group for it
    assert got["secondary"] == ["[FIRING:1] QueueLong", "[RESOLVED] QueueLong", "[RESOLVED] QueueLong"], got
    assert [e.receiver for e in await store.history(HistoryQuery(kind="dead_letter"))] == ["secondary"]
    assert n.groups() == []


async def test_a_new_incident_after_the_resolve_starts_the_policy_again(
    sink: Sink, store: Store, clock: VirtualClock, silences: Silences
) -> None:
    n = Notifier(load_config(text=policy(sink)), store, clock, silences=silences)
    run = Stepper(n, clock, step=5)
    await run.until(T0 + 20 * M, [FIRING])
    await run.until(T0 + 40 * M, [RESOLVED])
    again = make_alert("QueueLong", queue="a", severity="critical", starts_at=T0 + 40 * M)
    await run.until(T0 + 40 * M + 10 * M, [again])
    assert len(posts(sink)["secondary"]) == 2  # paged and told resolved; not yet paged again
    await run.until(T0 + 40 * M + 20 * M, [again])
    # the second incident's first page went out at its flush after 40 m; its step 15 m later
    assert [r for r, _, _ in await escalated(store)] == ["secondary", "secondary"]
    assert posts(sink)["secondary"][-1] == "[FIRING:1] QueueLong"


async def test_a_restart_mid_policy_neither_repeats_nor_forgets_a_step(
    sink: Sink, store: Store, clock: VirtualClock, silences: Silences
) -> None:
    config = load_config(text=policy(sink))
    first = Notifier(config, store, clock, silences=silences, replica="host:9093")
    await Stepper(first, clock).until(STEP1 + 60, [FIRING])
    await first.stop()
    second = Notifier(config, store, clock, silences=silences, replica="host:9093")
    await Stepper(second, clock).until(STEP2 - 10 * M, [FIRING])
    await second.stop()
    assert [r for r, _, _ in await escalated(store)] == ["secondary"]
    clock.set(STEP2 + 5 * M)  # down while step 2 fell due
    third = Notifier(config, store, clock, silences=silences, replica="host:9093")
    await Stepper(third, clock).until(STEP2 + 15 * M, [FIRING])
    got = posts(sink)
    assert got["primary"] == got["secondary"] == got["manager"] == ["[FIRING:1] QueueLong"], got
    # step 2 went out at the restarted group's first flush (group_wait after the restart)
    assert await escalated(store) == [("manager", STEP2 + 5 * M + 1 + 30, 2), ("secondary", STEP1, 1)]


async def test_a_restart_before_a_step_sends_it_on_its_second(
    sink: Sink, store: Store, clock: VirtualClock, silences: Silences
) -> None:
    config = load_config(text=policy(sink))
    first = Notifier(config, store, clock, silences=silences, replica="host:9093")
    await Stepper(first, clock).until(T0 + 10 * M, [FIRING])
    await first.stop()
    second = Notifier(config, store, clock, silences=silences, replica="host:9093")
    await Stepper(second, clock).until(STEP1 + 60, [FIRING])
    assert await escalated(store) == [("secondary", STEP1, 1)]
    assert len(posts(sink)["primary"]) == 1


@pytest.fixture
async def redis_store(redis_url: str, unique: str) -> AsyncIterator[Store]:
    s = open_store(f"{redis_url}?prefix=alertd-escalate-{unique}:")
    await s.open()
    yield s
    await s.close()


async def test_two_replicas_on_one_redis_send_each_step_once(
    sink: Sink, redis_store: Store, clock: VirtualClock
) -> None:
    silences = Silences(redis_store, clock)
    await silences.load()
    config = load_config(text=policy(sink))
    replicas = [Notifier(config, redis_store, clock, silences=silences, replica=r) for r in ("r1", "r2")]
    while clock.now() < T0 + 60 * M:
        clock.advance(1)
        alerts = [FIRING] if clock.now() < T0 + 50 * M else [RESOLVED]
        for n in replicas:
            n.put(alerts)
        # both flush in the same instant: the claims and the shared log keep them apart
        await asyncio.gather(*(n.flush_due() for n in replicas))
    got = posts(sink)
    for name in ("primary", "secondary", "manager"):
        assert got[name] == ["[FIRING:1] QueueLong", "[RESOLVED] QueueLong"], (name, got)
    assert await escalated(redis_store) == [("manager", STEP2, 2), ("secondary", STEP1, 1)]
    assert len(await redis_store.history(HistoryQuery(kind="sent"))) == 6


async def test_through_a_store_outage_the_route_pages_and_the_step_still_does(
    sink: Sink, redis_server: RedisServer, clock: VirtualClock
) -> None:
    store = BufferedStore(open_store(redis_server.url), clock, url=redis_server.url)
    await store.open()
    try:
        redis_server.kill()  # down before the incident: the escalation record cannot be read
        n = Notifier(load_config(text=policy(sink)), store, clock)
        run = Stepper(n, clock)
        await run.until(STEP1 - 1, [FIRING])
        assert [r["path"] for r in sink.requests] == ["/primary"]
        # the step goes out on its second, the incident read from the notification log's cache
        await run.until(STEP1, [FIRING])
        assert [r["path"] for r in sink.requests] == ["/primary", "/secondary"]
        await run.until(STEP1 + 5 * M, [FIRING])
        assert len(sink.requests) == 2
    finally:
        await store.close()


# -- the pieces, table-driven --------------------------------------------------------------

STEP = Step(15 * M, "secondary")


@pytest.mark.parametrize(
    ("incident", "now", "paged", "expected"),
    [
        (Incident(), T0, False, "idle"),  # nothing told firing: no incident
        (Incident(), T0, True, "idle"),  # a step receiver's leftover from an earlier incident
        (Incident(since=T0), T0 + 14 * M, False, "waiting"),
        (Incident(since=T0), T0 + 15 * M, False, "due"),  # on its second
        (Incident(since=T0), T0 + 99 * M, False, "due"),  # late (a restart): still owed
        (Incident(since=T0), T0 + 16 * M, True, "paged"),
        (Incident(since=T0, acked_at=T0 + 5 * M), T0 + 15 * M, False, "stopped"),
        (Incident(since=T0, acked_at=T0 + 15 * M), T0 + 15 * M, False, "stopped"),  # acked at the wake-up itself
        (Incident(since=T0, acked_at=T0 + 20 * M), T0 + 30 * M, True, "paged"),  # paged before the ack: follows it
    ],
)
def test_step_state(incident: Incident, now: float, paged: bool, expected: str) -> None:
    assert step_state(STEP, incident, now, paged) == expected


SINCE = T0 + 100 * M


def told(receiver: str, alert: Alert, at: float) -> Entry:
    return Entry(receiver, "", [alert.fingerprint], [], at, "first notification", starts={alert.fingerprint: T0})


@pytest.mark.parametrize(
    ("case", "now", "told_before", "record", "silenced", "timer", "sent", "wake", "goes_on"),
    [
        ("no incident yet: the page is about to go", SINCE, [], None, False, True, [], SINCE + 15 * M, True),
        ("step 1 not due", SINCE + 10 * M, ["primary"], None, False, True, [], SINCE + 15 * M, True),
        ("step 1 due", SINCE + 15 * M, ["primary"], None, False, True, ["secondary"], SINCE + 45 * M, True),
        ("step 1 on a wake-up", SINCE + 15 * M, ["primary"], None, False, False, ["secondary"], SINCE + 45 * M, False),
        ("both due late", SINCE + 50 * M, ["primary"], None, False, True, ["manager", "secondary"], None, True),
        ("step 1 sent: step 2", SINCE + 45 * M, ["primary", "secondary"], None, False, True, ["manager"], None, True),
        ("acknowledged earlier", SINCE + 50 * M, ["primary"], SINCE + 5 * M, False, True, [], None, True),
        ("acknowledged now", SINCE + 15 * M, ["primary"], None, True, True, [], None, True),
    ],
)
async def test_the_escalation_stage(
    sink: Sink,
    store: Store,
    clock: VirtualClock,
    case: str,
    now: float,
    told_before: list[str],
    record: float | None,
    silenced: bool,
    timer: bool,
    sent: list[str],
    wake: float | None,
    goes_on: bool,
) -> None:
    """The stage alone (the notifier's own, its delivery stages real): which steps it sends, when
    it asks to be woken, and whether the flush goes on to the route's receiver."""
    n = Notifier(load_config(text=policy(sink)), store, clock)
    (escalate,) = [s for s in n.pipeline if isinstance(s, EscalateStage)]
    n.put([FIRING])
    (group,) = n.groups()
    for receiver in told_before:
        await n.nflog.put(
            replace(told(receiver, FIRING, SINCE if receiver == "primary" else SINCE + 15 * M), group_key=group.key)
        )
    if record is not None:
        await store.put("escalation", group.key, {"since": SINCE, "acked_at": record})
    flush = Flush.of(group, n.receivers["primary"], now, timer=timer)
    if silenced:
        flush.suppressed = {FIRING.fingerprint: Suppression("silenced", ["s1"])}
    out = await escalate(flush)
    assert sorted(p["path"].strip("/") for p in sink.requests) == sent, case
    assert group.wake_at == wake, case
    assert (out is not None) == goes_on, case
    if silenced:
        assert (await store.get("escalation", group.key) or {}).get("acked_at") == now
        assert len(await store.history(HistoryQuery(kind="escalation_stopped"))) == 1


def group_flush(*alerts: Alert, suppressed: dict[str, str] | None = None) -> Flush:
    from alertd.config import RouteConfig
    from alertd.dispatch.groups import AlertGroup
    from alertd.dispatch.route import build_route

    route = build_route(RouteConfig(receiver="primary"))
    group = AlertGroup(route, {}, "g", {a.fingerprint: a for a in alerts})
    flush = Flush.of(group, None, T0)  # type: ignore[arg-type]  # the receiver is not read
    flush.suppressed = {fp: Suppression(kind, ["x"]) for fp, kind in (suppressed or {}).items()}
    return flush


A = make_alert("QueueLong", queue="a")
B = make_alert("QueueLong", queue="b")


@pytest.mark.parametrize(
    ("flush", "expected"),
    [
        (group_flush(A), False),
        (group_flush(A, suppressed={A.fingerprint: "silenced"}), True),
        (group_flush(A, B, suppressed={A.fingerprint: "silenced"}), False),  # b still pages
        (group_flush(A, B, suppressed={A.fingerprint: "silenced", B.fingerprint: "inhibited"}), True),
        (group_flush(A, suppressed={A.fingerprint: "inhibited"}), False),  # inhibition is no acknowledgement
        (group_flush(make_alert("QueueLong", AlertState.RESOLVED, queue="a")), False),  # nothing firing
    ],
)
def test_acknowledged(flush: Flush, expected: bool) -> None:
    assert acknowledged(flush) is expected


@pytest.mark.parametrize(
    ("steps", "message", "line"),
    [
        ("[{after: 15m, receiver: nobody}]", "no receiver named 'nobody'", 10),
        ("[{after: 15m, receiver: b}, {after: 15m, receiver: c}]", "must be later than the one before", 10),
        ("[{after: 15m, receiver: b}, {after: 45m, receiver: b}]", "'b' is in the escalation policy twice", 10),
        ("[{after: 15m, receiver: a}]", "'a' is the route's own receiver", 10),
        ("[{after: 0s, receiver: b}]", "greater than 0", 10),
        ("[{receiver: b}]", "required field is missing", 10),
    ],
)
def test_config_errors_name_the_file_and_line(steps: str, message: str, line: int) -> None:
    text = f"""receivers:
  - name: a
  - name: b
  - name: c
route:
  receiver: a
  routes:
    - matchers: ['severity="critical"']
      receiver: a
      escalate: {steps}
"""
    with pytest.raises(FileError) as e:
        load_config(text=text)
    problems = e.value.problems
    assert any(message in p.message and p.line == line for p in problems), [(p.line, p.message) for p in problems]


def test_a_valid_policy_loads_in_order() -> None:
    from alertd.dispatch.route import build_route

    cfg = load_config(
        text="""receivers: [{name: a}, {name: b}, {name: c}]
route:
  receiver: a
  escalate: [{after: 15m, receiver: b}, {after: 1h, receiver: c}]
  routes: [{matchers: ['x="1"']}]
"""
    )
    root = build_route(cfg.route)  # type: ignore[arg-type]
    assert root.escalate == (Step(900.0, "b"), Step(3600.0, "c"))
    assert root.routes[0].escalate == ()  # not inherited
