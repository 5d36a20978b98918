"""The series store against a naive model: windows, buckets, quantile error, the series cap."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertd.observe.series import GAMMA, RAW_MAX, Distribution, SeriesStore

BUCKET = 5.0


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


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=1e-4, max_value=1e5), min_size=1, max_size=300), st.sampled_from([0.5, 0.9, 0.99]))
def test_quantiles_are_within_the_bin_error(values: list[float], q: float) -> None:
    d = Distribution()
    for v in values:
        d.add(v)
    ordered = sorted(values)
    exact = ordered[int(q * (len(ordered) - 1))]
    got = d.quantile(q)
    assert exact / GAMMA <= got <= exact * GAMMA
    assert d.stat("count") == len(values)
    assert math.isclose(d.stat("avg"), sum(values) / len(values), rel_tol=1e-9)
    assert d.stat("max") == max(values) and d.stat("min") == min(values)


def test_distributions_merge_buckets_of_the_window() -> None:
    store = SeriesStore(bucket_seconds=5, retention_seconds=600)
    for i in range(100):
        store.observe("task_runtime_seconds", ("t", "q", "w"), float(i + 1), now=1000.0 + i)
    d = store.distributions("task_runtime_seconds", 60, now=1099.0)[("t", "q", "w")]
    # the last 60 s = 12 buckets = the events at 1040..1099 (values 41..100)
    assert d.count == 60 and d.min == 41 and d.max == 100
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
        # sparse: buckets keep their few values raw
        st.lists(st.tuples(st.floats(0, 1500), st.floats(1e-3, 1e4)), min_size=1, max_size=150),
        # dense: buckets pass RAW_MAX and are binned; windows then mix raw and binned buckets
        st.lists(st.tuples(st.floats(0, 30), st.floats(0, 1e4)), min_size=1, max_size=400),
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
    assert d.count == len(inside) and d.min == inside[0] and d.max == inside[-1]
    assert math.isclose(d.sum, sum(inside), rel_tol=1e-9)
    for q in (0.5, 0.9, 0.99):
        exact = inside[int(q * (len(inside) - 1))]
        assert exact / GAMMA <= d.quantile(q) <= exact * GAMMA or exact == d.quantile(q) == 0.0
    # since start, whatever the window: what /metrics exports as a histogram
    assert store.cumulative("task_runtime_seconds")[("t", "q", "w")].count == len(events)


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
    assert store.distributions("task_runtime_seconds", 10, now=111.0)[("t", "q", "w")].max == 2.0
    assert store.totals("tasks_sent") == {("t",): 6}  # it still counts since start


def test_distribution_stats_and_prometheus_bucket_counts() -> None:
    d = Distribution()
    for v in (0.0, 0.01, 0.2, 0.2, 3.0):
        d.add(v)
    assert d.stat("count") == 5 and d.stat("sum") == 3.41 and d.stat("min") == 0.0
    assert d.count_at_most(0.1) == 2 and d.count_at_most(0.25) == 4 and d.count_at_most(5) == 5
    assert 0.2 / GAMMA <= d.stat("p50") <= 0.2 * GAMMA
    with pytest.raises(ValueError, match="unknown distribution statistic"):
        d.stat("p")


def test_a_busy_bucket_is_binned_and_stays_exact_in_count_sum_min_max() -> None:
    store = SeriesStore(bucket_seconds=5, retention_seconds=60)
    values = [0.001 * (i + 1) for i in range(RAW_MAX * 3)]
    for v in values:
        store.observe("task_runtime_seconds", ("t", "q", "w"), v, now=100.0)
    store.observe("task_runtime_seconds", ("t", "q", "w"), 7.0, now=106.0)  # the next bucket stays raw
    d = store.distributions("task_runtime_seconds", 10, now=106.0)[("t", "q", "w")]
    assert d.count == len(values) + 1 and d.min == values[0] and d.max == 7.0
    assert math.isclose(d.sum, sum(values) + 7.0)
    exact = sorted([*values, 7.0])[int(0.5 * len(values))]
    assert exact / GAMMA <= d.quantile(0.5) <= exact * GAMMA
