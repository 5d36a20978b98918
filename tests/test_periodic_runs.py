"""Matching task events to beat entries, and the per-entry checks, through the real observer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from alertd.clock import VirtualClock
from alertd.observe.observer import Observer
from alertd.observe.series import SeriesStore
from alertd.periodic.checks import Periodic
from alertd.periodic.config import PeriodicConfig
from alertd.periodic.entries import Entry, beat_args_repr, beat_kwargs_repr
from alertd.periodic.schedules import Interval
from alertd.sources.health import StreamHealth
from tests.observe_fixtures import Events

T0 = 1_700_000_000.0


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(start=T0)


@pytest.fixture
def observer(clock: VirtualClock) -> Observer:
    health = StreamHealth(transport="test")
    health.mark_connected(T0)
    return Observer(SeriesStore(), clock, health=health)


def entry(name: str, task: str = "app.report", every: float = 60.0, args: Any = (), queue: str = "celery") -> Entry:
    return Entry(name, task, Interval(every), beat_args_repr(args), beat_kwargs_repr({}), queue)


def periodic_with(observer: Observer, clock: VirtualClock, *entries: Entry) -> Periodic:
    p = Periodic.watching(PeriodicConfig(), observer, clock)
    p.set_entries(list(entries), clock.now())
    return p


def sent(events: Events, uuid: str, task: str = "app.report", args: str = "()") -> dict[str, Any]:
    return {**events.sent(uuid, task), "args": args}


def gauge(p: Periodic, clock: VirtualClock, name: str, entry_name: str) -> float | None:
    for labels, v in p.gauges(clock.now())[name].items():
        if labels[0] == entry_name:
            return v
    return None


def test_entries_sharing_a_task_are_told_apart_by_their_args(observer: Observer, clock: VirtualClock) -> None:
    events = Events(clock)
    p = periodic_with(observer, clock, entry("eu", args=("eu",)), entry("us", args=("us",)))
    clock.advance(60)
    u = events.uuid()
    observer.on_events([sent(events, u, args="['eu']"), events.received(u, "app.report"), events.started(u)])
    observer.on_events([events.succeeded(u)])
    clock.advance(100)  # both due at 60: eu ran, us did not
    assert gauge(p, clock, "periodic_missed_seconds", "eu") == 40.0
    assert gauge(p, clock, "periodic_missed_seconds", "us") == 100.0
    # the same task called with other arguments (by hand, say) is no run of either entry
    observer.on_events([sent(events, events.uuid(), args="['asia']")])
    assert gauge(p, clock, "periodic_missed_seconds", "us") == 100.0


def test_a_retried_run_is_judged_by_its_final_outcome(observer: Observer, clock: VirtualClock) -> None:
    events = Events(clock)
    p = periodic_with(observer, clock, entry("sync"))
    clock.advance(60)
    u = events.uuid()
    observer.on_events([sent(events, u), events.received(u, "app.report"), events.started(u), events.retried(u)])
    assert gauge(p, clock, "periodic_failed", "sync") == 0.0
    clock.advance(1)
    # the retry is re-sent under the same uuid: the same run, not a second one
    observer.on_events([sent(events, u), events.received(u, "app.report"), events.started(u), events.failed(u)])
    assert gauge(p, clock, "periodic_failed", "sync") == 1.0
    assert len(p.entries["sync"].runs) == 1
    clock.advance(59)
    v = events.uuid()
    observer.on_events([sent(events, v), events.received(v, "app.report"), events.started(v), events.succeeded(v)])
    assert gauge(p, clock, "periodic_failed", "sync") == 0.0


def test_runs_seen_only_from_task_received_are_reported(observer: Observer, clock: VirtualClock) -> None:
    events = Events(clock)
    p = periodic_with(observer, clock, entry("sync"))
    clock.advance(60)
    u = events.uuid()
    observer.on_events([{**events.received(u, "app.report"), "args": "()"}, events.started(u), events.succeeded(u)])
    snap = p.snapshot(clock.now())
    assert snap["task_sent_events"] is False
    (e,) = snap["entries"]
    assert e["seen_from"] == "task-received" and e["last_run"]["outcome"] == "succeeded"
    assert e["schedule_text"] == "every minute" and e["state"] == "ok"


def test_state_survives_a_restart(observer: Observer, clock: VirtualClock) -> None:
    events = Events(clock)
    p = periodic_with(observer, clock, entry("sync"))
    clock.advance(60)
    u = events.uuid()
    observer.on_events([sent(events, u), events.received(u, "app.report"), events.started(u), events.failed(u)])
    saved = p.export_state()
    clock.advance(5)
    fresh = Periodic.watching(PeriodicConfig(), observer, clock)
    fresh.import_state(saved)  # before the schedule is read, as at start
    fresh.set_entries([entry("sync")], clock.now())
    assert gauge(fresh, clock, "periodic_failed", "sync") == 1.0
    assert fresh.entries["sync"].since == T0
    fresh.import_state({"entries": {"sync": {"runs": [{"uuid": 3}, "x"], "since": "soon"}}})  # junk: skipped
    assert gauge(fresh, clock, "periodic_failed", "sync") in (0.0, 1.0)


def test_disabled_and_removed_entries_have_no_gauges(observer: Observer, clock: VirtualClock) -> None:
    p = periodic_with(observer, clock, entry("a"), Entry("b", "app.b", Interval(5), enabled=False))
    assert [k[0] for k in p.gauges(clock.now())["periodic_missed_seconds"]] == ["a"]
    p.set_entries([], clock.now())
    assert p.gauges(clock.now())["periodic_missed_seconds"] == {}


async def test_the_schedule_is_read_again_each_reload_off_the_event_loop(
    observer: Observer, clock: VirtualClock
) -> None:
    import asyncio
    import threading

    schedules = [[entry("a")], [entry("a"), entry("b")], [Entry("a", "app.report", Interval(60), enabled=False)]]
    threads: list[str] = []

    def loader() -> tuple[list[Entry], list[str]]:
        threads.append(threading.current_thread().name)
        return schedules[min(len(threads) - 1, 2)], []

    p = Periodic(PeriodicConfig(app="x:app", reload=10), clock, watch=observer.watch, loader=loader)
    task = asyncio.create_task(p.run())
    try:
        for want in (["a"], ["a", "b"], []):
            while len(threads) < [["a"], ["a", "b"], []].index(want) + 1:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.01)
            assert [k[0] for k in p.gauges(clock.now())["periodic_missed_seconds"]] == want
            clock.advance(10)
    finally:
        task.cancel()
    assert threading.main_thread().name not in threads  # the user's import never runs on the loop


def test_beat_entries_from_a_real_app_with_routes_and_a_bad_entry() -> None:
    from datetime import timedelta

    from celery import Celery
    from celery.schedules import crontab

    from alertd.periodic.beat import ScheduleProblem, beat_entries, load_app

    app = Celery("routes-test", set_as_current=False)
    app.conf.timezone = "Asia/Tokyo"
    app.conf.task_routes = {"reports.*": {"queue": "reports"}}
    app.conf.beat_schedule = {
        "nightly": {"task": "reports.nightly", "schedule": crontab(hour=3, minute=0), "args": (1, "x")},
        "often": {"task": "sync.crm", "schedule": timedelta(seconds=30), "options": {"queue": "crm"}},
        "plain": {"task": "sync.other", "schedule": 5.0, "kwargs": {"full": True}},
        "broken": {"task": "x.y"},
    }
    entries, problems = beat_entries(app)
    by = {e.name: e for e in entries}
    assert by["nightly"].schedule.describe() == "every day at 03:00 Asia/Tokyo"
    assert (by["nightly"].queue, by["nightly"].args_repr) == ("reports", "[1, 'x']")
    assert by["often"].queue == "crm" and by["plain"].queue == "celery" and by["plain"].kwargs_repr == "{'full': True}"
    assert problems == ["beat_schedule['broken']: expected a mapping with `task` and `schedule`"]
    assert load_app("tests.beatapp:app").main == "alertdbeat"
    with pytest.raises(ScheduleProblem, match=r"periodic\.app 'no\.such\.module:app': cannot import it"):
        load_app("no.such.module:app")


def test_a_task_sent_arriving_after_task_received_is_still_beat_s_send(observer: Observer, clock: VirtualClock) -> None:
    """Beat and the worker publish their events separately: the worker's may be heard first."""
    events = Events(clock)
    p = periodic_with(observer, clock, entry("sync"))
    clock.advance(60)
    u = events.uuid()
    observer.on_events([{**events.received(u, "app.report"), "args": "()"}, sent(events, u)])
    (e,) = p.snapshot(clock.now())["entries"]
    assert e["seen_from"] == "task-sent" and e["last_run"]["sent_at"] == clock.now()
    assert p.snapshot(clock.now())["task_sent_events"] is True


async def test_the_daemon_keeps_each_entry_s_runs_across_a_restart(tmp_path: Path) -> None:
    from alertd.config import load_config
    from alertd.daemon import Daemon

    (tmp_path / "alertd.yaml").write_text(f"store: sqlite:///{tmp_path / 'state.db'}\nrule_files: []\n")
    config = load_config(tmp_path / "alertd.yaml")
    clock = VirtualClock(start=T0)
    first = Daemon(config, clock)
    await first.open_state()
    first.periodic.set_entries([entry("sync")], clock.now())
    events = Events(clock)
    clock.advance(60)
    u = events.uuid()
    first.observer.on_events([sent(events, u), events.received(u, "app.report"), events.started(u), events.failed(u)])
    await first.stop()  # saves the state

    clock.advance(5)
    second = Daemon(config, clock)
    await second.open_state()
    second.periodic.set_entries([entry("sync")], clock.now())  # the schedule read after the restore
    assert gauge(second.periodic, clock, "periodic_failed", "sync") == 1.0
    assert gauge(second.periodic, clock, "periodic_missed_seconds", "sync") == 0.0  # due at 120, not from the restart
    await second.stop()


def test_an_entry_whose_schedule_raises_is_reported_and_the_others_checked(
    observer: Observer, clock: VirtualClock
) -> None:
    class Broken:
        kind = "broken"

        def next_after(self, last: float) -> float:
            raise ImportError("No module named 'ephem'")

        def describe(self) -> str:
            return "broken"

        def as_dict(self) -> dict[str, Any]:
            return {"kind": self.kind}

    p = periodic_with(observer, clock, entry("fine"), Entry("solar", "app.sun", Broken()))
    assert [k[0] for k in p.gauges(clock.now())["periodic_missed_seconds"]] == ["fine"]
    assert p.problems == ["solar: its next run cannot be computed: ImportError: No module named 'ephem'"]
    states = [(e["name"], e["state"]) for e in p.snapshot(clock.now())["entries"]]
    assert states == [("fine", "waiting"), ("solar", "error")]


def test_task_events_are_not_enriched_for_the_checks_until_there_is_an_entry(
    observer: Observer, clock: VirtualClock
) -> None:
    # With no schedule no event can be a run of an entry: each would be copied into an enriched
    # dict for nothing (a quarter of the daemon's ingest). Once entries exist, runs are followed.
    p = Periodic.watching(PeriodicConfig(), observer, clock)
    assert not observer._watchers.by_type and not observer._watchers.all
    p.set_entries([], clock.now())
    assert not observer._watchers.by_type
    p.set_entries([entry("nightly")], clock.now())
    assert "task-sent" in observer._watchers.by_type
    events = Events(clock)
    u = events.uuid()
    observer.on_events([sent(events, u)])
    assert [r.uuid for r in p.entries["nightly"].runs] == [u]
    p.set_entries([entry("nightly")], clock.now())
    assert observer._watchers.by_type["task-sent"] == [p.on_event], "subscribed once"
