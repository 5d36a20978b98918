"""The observer on a virtual clock, fed events shaped as a real Celery 5.7 worker publishes them."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertd.catalogue import CATALOGUE, DAEMON_GAUGES, Kind
from alertd.clock import VirtualClock
from alertd.observe.observer import LOST_FORGET_AFTER, SAMPLE_STALE_AFTER, Observer, exception_class
from alertd.observe.reorder import SENT_GRACE
from alertd.observe.series import SeriesStore
from alertd.samples import BrokerSample, QueueSample, WorkerSample
from alertd.sources.health import StreamHealth
from tests.observe_fixtures import (
    T0,
    TIMEOUT_TRACEBACK,
    Events,
    clock_fixture,  # noqa: F401 (registers the fixture)
    events_fixture,  # noqa: F401
    observer_fixture,  # noqa: F401
    series_fixture,  # noqa: F401
    value_error_traceback,
)

W = "celery@w1"


def test_name_and_queue_are_joined_by_uuid(
    observer: Observer, series: SeriesStore, clock: VirtualClock, events: Events
) -> None:
    u = events.uuid()
    observer.on_events([events.sent(u, "billing.charge", "payments")])
    clock.advance(2)
    observer.on_events([events.received(u, "billing.charge", W)])
    clock.advance(1)
    observer.on_events([events.started(u, W)])
    clock.advance(4)
    observer.on_events([events.failed(u, W)])
    now = clock.now()
    key = ("billing.charge", "payments", W)
    assert series.sums("tasks_sent", 60, now) == {("billing.charge", "payments", ""): 1}  # worker unknown yet
    assert series.sums("tasks_started", 60, now) == {key: 1}
    assert series.sums("tasks_failed", 60, now) == {(*key, "ValueError"): 1}
    wait = series.distributions("task_queue_wait_seconds", 60, now)[key]
    assert wait.count == 1 and wait.max == pytest.approx(3.0, rel=0.03)
    assert series.distributions("task_runtime_seconds", 60, now)[key].max == pytest.approx(4.0, rel=0.03)
    assert observer.stats()["tasks_tracked"] == 0  # finished tasks leave the table


def test_succeeded_runtime_comes_from_the_event(
    observer: Observer, series: SeriesStore, clock: VirtualClock, events: Events
) -> None:
    u = events.uuid()
    observer.on_events([events.received(u, "t.add"), events.started(u)])
    clock.advance(9)  # the worker's own measure wins over our receive times
    observer.on_events([events.succeeded(u, runtime=0.25)])
    d = series.distributions("task_runtime_seconds", 60, clock.now())[("t.add", "", W)]
    assert d.count == 1 and d.sum == 0.25  # the sum is exact; max, a bin's value, within 1 %
    assert d.max == pytest.approx(0.25, rel=0.01)


def test_queue_is_the_routing_key_when_sent_has_no_queue(
    observer: Observer, series: SeriesStore, events: Events, clock: VirtualClock
) -> None:
    u = events.uuid()
    sent = events.sent(u, "t.add", "ignored")
    del sent["queue"]
    sent["routing_key"] = "bulk"
    observer.on_events([sent, events.received(u, "t.add")])
    assert series.sums("tasks_received", 60, clock.now()) == {("t.add", "bulk", W): 1}


def test_queue_wait_counts_from_eta_not_from_sent(
    observer: Observer, series: SeriesStore, clock: VirtualClock, events: Events
) -> None:
    u = events.uuid()
    eta = events.eta_in(60)
    observer.on_events([events.sent(u, "t", "q", eta=eta)])
    clock.advance(1)
    observer.on_events([events.received(u, "t", W, eta=eta)])
    clock.advance(30)
    assert observer.gauges(clock.now())["task_oldest_reserved_seconds"] == {}  # waiting for its ETA is not stuck
    clock.advance(31)  # 2 s after the ETA
    assert observer.gauges(clock.now())["task_oldest_reserved_seconds"] == {("t", "q"): pytest.approx(2.0)}
    observer.on_events([events.started(u, W)])
    d = series.distributions("task_queue_wait_seconds", 300, clock.now())[("t", "q", W)]
    assert d.max == pytest.approx(2.0, rel=0.03)


def test_queue_wait_falls_back_to_received_and_clamps_at_zero(
    series: SeriesStore, clock: VirtualClock, events: Events
) -> None:
    observer = Observer(series, clock)
    u, v = events.uuid(), events.uuid()
    observer.on_events([events.received(u, "t", W)])  # sent unseen (producer without task_send_sent_event)
    clock.advance(5)
    observer.on_events([events.started(u, W)])
    # a producer whose clock runs 30 s ahead: its sent timestamp is after the worker's started
    ahead = Events(clock, skew=30.0)
    observer.on_events([ahead.sent(v, "t", "")])
    observer.on_events([events.received(v, "t", W), events.started(v, W)])
    d = series.distributions("task_queue_wait_seconds", 60, clock.now())[("t", "", W)]
    assert d.count == 2 and d.min == 0.0 and d.max == pytest.approx(5.0, rel=0.03)


def test_a_retried_task_goes_back_to_waiting(
    observer: Observer, series: SeriesStore, clock: VirtualClock, events: Events
) -> None:
    u = events.uuid()
    observer.on_events([events.sent(u, "t.retry_once", "q"), events.received(u, "t.retry_once"), events.started(u)])
    clock.advance(1)
    observer.on_events([events.retried(u)])
    g = observer.gauges(clock.now())
    assert g["task_oldest_started_seconds"] == {} and g["task_oldest_reserved_seconds"] == {}
    assert observer.tasks_snapshot()[0]["retries"] == 1
    # Celery publishes the retry again (countdown 10 s): the second run waits from its ETA
    eta = events.eta_in(10)
    observer.on_events([events.sent(u, "t.retry_once", "q", eta=eta, retries=1)])
    observer.on_events([events.received(u, "t.retry_once", W, eta=eta, retries=1)])
    clock.advance(12)
    observer.on_events([events.started(u), events.succeeded(u)])
    now = clock.now()
    key = ("t.retry_once", "q", W)
    assert series.sums("tasks_retried", 60, now) == {(*key, "ConnectionError"): 1}
    assert series.sums("tasks_sent", 60, now) == {("t.retry_once", "q", ""): 2}
    assert series.sums("tasks_succeeded", 60, now) == {key: 1}
    waits = series.distributions("task_queue_wait_seconds", 60, now)[key]
    assert waits.count == 2 and waits.max == pytest.approx(2.0, rel=0.03)
    assert observer.stats()["tasks_tracked"] == 0


@pytest.mark.parametrize("end", ["revoked", "rejected"])
def test_revoked_and_rejected_tasks_leave_the_table(
    end: str, observer: Observer, series: SeriesStore, events: Events, clock: VirtualClock
) -> None:
    u = events.uuid()
    observer.on_events([events.sent(u, "t.sleep", "q"), events.received(u, "t.sleep"), events.started(u)])
    observer.on_events([getattr(events, end)(u)])
    assert series.sums(f"tasks_{end}", 60, clock.now()) == {("t.sleep", "q", W): 1}
    assert observer.stats()["tasks_tracked"] == 0
    assert observer.gauges(clock.now())["task_oldest_started_seconds"] == {}


def test_stuck_task_ages_use_our_clock_not_the_workers(series: SeriesStore, clock: VirtualClock) -> None:
    observer = Observer(series, clock)
    behind = Events(clock, skew=-3600.0)  # a worker whose clock is an hour behind
    u, v = behind.uuid(), behind.uuid()
    observer.on_events([behind.received(u, "t.sleep"), behind.started(u)])
    observer.on_events([behind.received(v, "t.add")])
    clock.advance(90)
    g = observer.gauges(clock.now())
    assert g["task_oldest_started_seconds"] == {("t.sleep", ""): 90.0}
    assert g["task_oldest_reserved_seconds"] == {("t.add", ""): 90.0}
    assert observer.tasks_snapshot()[0]["age"] == 90.0


def test_oldest_is_per_task_and_queue(observer: Observer, clock: VirtualClock, events: Events) -> None:
    observer.on_events(events.lifecycle("a", "q1"))
    clock.advance(10)
    observer.on_events(events.lifecycle("a", "q1") + events.lifecycle("a", "q2") + events.lifecycle("b", "q1"))
    clock.advance(5)
    assert observer.gauges(clock.now())["task_oldest_started_seconds"] == {
        ("a", "q1"): 15.0,
        ("a", "q2"): 5.0,
        ("b", "q1"): 5.0,
    }


def test_killed_worker_is_lost_after_its_heartbeat_window(
    observer: Observer, clock: VirtualClock, events: Events
) -> None:
    observer.on_events([events.worker("worker-online", "celery@a", freq=5.0)])
    for _ in range(3):
        clock.advance(5)
        observer.on_events([events.worker("worker-heartbeat", "celery@a", freq=5.0, active=2, processed=9)])
    # window = max(worker_lost_after 10, freq 5 x 2.5) = 12.5 s after the last heartbeat
    clock.advance(12)
    assert observer.gauges(clock.now())["worker_up"] == {("celery@a",): 1.0}
    clock.advance(1)
    g = observer.gauges(clock.now())
    assert g["worker_lost"] == {("celery@a",): 1.0} and g["worker_up"] == {("celery@a",): 0.0}
    assert g["workers_online"] == {(): 0.0}
    assert g["worker_active_tasks"] == {}  # a lost worker's last heartbeat says nothing about now
    # a goodbye is "offline", not "lost"
    observer.on_events([events.worker("worker-online", "celery@b"), events.worker("worker-offline", "celery@b")])
    g = observer.gauges(clock.now())
    assert g["worker_lost"][("celery@b",)] == 0.0 and g["worker_up"][("celery@b",)] == 0.0
    assert g["worker_offline"][("celery@b",)] == 0.0  # not yet: it may be back within the restart grace
    assert {w["hostname"]: w["state"] for w in observer.workers_snapshot()}["celery@b"] == "offline"
    # a lost worker coming back is up again
    observer.on_events([events.worker("worker-heartbeat", "celery@a", freq=5.0)])
    assert observer.gauges(clock.now())["worker_up"][("celery@a",)] == 1.0


def test_worker_floor_applies_to_fast_heartbeats(series: SeriesStore, clock: VirtualClock, events: Events) -> None:
    observer = Observer(series, clock, worker_lost_after=3.0, heartbeat_misses=1.5)
    observer.on_events([events.worker("worker-heartbeat", W, freq=1.0)])
    clock.advance(2.9)  # freq x misses = 1.5 s, but the floor is 3 s
    assert observer.gauges(clock.now())["worker_lost"] == {(W,): 0.0}
    clock.advance(0.2)
    assert observer.gauges(clock.now())["worker_lost"] == {(W,): 1.0}


def test_heartbeats_are_timed_by_our_receive_clock(series: SeriesStore, clock: VirtualClock) -> None:
    observer = Observer(series, clock, worker_lost_after=10.0, heartbeat_misses=2.5)
    skewed = Events(clock, skew=-600.0)  # the worker's timestamps say "10 minutes ago"
    observer.on_events([skewed.worker("worker-heartbeat", W)])
    clock.advance(5)
    assert observer.gauges(clock.now())["worker_up"] == {(W,): 1.0}


def test_worker_table_fields_and_snapshot(observer: Observer, clock: VirtualClock, events: Events) -> None:
    observer.on_events([events.worker("worker-online", W, freq=2.0), events.worker("worker-heartbeat", W, active=3)])
    (w,) = observer.workers_snapshot()
    assert w["hostname"] == W and w["state"] == "online" and w["active"] == 3 and w["freq"] == 2.0
    assert w["sw_ident"] == "py-celery" and w["sw_ver"] == "5.7.0" and w["loadavg"] == 0.45
    assert w["last_heartbeat"] == clock.now() and w["pid"] == 28272 and w["processed"] == 0


def test_lost_workers_stay_listed_then_are_forgotten(observer: Observer, clock: VirtualClock, events: Events) -> None:
    observer.on_events([events.worker("worker-heartbeat", "celery@pod-1")])
    clock.advance(LOST_FORGET_AFTER - 1)
    assert observer.gauges(clock.now())["worker_lost"] == {("celery@pod-1",): 1.0}
    clock.advance(2)
    assert observer.gauges(clock.now())["worker_lost"] == {}
    assert observer.stats()["workers_tracked"] == 0


def test_task_table_is_capped_and_forgets_the_least_recently_active(
    series: SeriesStore, clock: VirtualClock, events: Events
) -> None:
    observer = Observer(series, clock, max_tasks=100)
    running = events.uuid()
    observer.on_events([events.sent(running, "t.long", "q")])
    idle = [events.uuid() for _ in range(99)]
    observer.on_events([events.sent(u, "t.add", "q") for u in idle])
    observer.on_events([events.received(running, "t.long"), events.started(running)])  # now the most recent
    observer.on_events([events.sent(events.uuid(), "t.add", "q") for _ in range(50)])
    stats = observer.stats()
    assert stats["tasks_tracked"] == 100 and stats["tasks_evicted"] == 50
    clock.advance(60)
    assert observer.gauges(clock.now())["task_oldest_started_seconds"] == {("t.long", "q"): 60.0}
    # an evicted task's end is still counted, under the name it can no longer be joined to
    observer.on_events([events.succeeded(idle[0])])
    assert series.sums("tasks_succeeded", 120, clock.now()) == {("", "", W): 1}


def test_worker_table_is_capped_and_forgets_gone_workers_first(
    series: SeriesStore, clock: VirtualClock, events: Events
) -> None:
    observer = Observer(series, clock, max_workers=3, worker_lost_after=10.0)
    observer.on_events([events.worker("worker-heartbeat", "celery@old")])
    clock.advance(60)  # celery@old is lost now
    observer.on_events([events.worker("worker-heartbeat", f"celery@w{i}") for i in range(3)])
    assert observer.stats()["workers_evicted"] == 1
    assert sorted(observer.gauges(clock.now())["worker_up"]) == [("celery@w0",), ("celery@w1",), ("celery@w2",)]


def test_malformed_events_are_counted_and_leave_no_trace(
    observer: Observer, series: SeriesStore, clock: VirtualClock, events: Events
) -> None:
    u = events.uuid()
    bad: list[Any] = [
        None,
        "task-sent",
        {},
        {"type": 3},
        {"type": "task-started"},  # no uuid
        {"type": "worker-heartbeat"},  # no hostname
        {**events.sent(u, "t", "q"), "timestamp": "yesterday"},
        {**events.sent(u, "t", "q"), "local_received": "now"},
        {**events.sent(u, "t", "q"), "name": ["t"]},
        {**events.sent(u, "t", "q"), "retries": "1"},
        {**events.sent(u, "t", "q"), "eta": 12j},
        {**events.received(u, "t"), "hostname": 7},
        {**events.succeeded(u), "runtime": "fast"},
        {**events.succeeded(u), "runtime": math.nan},
        {**events.sent(u, "t", "q"), "local_received": math.inf},
        {**events.sent(u, "t", "q"), "timestamp": math.nan},
        {**events.sent(u, "t", "q"), "eta": math.inf},
        {**events.worker("worker-heartbeat", "celery@bad"), "freq": "2"},
        {**events.worker("worker-heartbeat", "celery@bad"), "active": -1},
        {**events.worker("worker-heartbeat", "celery@bad"), "loadavg": "high"},
        {**events.worker("worker-online", "celery@bad"), "pid": 1.5},
        {**events.worker("worker-heartbeat", "celery@bad"), "loadavg": [math.nan, 0.1, 0.1]},
        {**events.worker("worker-heartbeat", "celery@bad"), "freq": math.inf},
    ]
    good = events.received(events.uuid(), "t")
    observer.on_events([*bad, good])
    stats = observer.stats()
    assert stats["malformed"] == len(bad) and stats["events"] == len(bad) + 1
    assert stats["tasks_tracked"] == 1  # only the good one; no half-recorded task from a bad event
    assert stats["workers_tracked"] == 1  # only the good event's worker
    assert series.metrics() == ["tasks_received"]
    assert series.sums("tasks_received", 60, clock.now()) == {("t", "", W): 1}


def test_unknown_event_types_are_ignored(observer: Observer, events: Events) -> None:
    observer.on_events([{**events.worker("worker-heartbeat"), "type": "custom-thing"}])
    assert observer.stats()["unknown_types"] == 1 and observer.stats()["malformed"] == 0


def test_duplicate_final_events_count_once(
    observer: Observer, series: SeriesStore, clock: VirtualClock, events: Events
) -> None:
    u = events.uuid()
    observer.on_events([events.received(u, "t.timeout"), events.started(u)])
    # exactly what a hard time limit publishes: twice, wrapped, the class only in the traceback
    failed = events.failed(u, exception="ExceptionWithTraceback()", traceback=TIMEOUT_TRACEBACK)
    observer.on_events([failed, dict(failed)])
    assert series.sums("tasks_failed", 60, clock.now()) == {("t.timeout", "", W, "TimeLimitExceeded"): 1}
    assert observer.stats()["duplicates"] == 1


def test_exception_class_names() -> None:
    assert exception_class("ValueError('x')") == "ValueError"
    assert exception_class("TimeLimitExceeded(1,)") == "TimeLimitExceeded"
    assert exception_class("celery.exceptions.SoftTimeLimitExceeded()") == "SoftTimeLimitExceeded"
    assert exception_class("WorkerLostError('Worker exited prematurely: signal 9 (SIGKILL)')") == "WorkerLostError"
    assert exception_class("ExceptionWithTraceback()", TIMEOUT_TRACEBACK) == "TimeLimitExceeded"
    assert exception_class(None) == ""


def test_expected_task_reports_absence_from_start(
    observer: Observer, series: SeriesStore, clock: VirtualClock, events: Events
) -> None:
    observer.expect_task("reports.nightly")
    clock.advance(3600)
    assert observer.gauges(clock.now())["task_last_succeeded_seconds"] == {("reports.nightly",): 3600.0}
    u = events.uuid()
    observer.on_events([events.received(u, "reports.nightly"), events.started(u)])
    observer.on_events([events.failed(u)])
    assert observer.gauges(clock.now())["task_last_succeeded_seconds"] == {("reports.nightly",): 3600.0}
    v = events.uuid()
    observer.on_events([events.received(v, "reports.nightly"), events.started(v), events.succeeded(v)])
    clock.advance(60)
    assert observer.gauges(clock.now())["task_last_succeeded_seconds"][("reports.nightly",)] == 60.0


def test_state_survives_a_restart_through_json(
    observer: Observer, series: SeriesStore, clock: VirtualClock, events: Events
) -> None:
    u = events.uuid()
    observer.on_events([events.received(u, "reports.nightly"), events.started(u), events.succeeded(u)])
    observer.on_events([events.worker("worker-heartbeat", "celery@gone")])
    observer.on_events([events.worker("worker-online", "celery@bye"), events.worker("worker-offline", "celery@bye")])
    saved = json.loads(json.dumps(observer.export_state()))
    clock.advance(60)
    restarted = Observer(series, clock, worker_lost_after=10.0, restart_grace=30.0)
    restarted.import_state(saved)
    restarted.expect_task("reports.nightly")
    g = restarted.gauges(clock.now())
    assert g["task_last_succeeded_seconds"] == {("reports.nightly",): 60.0}
    # workers that died while alertd was down are reported lost, not forgotten (W, known only
    # from task events, never sent a heartbeat to judge it by)
    assert g["worker_lost"] == {("celery@gone",): 1.0, ("celery@bye",): 0.0}
    assert g["worker_offline"][("celery@bye",)] == 1.0


def test_a_damaged_saved_state_is_skipped_not_fatal(observer: Observer, clock: VirtualClock) -> None:
    observer.import_state(
        {
            "last_success": {"ok": T0, "bad": "yesterday", "nan": math.nan},
            "workers": {"celery@a": {"last_heartbeat": "x"}, "celery@b": [], "celery@c": {"last_heartbeat": T0}},
        }
    )
    observer.import_state({"last_success": [], "workers": 7})
    g = observer.gauges(clock.now())
    assert g["task_last_succeeded_seconds"] == {("ok",): 0.0}
    assert set(g["worker_up"]) == {("celery@c",)}


def test_watchers_get_enriched_events_of_their_types(observer: Observer, clock: VirtualClock, events: Events) -> None:
    seen: list[dict[str, Any]] = []
    everything: list[dict[str, Any]] = []
    unsubscribe = observer.watch(seen.append, frozenset({"task-failed"}))
    observer.watch(everything.append)
    u = events.uuid()
    long_tb = value_error_traceback(frames=30)
    observer.on_events([events.sent(u, "t.x", "q"), events.received(u, "t.x"), events.started(u)])
    observer.on_events([events.failed(u, exception="KeyError('k')", traceback=long_tb)])
    assert len(seen) == 1 and len(everything) == 4
    e = seen[0]
    assert {k: e[k] for k in ("type", "uuid", "task", "queue", "worker", "exception", "exception_repr")} == {
        "type": "task-failed",
        "uuid": u,
        "task": "t.x",
        "queue": "q",
        "worker": W,
        "exception": "KeyError",
        "exception_repr": "KeyError('k')",
    }
    tb_lines = e["traceback"].splitlines()
    assert len(tb_lines) == 21 and tb_lines[0] == "..." and tb_lines[-1] == "ValueError: x"
    unsubscribe()
    v = events.uuid()
    observer.on_events([events.received(v, "t.x"), events.failed(v)])
    clock.advance(SENT_GRACE)  # no task-sent for v came: applied once its grace is over
    observer.release_held(clock.now())
    assert len(seen) == 1 and len(everything) == 6


def test_a_failing_watcher_does_not_stop_ingestion(
    observer: Observer, series: SeriesStore, clock: VirtualClock, events: Events
) -> None:
    def broken(_: dict[str, Any]) -> None:
        raise RuntimeError("rule bug")

    observer.watch(broken, frozenset({"task-received"}))
    observer.on_events([events.received(events.uuid(), "t"), events.received(events.uuid(), "t")])
    assert series.sums("tasks_received", 60, clock.now()) == {("t", "", W): 2}
    assert observer.stats()["malformed"] == 0


def test_samples_give_queue_and_worker_gauges(observer: Observer, clock: VirtualClock, events: Events) -> None:
    observer.on_events([events.worker("worker-heartbeat", W, active=3)])
    observer.on_queue_sample(QueueSample("celery", 120, 0, clock.now()))
    observer.on_worker_sample(WorkerSample(W, clock.now(), pool_size=4, memory_bytes=200 << 20, cpu_seconds=10.0))
    g = observer.gauges(clock.now())
    assert g["worker_cpu_ratio"] == {}  # one sample is not a rate
    clock.advance(10)
    observer.on_worker_sample(WorkerSample(W, clock.now(), pool_size=4, memory_bytes=210 << 20, cpu_seconds=15.0))
    observer.on_events([events.worker("worker-heartbeat", W, active=3)])
    g = observer.gauges(clock.now())
    assert g["queue_length"] == {("celery",): 120.0} and g["queue_consumers"] == {("celery",): 0.0}
    assert g["queue_stranded_messages"] == {("celery",): 120.0}
    assert g["worker_cpu_ratio"] == {(W,): 0.5}  # 5 CPU seconds over 10 wall seconds
    assert g["worker_saturation_ratio"] == {(W,): 0.75}
    assert g["worker_pool_size"] == {(W,): 4.0}
    assert g["worker_memory_bytes"] == {(W,): float(210 << 20)}
    assert g["worker_loadavg"] == {(W,): 0.45}
    # the worker restarted: its rusage counter starts again from 0, which is not a negative rate
    clock.advance(10)
    observer.on_worker_sample(WorkerSample(W, clock.now(), cpu_seconds=1.0))
    assert observer.gauges(clock.now())["worker_cpu_ratio"] == {(W,): 0.0}


def test_queues_no_longer_sampled_are_dropped(observer: Observer, clock: VirtualClock) -> None:
    observer.on_queue_sample(QueueSample("old", 5, None, clock.now()))
    observer.on_queue_sample(QueueSample("celery", 1, None, clock.now() + SAMPLE_STALE_AFTER))
    clock.advance(SAMPLE_STALE_AFTER + 1)
    g = observer.gauges(clock.now())
    assert g["queue_length"] == {("celery",): 1.0}
    assert g["queue_consumers"] == {}  # Redis cannot tell; unknown is not 0


def test_stream_and_broker_gauges(series: SeriesStore, clock: VirtualClock) -> None:
    health = StreamHealth()
    observer = Observer(series, clock, health=health)
    clock.advance(30)
    g = observer.gauges(clock.now())
    assert g["events_silence_seconds"] == {(): 30.0} and g["event_stream_up"] == {(): 0.0}
    assert g["broker_up"] == {}  # not sampled yet
    health.mark_connected(clock.now())
    health.last_event_at = clock.now() - 4
    observer.on_broker_sample(BrokerSample(ok=False, at=clock.now(), error="connection refused"))
    g = observer.gauges(clock.now())
    assert g["events_silence_seconds"] == {(): 4.0} and g["event_stream_up"] == {(): 1.0}
    assert g["broker_up"] == {(): 0.0}


def test_gauges_cover_every_gauge_of_the_catalogue(observer: Observer, clock: VirtualClock) -> None:
    gauges = {name for name, m in CATALOGUE.items() if m.kind is Kind.GAUGE} - DAEMON_GAUGES
    g = observer.gauges(clock.now())
    assert set(g) == gauges


def test_tasks_snapshot_is_most_recent_first_and_limited(observer: Observer, events: Events) -> None:
    for i in range(5):
        observer.on_events([events.received(events.uuid(), f"t{i}")])
    snap = observer.tasks_snapshot(limit=2)
    assert [t["name"] for t in snap] == ["t4", "t3"]
    assert snap[0]["state"] == "received" and snap[0]["worker"] == W
    assert observer.tasks_snapshot(limit=0) == []


def test_a_late_task_sent_does_not_send_a_received_task_back_to_waiting(
    observer: Observer, series: SeriesStore, clock: VirtualClock, events: Events
) -> None:
    # The producer's connection is not the worker's: task-sent can reach us after task-received.
    u = events.uuid()
    eta = events.eta_in(5)
    observer.on_events([events.received(u, "t.add", W, eta=eta)])
    observer.on_events([events.sent(u, "t.add", "q", eta=eta)])
    (snap,) = observer.tasks_snapshot()
    assert snap["state"] == "received" and snap["worker"] == W and snap["queue"] == "q"
    clock.advance(8)  # 3 s past the ETA: reserved too long now, under its queue
    assert observer.gauges(clock.now())["task_oldest_reserved_seconds"] == {("t.add", "q"): 3.0}
    observer.on_events([events.started(u)])
    v = events.uuid()
    observer.on_events([events.received(v, "t.add", W), events.started(v), events.sent(v, "t.add", "q")])
    assert [t["state"] for t in observer.tasks_snapshot()] == ["started", "started"]
    now = clock.now()
    assert series.sums("tasks_sent", 60, now) == {("t.add", "q", ""): 2}
    # the second start waited for its task-sent (alertd.observe.reorder): counted under its queue
    assert series.sums("tasks_started", 60, now) == {("t.add", "q", W): 2}
    observer.on_events([events.succeeded(v)])
    assert series.sums("tasks_succeeded", 60, now) == {("t.add", "q", W): 1}


def test_a_task_sent_after_the_task_finished_is_counted_not_kept(
    observer: Observer, series: SeriesStore, clock: VirtualClock, events: Events
) -> None:
    u = events.uuid()
    observer.on_events([events.received(u, "t.add"), events.started(u), events.succeeded(u)])
    observer.on_events([events.sent(u, "t.add", "q")])
    assert observer.stats()["tasks_tracked"] == 0
    assert series.sums("tasks_sent", 60, clock.now()) == {("t.add", "q", ""): 1}


def test_a_retry_reported_after_the_next_run_began_changes_only_the_count(
    observer: Observer, series: SeriesStore, clock: VirtualClock, events: Events
) -> None:
    # The retried run publishes its retry before its parent reports task-retried: the next run can
    # be received, and even finish, first. Recorded from a prefork worker under load.
    u, v = events.uuid(), events.uuid()
    for x in (u, v):
        observer.on_events([events.sent(x, "t.retry_once", "q"), events.received(x, "t.retry_once"), events.started(x)])
        observer.on_events([events.sent(x, "t.retry_once", "q", retries=1)])
        observer.on_events([events.received(x, "t.retry_once", retries=1)])
    observer.on_events([events.retried(u)])  # run 1 is waiting to start: it must stay reserved
    clock.advance(4)
    assert observer.gauges(clock.now())["task_oldest_reserved_seconds"] == {("t.retry_once", "q"): 4.0}
    observer.on_events([events.started(v), events.succeeded(v)])
    observer.on_events([events.retried(v)])  # after the task already succeeded
    key = ("t.retry_once", "q", W)
    assert series.sums("tasks_retried", 60, clock.now()) == {(*key, "ConnectionError"): 2}
    assert observer.stats()["tasks_tracked"] == 1  # u, still reserved; nothing parked for v
    (snap,) = observer.tasks_snapshot()
    assert snap["uuid"] == u and snap["state"] == "received" and snap["retries"] == 1


_FIELD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.floats(allow_nan=True), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
_TYPES = [
    "task-sent",
    "task-received",
    "task-started",
    "task-succeeded",
    "task-failed",
    "task-retried",
    "task-revoked",
    "task-rejected",
    "task-custom",
    "worker-online",
    "worker-heartbeat",
    "worker-offline",
    "nonsense",
]
_FIELDS = ["uuid", "name", "hostname", "timestamp", "local_received", "runtime", "eta", "queue", "routing_key"]
_FIELDS += ["retries", "exception", "traceback", "freq", "active", "processed", "loadavg", "pid", "sw_ident"]
# Real types with any fields of any type, and plausible events with every field a fuzzed type.
_EVENT = st.fixed_dictionaries(
    {"type": st.sampled_from(_TYPES)}, optional={f: _FIELD_VALUES for f in _FIELDS}
) | st.fixed_dictionaries(
    {
        "type": st.sampled_from(_TYPES),
        "uuid": st.sampled_from(["u1", "u2", "u3"]),
        "hostname": st.sampled_from(["celery@a", "celery@b"]),
        "name": st.sampled_from(["t.a", "t.b"]),
        "timestamp": st.floats(T0 - 10, T0 + 10),
        "local_received": st.floats(T0, T0 + 10),
    },
    optional={f: _FIELD_VALUES for f in ("runtime", "eta", "retries", "freq", "active", "loadavg", "exception")},
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_EVENT, _FIELD_VALUES), max_size=30))
def test_on_events_never_raises_and_keeps_its_bounds(batch: list[Any]) -> None:
    clock = VirtualClock(T0)
    observer = Observer(SeriesStore(bucket_seconds=1, retention_seconds=60), clock, max_tasks=2, max_workers=1)
    observer.watch(lambda e: None)
    observer.on_events(batch)
    stats = observer.stats()
    assert stats["events"] == len(batch) and stats["malformed"] <= len(batch)
    assert stats["tasks_tracked"] <= 2 and stats["workers_tracked"] <= 1
    for step in (5, 30):  # workers online, then lost
        clock.advance(step)
        g = observer.gauges(clock.now())
        assert all(math.isfinite(v) for values in g.values() for v in values.values()), g
    json.dumps(observer.export_state(), allow_nan=False)
