"""The series store against a naive model: windows, buckets, views read as time goes on, quantile
error, the series cap, and what a busy series costs."""

from __future__ import annotations

import gc
import math
import random
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertd.observe.exposition import BUCKETS
from alertd.observe.series import ALPHA, HISTOGRAM_BOUNDS, MIN_VALUE, Distribution, DistributionView, SeriesStore

_rebuild = DistributionView._rebuild

BUCKET = 5.0


def within(got: float, exact: float) -> bool:
    """The documented bound: ALPHA relative, and 0 for values at or under MIN_VALUE."""
    if exact <= MIN_VALUE:
        return got == 0.0
    return abs(got - exact) <= ALPHA * exact * (1 + 1e-9)  # 1e-9: the float rounding of a log


def lower_rank(ordered: list[float], q: float) -> float:
    return ordered[int(q * (len(ordered) - 1))]


@settings(max_examples=200, deadline=None)
@given(
    events=st.lists(st.tuples(st.floats(0, 2000), st.sampled_from(["a", "b"]), st.integers(1, 3)), max_size=200),
    window=st.sampled_from([5.0, 30.0, 60.0, 600.0]),
)
def test_window_sums_match_a_naive_count(events: list[tuple[float, str, int]], window: float) -> None:
    store = SeriesStore(bucket_seconds=BUCKET, retention_seconds=900)
    events.sort()
    for t, label, n in events:
        store.count("tasks_failed", (label,), t, n)
    now = events[-1][0] if events else 0.0
    # whole buckets: the window covers ceil(window / bucket) buckets ending with now's bucket
    first_bucket = int(now // BUCKET) - math.ceil(window / BUCKET) + 1
    expected: dict[tuple[str, ...], float] = {}
    for t, label, n in events:
        if int(t // BUCKET) >= first_bucket:
            expected[(label,)] = expected.get((label,), 0) + n
    assert store.sums("tasks_failed", window, now) == expected
    assert store.totals("tasks_failed") == {
        (lab,): float(sum(n for _, l2, n in events if l2 == lab)) for lab in {lab for _, lab, _ in events}
    }


def test_old_buckets_are_forgotten_when_the_ring_wraps() -> None:
    store = SeriesStore(bucket_seconds=1, retention_seconds=10)
    store.count("tasks_sent", ("t",), now=100.0, n=7)
    assert store.sums("tasks_sent", 10, now=105.0) == {("t",): 7}
    # 11 slots later the same slot is reused for a new bucket: the old 7 must not leak in
    store.count("tasks_sent", ("t",), now=111.0, n=1)
    assert store.sums("tasks_sent", 10, now=111.0) == {("t",): 1}
    assert store.sums("tasks_sent", 10, now=200.0) == {}


# Adapted from the 2 % bins: the bound is now ALPHA (1 %) on either side of the exact value.
@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(st.floats(min_value=1e-4, max_value=1e5), st.floats(min_value=0, max_value=1e9), st.just(0.0)),
        min_size=1,
        max_size=300,
    ),
    st.sampled_from([0.0, 0.01, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0]),
)
def test_quantiles_are_within_the_documented_error(values: list[float], q: float) -> None:
    d = Distribution()
    for v in values:
        d.add(v)
    ordered = sorted(values)
    assert within(d.quantile(q), lower_rank(ordered, q))
    assert d.stat("count") == len(values)
    assert math.isclose(d.stat("avg"), sum(values) / len(values), rel_tol=1e-9)
    assert within(d.stat("max"), max(values)) and within(d.stat("min"), min(values))
    # merging two halves is the same sketch as adding them all
    half, other = Distribution(), Distribution()
    half.add_many(values[::2])
    other.add_many(values[1::2])
    half.merge(other)
    assert (half.count, half.zeros, half.quantile(q)) == (d.count, d.zeros, d.quantile(q))


def test_distributions_merge_buckets_of_the_window() -> None:
    store = SeriesStore(bucket_seconds=5, retention_seconds=600)
    for i in range(100):
        store.observe("task_runtime_seconds", ("t", "q", "w"), float(i + 1), now=1000.0 + i)
    d = store.distributions("task_runtime_seconds", 60, now=1099.0)[("t", "q", "w")]
    # the last 60 s = 12 buckets = the events at 1040..1099 (values 41..100)
    assert d.count == 60 and d.sum == sum(range(41, 101))
    assert within(d.min, 41) and within(d.max, 100)  # adapted: min and max are bin values now
    assert math.isnan(Distribution().quantile(0.5))


def test_series_cap_drops_new_series_and_counts_them() -> None:
    store = SeriesStore(max_series=3)
    for i in range(5):
        store.count("tasks_sent", (f"t{i}",), 0.0)
    store.count("tasks_sent", ("t0",), 0.0)  # an existing series keeps working
    assert store.series_count("tasks_sent") == 3
    assert store.dropped() == {"tasks_sent": 2}
    assert store.sums("tasks_sent", 60, 0.0)[("t0",)] == 2


@settings(max_examples=150, deadline=None)
@given(
    events=st.one_of(
        # sparse: a value or two per bucket, stored plain
        st.lists(st.tuples(st.floats(0, 1500), st.floats(1e-3, 1e4)), min_size=1, max_size=150),
        # dense: buckets of many values (stored as code, count pairs) next to sparse ones
        st.lists(st.tuples(st.floats(0, 30), st.floats(0, 1e4)), min_size=1, max_size=400),
        # few distinct values, many times: pairs with large counts
        st.lists(st.tuples(st.floats(0, 12), st.sampled_from([0.0, 0.1, 2.5, 300.0])), min_size=1, max_size=400),
    ),
    window=st.sampled_from([5.0, 10.0, 60.0, 600.0]),
)
def test_window_distributions_match_the_values_in_the_window(events: list[tuple[float, float]], window: float) -> None:
    store = SeriesStore(bucket_seconds=BUCKET, retention_seconds=900)
    events.sort()
    for t, v in events:
        store.observe("task_runtime_seconds", ("t", "q", "w"), v, t)
    now = events[-1][0]
    first_bucket = int(now // BUCKET) - math.ceil(window / BUCKET) + 1
    inside = sorted(v for t, v in events if int(t // BUCKET) >= first_bucket)
    d = store.distributions("task_runtime_seconds", window, now)[("t", "q", "w")]
    assert d.count == len(inside) and within(d.min, inside[0]) and within(d.max, inside[-1])
    assert math.isclose(d.sum, sum(inside), rel_tol=1e-9)
    for q in (0.5, 0.9, 0.99):
        assert within(d.quantile(q), lower_rank(inside, q))
    # since start, whatever the window: what /metrics exports as a histogram
    assert store.cumulative("task_runtime_seconds")[("t", "q", "w")].count == len(events)


# -- views: read again and again as time goes on, they must equal a fresh naive answer ------------------


reads = st.lists(st.floats(0, 2500), min_size=1, max_size=12).map(sorted)
stream = st.lists(
    st.tuples(
        st.floats(0, 2500),  # when
        st.sampled_from([("a", "q1"), ("a", "q2"), ("b", "q1"), ("c", "")]),
        st.one_of(st.floats(0, 100), st.sampled_from([0.0, 0.5, 7.0])),
        st.floats(-120, 0),  # how late the event is (received out of order, as a replay may)
    ),
    max_size=300,
)
Stream = list[tuple[float, tuple[str, str], float, float]]


def _by_task(labels: tuple[str, ...]) -> tuple[str] | None:
    return None if labels[0] == "c" else (labels[0],)  # a key that also leaves series out


def _replay(store: SeriesStore, events: Stream, upto: float, done: int) -> int:
    """Feed events in arrival order (t) up to `upto`, stamped with t + lateness; returns how many were fed."""
    while done < len(events) and events[done][0] <= upto:
        t, labels, v, late = events[done]
        stamp = max(0.0, t + late)
        store.count("tasks_succeeded", labels, stamp, 1 + int(v) % 3)
        store.observe("task_runtime_seconds", labels, v, stamp)
        done += 1
    return done


def _naive(
    events: Stream, fed: int, window: float, now: float, size: int
) -> tuple[dict[tuple[str], float], dict[tuple[str], list[float]]]:
    idx = int(now // BUCKET)
    first = idx - max(1, min(size, math.ceil(window / BUCKET))) + 1
    newest = -math.inf
    sums: dict[tuple[str], float] = {}
    values: dict[tuple[str], list[float]] = {}
    for t, labels, v, late in events[:fed]:
        stamp = max(0.0, t + late)
        b = int(stamp // BUCKET)
        # what the ring keeps: buckets newer than (newest bucket written so far - size)
        kept = b > newest - size
        newest = max(newest, b)
        key = _by_task(labels)
        if kept and key is not None and first <= b <= idx:
            sums[key] = sums.get(key, 0.0) + 1 + int(v) % 3
            values.setdefault(key, []).append(v)
    return sums, values


@settings(max_examples=200, deadline=None)
@given(events=stream, at=reads, window=st.sampled_from([5.0, 60.0, 600.0, 900.0]))
def test_views_read_as_time_goes_on_match_a_naive_window(events: Stream, at: list[float], window: float) -> None:
    store = SeriesStore(bucket_seconds=BUCKET, retention_seconds=900)
    size = math.ceil(900 / BUCKET) + 1
    events.sort(key=lambda e: e[0])
    counters = store.counter_view("tasks_succeeded", window, _by_task)
    dists = store.distribution_view("task_runtime_seconds", window, _by_task)
    fed = 0
    for now in at:
        fed = _replay(store, events, now, fed)
        sums, values = _naive(events, fed, window, now, size)
        assert counters.read(now) == sums
        got = dists.read(now)
        assert set(got) == set(values)
        for key, vs in values.items():
            d, vs = got[key], sorted(vs)
            assert d.count == len(vs) and math.isclose(d.sum, sum(vs), rel_tol=1e-9, abs_tol=1e-9)
            assert d.zeros == sum(1 for v in vs if v <= MIN_VALUE)
            for q in (0.0, 0.5, 0.95, 1.0):
                assert within(d.quantile(q), lower_rank(vs, q)), (key, q)
        # the per-series reads agree with the grouped views once grouped
        per_series: dict[tuple[str], float] = {}
        for labels, v in store.sums("tasks_succeeded", window, now).items():
            key = _by_task(labels)
            if key is not None:
                per_series[key] = per_series.get(key, 0.0) + v
        assert per_series == sums


@settings(max_examples=150, deadline=None)
@given(events=stream, at=reads, window=st.sampled_from([60.0, 600.0, 900.0]), late_start=st.floats(0, 2500))
def test_a_view_built_in_slices_reads_as_one_built_at_once(
    events: Stream, at: list[float], window: float, late_start: float
) -> None:
    """A view made on a full store (a rule loaded while alertd runs) builds a bucket or more per
    slice while events keep coming; whenever it is read, it must answer the whole window."""
    store = SeriesStore(bucket_seconds=BUCKET, retention_seconds=900)
    size = math.ceil(900 / BUCKET) + 1
    events.sort(key=lambda e: e[0])
    fed = _replay(store, events, late_start, 0)
    counters = store.counter_view("tasks_succeeded", window, _by_task)
    dists = store.distribution_view("task_runtime_seconds", window, _by_task)
    for now in [t for t in at if t >= late_start]:
        # slices at times between the reads, each as small as can be (past its deadline at once)
        for step in (now - 7.0, now - 2.0):
            if step >= late_start:
                fed = _replay(store, events, step, fed)
                counters.build(step, deadline=0.0)
                dists.build(step, deadline=0.0)
        fed = _replay(store, events, now, fed)
        sums, values = _naive(events, fed, window, now, size)
        assert counters.read(now) == sums
        got = dists.read(now)
        assert {k: d.count for k, d in got.items()} == {k: len(vs) for k, vs in values.items()}
        for key, vs in values.items():
            assert within(got[key].quantile(0.95), lower_rank(sorted(vs), 0.95))
        assert counters.built and dists.built


def test_a_new_view_builds_a_bucket_per_slice_past_its_deadline() -> None:
    store = SeriesStore(bucket_seconds=1, retention_seconds=100)
    for t in range(100):
        store.count("tasks_sent", ("t",), float(t), 1)
    view = store.counter_view("tasks_sent", 50, lambda labels: labels)
    slices = 1
    while not view.build(99.5, deadline=0.0):
        slices += 1
    assert slices == 49 and view.built  # buckets 98 down to 50; 99 is open
    assert view.read(99.5) == {("t",): 50}


def test_a_window_as_long_as_the_retention_stays_incremental(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ring gives a bucket's slot up only after the views holding it have let it go: a 1 h
    window read every 15 s (3 buckets) never finds its oldest buckets gone and starts over."""
    store = SeriesStore(bucket_seconds=5, retention_seconds=3600)
    view = store.distribution_view("task_runtime_seconds", 3600, lambda labels: labels[:1])
    rebuilds = []
    monkeypatch.setattr(type(view), "_rebuild", lambda self, *a: rebuilds.append(a) or _rebuild(self, *a))
    values: list[tuple[float, float]] = []
    for t in range(0, 3 * 3600, 3):
        v = 0.01 * (1 + t % 997)
        store.observe("task_runtime_seconds", ("t", "q", "w"), v, float(t))
        values.append((float(t), v))
        if t % 15 == 0:
            d = view.read(float(t))[("t",)]
            inside = sorted(v for when, v in values if when // 5 > t // 5 - 720)
            assert d.count == len(inside) and within(d.quantile(0.95), lower_rank(inside, 0.95))
    assert rebuilds == []  # the first read built it (from nothing); every later one advanced it


def test_a_view_survives_gaps_longer_than_the_retention_and_reads_back_in_time() -> None:
    store = SeriesStore(bucket_seconds=1, retention_seconds=10)
    view = store.counter_view("tasks_sent", 5, lambda labels: labels)
    store.count("tasks_sent", ("t",), 100.0, 2)
    assert view.read(100.5) == {("t",): 2}
    assert view.read(103.0) == {("t",): 2}
    assert view.read(105.0) == {}  # bucket 100 left the 5 s window
    store.count("tasks_sent", ("t",), 500.0, 1)  # far past the retention: every slot reused
    assert view.read(500.0) == {("t",): 1}
    store.count("tasks_sent", ("t",), 496.0, 4)  # late, but inside the retention
    assert view.read(500.0) == {("t",): 5}
    assert view.read(497.0) == {("t",): 4}  # an earlier time: 493..497
    assert view.read(501.0) == {("t",): 1}  # 497..501: the late 4 left again
    assert view.read(505.0) == {}


def test_a_key_that_raises_leaves_the_view_consistent() -> None:
    store = SeriesStore(bucket_seconds=1, retention_seconds=60)
    broken = [True]

    def key(labels: tuple[str, ...]) -> tuple[str, ...]:
        if broken[0] and labels == ("bad",):
            raise ValueError("boom")
        return labels

    view = store.counter_view("tasks_sent", 30, key)
    store.count("tasks_sent", ("ok",), 10.0)
    store.count("tasks_sent", ("bad",), 11.0)
    with pytest.raises(ValueError, match="boom"):
        view.read(12.0)
    broken[0] = False
    assert view.read(12.0) == {("ok",): 1, ("bad",): 1}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=3), max_size=60), st.integers(1, 10))
def test_series_cap_holds_for_any_label_sequence(names: list[str], cap: int) -> None:
    store = SeriesStore(max_series=cap)
    admitted: list[str] = []
    refused = 0
    for name in names:
        if name not in admitted and len(admitted) >= cap:
            refused += 1
        elif name not in admitted:
            admitted.append(name)
        store.count("tasks_sent", (name,), 0.0)
    assert store.series_count("tasks_sent") == len(admitted) <= cap
    assert store.dropped().get("tasks_sent", 0) == refused
    assert set(store.sums("tasks_sent", 60, 0.0)) == {(n,) for n in admitted}


def test_an_event_older_than_the_retention_does_not_wipe_a_newer_bucket() -> None:
    store = SeriesStore(bucket_seconds=1, retention_seconds=10)  # 11 slots
    store.count("tasks_sent", ("t",), now=111.0, n=5)
    store.observe("task_runtime_seconds", ("t", "q", "w"), 2.0, now=111.0)
    # 100 falls in the same slot as 111, 11 buckets earlier: a late event from a replay, say
    store.count("tasks_sent", ("t",), now=100.0, n=1)
    store.observe("task_runtime_seconds", ("t", "q", "w"), 9.0, now=100.0)
    assert store.sums("tasks_sent", 10, now=111.0) == {("t",): 5}
    assert within(store.distributions("task_runtime_seconds", 10, now=111.0)[("t", "q", "w")].max, 2.0)
    assert store.totals("tasks_sent") == {("t",): 6}  # it still counts since start


def test_distribution_stats_and_prometheus_bucket_counts() -> None:
    d = Distribution()
    for v in (0.0, 0.01, 0.2, 0.2, 3.0):
        d.add(v)
    assert d.stat("count") == 5 and d.stat("sum") == 3.41 and d.stat("min") == 0.0
    assert d.count_at_most(0.1) == 2 and d.count_at_most(0.25) == 4 and d.count_at_most(5) == 5
    assert within(d.stat("p50"), 0.2)
    with pytest.raises(ValueError, match="unknown distribution statistic"):
        d.stat("p")


def test_the_since_start_histogram_is_exact_at_the_exported_bounds() -> None:
    assert BUCKETS == HISTOGRAM_BOUNDS  # /metrics asks exactly the bounds the store counts at
    store = SeriesStore(bucket_seconds=5, retention_seconds=60)
    rnd = random.Random(3)
    values = [
        *HISTOGRAM_BOUNDS,
        *(b * 1.0001 for b in HISTOGRAM_BOUNDS),
        *(rnd.lognormvariate(0, 2) for _ in range(500)),
    ]
    for i, v in enumerate(values):
        store.observe("task_runtime_seconds", ("t", "q", "w"), v, now=float(i))  # most leave the window
    cum = store.cumulative("task_runtime_seconds")[("t", "q", "w")]
    assert cum.count == len(values) and math.isclose(cum.sum, sum(values))
    for bound in HISTOGRAM_BOUNDS:
        assert cum.count_at_most(bound) == sum(1 for v in values if v <= bound)


def test_a_busy_bucket_stays_exact_in_count_and_sum() -> None:
    store = SeriesStore(bucket_seconds=5, retention_seconds=60)
    values = [0.001 * (i + 1) for i in range(150)]
    for v in values:
        store.observe("task_runtime_seconds", ("t", "q", "w"), v, now=100.0)
    store.observe("task_runtime_seconds", ("t", "q", "w"), 7.0, now=106.0)  # the next bucket, open
    d = store.distributions("task_runtime_seconds", 10, now=106.0)[("t", "q", "w")]
    assert d.count == len(values) + 1 and within(d.min, values[0]) and within(d.max, 7.0)
    assert math.isclose(d.sum, sum(values) + 7.0)
    assert within(d.quantile(0.5), lower_rank(sorted([*values, 7.0]), 0.5))


def test_a_busy_distribution_series_costs_at_most_16_kib_over_the_hour() -> None:
    """3 values in every 5 s bucket of the hour (bench/scale.py's busy series), tracemalloc'd.

    Deterministic for a given Python: the same values make the same allocations. The store's
    shared ring is counted too, divided among the series.
    """
    n_series = 200
    rnd = random.Random(14)
    medians = [10 ** rnd.uniform(-2, 1) for _ in range(n_series)]
    labels = [(f"app.tasks.t{i}", "q", "celery@w") for i in range(n_series)]
    gc.collect()
    tracemalloc.start()
    try:
        store = SeriesStore(bucket_seconds=5, retention_seconds=3600, max_series=100_000)
        for step in range(0, 3600, 5):
            for i in range(n_series):
                for _ in range(3):
                    store.observe("task_runtime_seconds", labels[i], medians[i] * rnd.lognormvariate(0, 0.5), step)
        store.distributions("task_runtime_seconds", 5, 3599.0)  # seals what it can, as a reader would
        gc.collect()
        used = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert used / n_series <= 16 * 1024, used / n_series
