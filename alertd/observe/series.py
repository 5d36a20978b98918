"""Time-bucketed series: counters and distributions over sliding windows, in bounded memory.

CONTRACT (shared by observe/ which writes and rules/ which reads; keep these signatures):

- Labels are tuples of label *values* in the order the catalogue gives for the metric
  (alertd.catalogue.CATALOGUE[metric].labels).
- `count` / `observe` are O(1) and allocation-light: they run once per event on the hot path.
- Windows are answered from whole buckets: a 10m window with 5 s buckets covers the last 120
  buckets including the current one. Memory is bounded by series x buckets, never by events.
- Past `max_series` distinct label tuples for one metric, new series are dropped and counted in
  `dropped[metric]` (the engine turns that into a meta-alert); existing series keep working.
- Distribution quantiles, min and max are within ALPHA (1 %) of the exact value (count and sum
  are exact); see Distribution.

How it is laid out, and why:

- Bucket-major. Each metric keeps a ring of sealed buckets, one per `bucket_seconds` of the
  retention. A sealed bucket packs every series that had data in it into a few flat arrays
  (series id; count or sum; bin codes as 16-bit integers). An idle series costs nothing in a
  bucket and a busy one a few bytes, instead of a Python object per series per bucket: those
  objects were most of the ~114 KiB a busy distribution series cost over the hour.
- The newest bucket is *open*: each series accumulates in its own slots, and the bucket is
  sealed when a value for a later bucket arrives or a reader asks about a later time.
- Windows are read through *views* (counter_view, distribution_view): a view keeps the merge of
  the sealed buckets of its window per group key, and each read adds the buckets that closed
  and subtracts the ones that left, then adds the open bucket. A rule evaluated every 15 s
  touches the data of 6 buckets, not of the 120 or 720 its window spans. `sums` and
  `distributions` answer per series through views of their own.

Where: the sketch (Distribution, Cumulative) in alertd.observe.sketch, the ring of buckets and
its packed records in alertd.observe.ring, the incremental window merge in alertd.observe.window
and the two views in alertd.observe.views; this module writes and answers the store's reads, and
re-exports what callers import from it.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left
from collections.abc import Callable
from typing import cast

from alertd.observe.ring import _NEVER, Labels, _encode, _Metric, _Sealed, _Series
from alertd.observe.sketch import (
    _INV_LN_GAMMA,
    _OFFSET,
    ALPHA,
    GAMMA,
    HISTOGRAM_BOUNDS,
    MAX_CODE,
    MAX_VALUE,
    MIN_VALUE,
    Cumulative,
    Distribution,
    code_of,
    value_of,
)
from alertd.observe.views import CounterView, DistributionView
from alertd.observe.window import K, _View

__all__ = [
    "ALPHA",
    "GAMMA",
    "HISTOGRAM_BOUNDS",
    "MAX_CODE",
    "MAX_VALUE",
    "MIN_VALUE",
    "CounterView",
    "Cumulative",
    "Distribution",
    "DistributionView",
    "Labels",
    "SeriesStore",
    "code_of",
    "value_of",
]


class SeriesStore:
    """Counters and distributions per (metric, labels), bucketed by time."""

    def __init__(self, bucket_seconds: float = 5.0, retention_seconds: float = 3600.0, max_series: int = 10_000):
        if bucket_seconds <= 0 or retention_seconds < bucket_seconds:
            raise ValueError("need 0 < bucket_seconds <= retention_seconds")
        self.bucket_seconds = float(bucket_seconds)
        self.retention_seconds = float(retention_seconds)
        self.max_series = max_series
        self._size = math.ceil(retention_seconds / bucket_seconds) + 1
        # Series ids in sealed buckets: 2 bytes each while they fit (max_series is 10,000 by default).
        self._sid_type = "H" if max_series <= 1 << 16 else "i"
        self._counters: dict[str, _Metric] = {}
        self._dists: dict[str, _Metric] = {}
        self._dropped: dict[str, int] = {}
        # Views behind sums() and distributions(), by (metric, window in buckets): the engine and
        # the observer ask the same few windows again and again.
        self._reads: dict[tuple[str, int], _View[Labels]] = {}
        # The bucket of the last write's time: a batch of events shares its receive time, so most
        # writes skip the float floor division (count and observe run once or twice per event).
        self._at = math.nan
        self._at_idx = 0

    # -- writing (the hot path) --------------------------------------------------------------

    def _admit(self, table: dict[str, _Metric], metric: str, labels: Labels, dist: bool) -> _Series | None:
        m = table.get(metric)
        if m is None:
            m = table[metric] = _Metric(self._size, dist)
        if len(m.series) >= self.max_series:
            self._dropped[metric] = self._dropped.get(metric, 0) + 1
            return None
        s = m.series[labels] = _Series(len(m.by_sid), labels, dist)
        m.by_sid.append(s)
        return s

    def count(self, metric: str, labels: Labels, now: float, n: float = 1.0) -> None:
        """Add n to the counter series in now's bucket."""
        m = self._counters.get(metric)
        s = m.series.get(labels) if m is not None else None
        if s is None:
            s = self._admit(self._counters, metric, labels, False)
            if s is None:
                return
            m = self._counters[metric]
        s.total += n
        if now == self._at:
            idx = self._at_idx
        else:
            idx = self._at_idx = int(now // self.bucket_seconds)
            self._at = now
        if s.idx == idx:
            s.sum += n
        else:
            self._start(m, s, idx, n, 0)  # type: ignore[arg-type]

    def observe(self, metric: str, labels: Labels, value: float, now: float) -> None:
        """Add one value to the distribution series in now's bucket."""
        m = self._dists.get(metric)
        s = m.series.get(labels) if m is not None else None
        if s is None:
            s = self._admit(self._dists, metric, labels, True)
            if s is None:
                return
            m = self._dists[metric]
        if value > MIN_VALUE:
            code = math.ceil(math.log(value) * _INV_LN_GAMMA) + _OFFSET if value < MAX_VALUE else MAX_CODE
        else:
            code = 0
        s.total += 1
        cum = s.cum
        cum.count += 1  # type: ignore[union-attr]
        cum.sum += value  # type: ignore[union-attr]
        cum.counts[bisect_left(HISTOGRAM_BOUNDS, value)] += 1  # type: ignore[union-attr]
        if now == self._at:
            idx = self._at_idx
        else:
            idx = self._at_idx = int(now // self.bucket_seconds)
            self._at = now
        if s.idx == idx:
            s.sum += value
            s.acc.append(code)  # type: ignore[union-attr]
        else:
            self._start(m, s, idx, value, code)  # type: ignore[arg-type]

    def _start(self, m: _Metric, s: _Series, idx: int, v: float, code: int) -> None:
        """A series' first value in bucket idx: open it there, seal the open bucket first, or add late."""
        if idx >= m.open_idx:
            if idx > m.open_idx:
                self._seal(m)
                m.open_idx = idx
            s.idx = idx
            s.sum = v
            if m.dist:
                s.acc = [code]
            m.touched.append(s)
            return
        if idx <= m.open_idx - self._size:
            return  # older than the retention: its slot holds a newer bucket; it only counts since start
        sealed = self._sealed(m, idx)
        sealed.sids.append(s.sid)
        sealed.vals.append(v)
        if sealed.codes is not None:
            sealed.codes.append(code)  # a record of one code
        for view in m.views:
            view._late(idx, s.sid, v, code)

    def _sealed(self, m: _Metric, idx: int) -> _Sealed:
        slot = idx % self._size
        sealed = m.ring[slot]
        if sealed is None or m.epochs[slot] != idx:
            if sealed is not None:
                # A bucket past the retention gives its slot up: views still holding it (one read
                # less often than buckets pass, or a window as long as the retention) let it go
                # first, so that they never have to start over.
                for view in m.views:
                    view._expire(m, m.epochs[slot])
            sealed = m.ring[slot] = _Sealed(m.dist, self._sid_type)
            m.epochs[slot] = idx
        return sealed

    def _seal(self, m: _Metric) -> None:
        """Pack the open bucket's data into the ring."""
        touched = m.touched
        if not touched:
            return
        slot = m.open_idx % self._size
        fresh = m.epochs[slot] != m.open_idx
        sealed = self._sealed(m, m.open_idx)
        sids = [s.sid for s in touched]
        vals = [s.sum for s in touched]
        codes: list[int] = []
        if m.dist:
            for s in touched:
                _encode(codes, s.acc)  # type: ignore[arg-type]
                s.acc = None
        if fresh:  # arrays built at their size at once, not grown (and over-allocated) append by append
            sealed.sids = array(self._sid_type, sids)
            sealed.vals = array("d", vals)
            if m.dist:
                sealed.codes = array("H", codes)
        else:
            sealed.sids.extend(sids)
            sealed.vals.extend(vals)
            if sealed.codes is not None:
                sealed.codes.extend(codes)
        for s in touched:
            s.idx = _NEVER
        m.touched = []

    def _close_before(self, m: _Metric, idx: int) -> None:
        """A reader at bucket idx: a bucket before it can get no more data but late data, so seal it."""
        if m.open_idx < idx:
            self._seal(m)
            m.open_idx = idx

    # -- reading -----------------------------------------------------------------------------

    def _buckets(self, window: float) -> int:
        return max(1, min(self._size, math.ceil(window / self.bucket_seconds)))

    def counter_view(self, metric: str, window: float, key: Callable[[Labels], K | None]) -> CounterView[K]:
        """Sums over the window per key(labels) (None leaves a series out), kept up to date incrementally."""
        return CounterView(self, metric, self._buckets(window), key)

    def distribution_view(self, metric: str, window: float, key: Callable[[Labels], K | None]) -> DistributionView[K]:
        """Merged distributions over the window per key(labels) (None leaves a series out), incremental."""
        return DistributionView(self, metric, self._buckets(window), key)

    def _read_view(self, metric: str, window: float, dist: bool) -> _View[Labels]:
        n = self._buckets(window)
        view = self._reads.get((metric, n))
        if view is None:
            if len(self._reads) >= 16:  # windows nobody asks for any more
                del self._reads[next(iter(self._reads))]
            view = self._reads[(metric, n)] = (DistributionView if dist else CounterView)(self, metric, n, _labels)
        return view

    def sums(self, metric: str, window: float, now: float) -> dict[Labels, float]:
        """Per series, the counter's sum over the window ending at now (series with 0 omitted)."""
        view = self._read_view(metric, window, False)
        assert isinstance(view, CounterView)
        return view.read(now)

    def distributions(self, metric: str, window: float, now: float) -> dict[Labels, Distribution]:
        """Per series, the merged distribution over the window (empty series omitted).

        Read-only and valid until the next read of the same window: they are the view's own (the
        observer reads a minute of every series at each evaluation, so copies would cost).
        """
        view = self._read_view(metric, window, True)
        assert isinstance(view, DistributionView)
        return view.read(now)

    def totals(self, metric: str) -> dict[Labels, float]:
        """Cumulative counter values (or observation counts for distributions) since start, for /metrics."""
        m = self._counters.get(metric) or self._dists.get(metric)
        return {s.labels: s.total for s in m.by_sid} if m is not None else {}

    def cumulative(self, metric: str) -> dict[Labels, Cumulative]:
        """Per series, every value observed since start (for /metrics histograms)."""
        m = self._dists.get(metric)
        return {s.labels: s.cum for s in m.by_sid if s.cum is not None} if m is not None else {}

    def dropped(self) -> dict[str, int]:
        """Per metric, observations refused because the metric hit max_series."""
        return dict(self._dropped)

    def series_count(self, metric: str) -> int:
        """Distinct label tuples held for the metric (at most max_series)."""
        return sum(len(t[metric].series) for t in (self._counters, self._dists) if metric in t)

    def metrics(self) -> list[str]:
        """Names of the metrics that hold at least one series."""
        return sorted(name for t in (self._counters, self._dists) for name, m in t.items() if m.series)

    # -- history, for the console's charts ---------------------------------------------------

    def counter_steps(
        self, metric: str, now: float, step: float, count: int, key: Callable[[Labels], K | None]
    ) -> list[dict[K, float]]:
        """Per key, the counter's sum in each of `count` steps of `step` seconds (whole buckets),
        oldest first, the last ending with now's bucket; steps older than the retention are empty."""
        view: CounterView[K] = CounterView(self, metric, 1, key)
        parts = cast(list[dict[K, list[float]]], _steps(self, view, now, step, count))
        return [{k: acc[0] for k, acc in part.items() if acc[0]} for part in parts]

    def distribution_steps(
        self, metric: str, now: float, step: float, count: int, key: Callable[[Labels], K | None]
    ) -> list[dict[K, Distribution]]:
        """As counter_steps, each step's merged distribution per key (fresh objects, the caller's)."""
        view: DistributionView[K] = DistributionView(self, metric, 1, key)
        return cast(list[dict[K, Distribution]], _steps(self, view, now, step, count))


def _labels(labels: Labels) -> Labels:
    return labels


def _steps(store: SeriesStore, view: _View[K], now: float, step: float, count: int) -> list[dict[object, object]]:
    """Merge each step's buckets with a view not registered with the metric (nothing calls it
    back later); the open bucket is added from its series' slots as the views' reads do."""
    m = view._table().get(view.metric)
    if m is None or count <= 0:
        return [{} for _ in range(max(count, 0))]
    per = max(1, round(step / store.bucket_seconds))
    idx = int(now // store.bucket_seconds)
    store._close_before(m, idx)
    view._m = m
    floor = m.open_idx - store._size + 1
    out: list[dict[object, object]] = []
    for i in range(count):
        hi = idx - (count - 1 - i) * per
        view._clear()
        for b in range(max(hi - per + 1, floor), hi + 1):
            if b == m.open_idx:
                for s in m.touched:
                    k = view._key_of(s.sid)
                    if k is None:
                        continue
                    if s.acc is None:
                        view._add_late(k, s.sum, 0)
                    else:  # the sum once, each value's bin
                        for j, code in enumerate(s.acc):
                            view._add_late(k, s.sum if j == 0 else 0.0, code)
            else:
                view._apply(m, b, 1)
        part: dict[object, object] = dict(
            view._sums if isinstance(view, CounterView) else cast(DistributionView[K], view)._dists
        )
        out.append(part)
    return out
