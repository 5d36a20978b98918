"""Time-bucketed series: counters and distributions over sliding windows, in bounded memory.

CONTRACT (shared by observe/ which writes and rules/ which reads; keep these signatures):

- Labels are tuples of label *values* in the order the catalogue gives for the metric
  (alertd.catalogue.CATALOGUE[metric].labels).
- `count` / `observe` are O(1) and allocation-light: they run once per event on the hot path.
- Windows are answered from whole buckets: a 10m window with 5 s buckets covers the last 120
  buckets including the current one. Memory is bounded by series x buckets, never by events.
- Past `max_series` distinct label tuples for one metric, new series are dropped and counted in
  `dropped[metric]` (the engine turns that into a meta-alert); existing series keep working.
"""

from __future__ import annotations

import math
from array import array
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

Labels = tuple[str, ...]

# Log-spaced bins: bin k holds values in (GAMMA**(k-1), GAMMA**k]. GAMMA = 1.04 bounds the
# relative error of a quantile at 2 %, with ~60 bins per decade, so a bucket holding task runtimes
# from 1 ms to 1 h uses a few hundred dict entries at most, usually a handful.
GAMMA = 1.04
_LOG_GAMMA = math.log(GAMMA)
_ZERO_BIN = -(10**9)  # values <= 0 (a clamped queue wait, say) share one bin
# A bucket keeps its first values raw (8 bytes each in an array) and bins them only past this many:
# a dict of bins costs ~400 bytes however few values it holds, and most buckets of most series
# hold a handful. Binning then happens when a window is read, for the few values concerned.
RAW_MAX = 48


def _bin(value: float) -> int:
    if value <= 0.0:
        return _ZERO_BIN
    return math.ceil(math.log(value) / _LOG_GAMMA)


def _bin_value(k: int) -> float:
    if k == _ZERO_BIN:
        return 0.0
    # the midpoint (in relative terms) of (GAMMA**(k-1), GAMMA**k]
    return 2.0 * GAMMA**k / (1.0 + GAMMA)


class Distribution:
    """Count, sum, min, max and approximate quantiles of observed values over a window.

    Quantiles come from log-spaced histogram bins (relative error <= 2 %), so merging windows and
    series is exact for the bins and O(bins).
    """

    __slots__ = ("bins", "count", "max", "min", "sum")

    def __init__(self) -> None:
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.bins: dict[int, int] = {}

    def add(self, value: float) -> None:
        """Record one observation."""
        self.add_binned(value, _bin(value))

    def add_binned(self, value: float, k: int) -> None:
        """Record one observation whose bin is already known (the store bins once, adds twice)."""
        self.count += 1
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        bins = self.bins
        bins[k] = bins.get(k, 0) + 1

    def add_many(self, values: Sequence[float]) -> None:
        """Record many observations at once (a bucket's raw values)."""
        if not values:
            return
        self.count += len(values)
        self.sum += sum(values)
        lo, hi = min(values), max(values)
        if lo < self.min:
            self.min = lo
        if hi > self.max:
            self.max = hi
        bins = self.bins
        log, ceil, lg = math.log, math.ceil, _LOG_GAMMA
        for v in values:
            k = ceil(log(v) / lg) if v > 0.0 else _ZERO_BIN
            bins[k] = bins.get(k, 0) + 1

    def quantile(self, q: float) -> float:
        """q in [0, 1]; nan when empty."""
        if self.count == 0:
            return math.nan
        if q <= 0:
            return self.min
        if q >= 1:
            return self.max
        rank = q * (self.count - 1)  # 0-based rank, as numpy's "linear"/"lower" conventions place it
        seen = 0
        for k in sorted(self.bins):
            seen += self.bins[k]
            if seen > rank:
                return min(max(_bin_value(k), self.min), self.max)
        return self.max

    def count_at_most(self, bound: float) -> int:
        """Observations <= bound, to within one bin (for Prometheus histogram buckets)."""
        if bound >= self.max:
            return self.count
        limit = _bin(bound)
        return sum(n for k, n in self.bins.items() if k <= limit)

    def stat(self, name: str) -> float:
        """One of alertd.catalogue.DISTRIBUTION_STATS: avg min max count sum p50 p75 p90 p95 p99."""
        if name == "count":
            return float(self.count)
        if name == "sum":
            return self.sum
        if self.count == 0:
            return math.nan
        if name == "avg":
            return self.sum / self.count
        if name == "min":
            return self.min
        if name == "max":
            return self.max
        if name.startswith("p") and name[1:].isdigit():
            return self.quantile(int(name[1:]) / 100.0)
        raise ValueError(f"unknown distribution statistic {name!r}")

    def merge(self, other: Distribution) -> None:
        """Add every observation of `other` to this one (exact: the bins line up)."""
        if other.count == 0:
            return
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        bins = self.bins
        for k, n in other.bins.items():
            bins[k] = bins.get(k, 0) + n


class _Ring:
    """One series: a slot per bucket, each tagged with the absolute bucket index it holds."""

    __slots__ = ("cumulative", "epochs", "total", "values")

    def __init__(self, size: int, distribution: bool) -> None:
        # Since start, for /metrics histograms (Prometheus wants cumulative buckets, not windows).
        self.cumulative = Distribution() if distribution else None
        self.epochs = [-1] * size
        # floats for counters; for distributions None, raw values (array) or a binned Distribution
        self.values: list[Any] = [None] * size if distribution else [0.0] * size
        self.total = 0.0


class SeriesStore:
    """Counters and distributions per (metric, labels), bucketed by time."""

    def __init__(self, bucket_seconds: float = 5.0, retention_seconds: float = 3600.0, max_series: int = 10_000):
        if bucket_seconds <= 0 or retention_seconds < bucket_seconds:
            raise ValueError("need 0 < bucket_seconds <= retention_seconds")
        self.bucket_seconds = float(bucket_seconds)
        self.retention_seconds = float(retention_seconds)
        self.max_series = max_series
        self._size = math.ceil(retention_seconds / bucket_seconds) + 1
        self._counters: dict[str, dict[Labels, _Ring]] = defaultdict(dict)
        self._dists: dict[str, dict[Labels, _Ring]] = defaultdict(dict)
        self._dropped: dict[str, int] = defaultdict(int)

    def _ring(self, table: dict[str, dict[Labels, _Ring]], metric: str, labels: Labels, dist: bool) -> _Ring | None:
        series = table[metric]
        ring = series.get(labels)
        if ring is None:
            if len(series) >= self.max_series:
                self._dropped[metric] += 1
                return None
            ring = series[labels] = _Ring(self._size, dist)
        return ring

    def count(self, metric: str, labels: Labels, now: float, n: float = 1.0) -> None:
        """Add n to the counter series in now's bucket."""
        ring = self._counters[metric].get(labels)
        if ring is None:
            ring = self._ring(self._counters, metric, labels, False)
            if ring is None:
                return
        idx = int(now // self.bucket_seconds)
        slot = idx % self._size
        values: list[float] = ring.values
        epochs = ring.epochs
        if epochs[slot] == idx:
            values[slot] += n
        elif epochs[slot] < idx:
            epochs[slot] = idx
            values[slot] = n
        # else: older than the retention (a late or replayed event): reusing its slot would wipe a
        # newer bucket, so it only counts towards the total.
        ring.total += n

    def observe(self, metric: str, labels: Labels, value: float, now: float) -> None:
        """Add one value to the distribution series in now's bucket."""
        ring = self._dists[metric].get(labels)
        if ring is None:
            ring = self._ring(self._dists, metric, labels, True)
            if ring is None:
                return
        idx = int(now // self.bucket_seconds)
        slot = idx % self._size
        values: list[array[float] | Distribution | None] = ring.values
        epochs = ring.epochs
        d = values[slot]
        if epochs[slot] != idx or d is None:
            if epochs[slot] > idx:
                d = None  # older than the retention: see count()
            else:
                epochs[slot] = idx
                d = values[slot] = array("d")
        k = _bin(value)
        if type(d) is array:
            d.append(value)
            if len(d) > RAW_MAX:
                binned = values[slot] = Distribution()
                binned.add_many(d)
        elif d is not None:
            d.add_binned(value, k)  # type: ignore[union-attr]
        ring.total += 1
        ring.cumulative.add_binned(value, k)  # type: ignore[union-attr]

    def _slots(self, window: float, now: float) -> list[tuple[int, int]]:
        """(slot, epoch) pairs of the buckets covering the window ending at now."""
        idx = int(now // self.bucket_seconds)
        n = max(1, min(self._size, math.ceil(window / self.bucket_seconds)))
        return [(i % self._size, i) for i in range(idx - n + 1, idx + 1)]

    def sums(self, metric: str, window: float, now: float) -> dict[Labels, float]:
        """Per series, the counter's sum over the window ending at now (series with 0 omitted)."""
        slots = self._slots(window, now)
        out: dict[Labels, float] = {}
        for labels, ring in self._counters.get(metric, {}).items():
            epochs = ring.epochs
            values: list[float] = ring.values
            s = 0.0
            for slot, epoch in slots:
                if epochs[slot] == epoch:
                    s += values[slot]
            if s:
                out[labels] = s
        return out

    def distributions(self, metric: str, window: float, now: float) -> dict[Labels, Distribution]:
        """Per series, the merged distribution over the window (empty series omitted)."""
        slots = self._slots(window, now)
        out: dict[Labels, Distribution] = {}
        for labels, ring in self._dists.get(metric, {}).items():
            epochs = ring.epochs
            values: list[array[float] | Distribution | None] = ring.values
            merged = Distribution()
            raw: list[float] = []
            for slot, epoch in slots:
                d = values[slot]
                if d is not None and epochs[slot] == epoch:
                    if type(d) is array:
                        raw.extend(d)
                    else:
                        merged.merge(d)  # type: ignore[arg-type]
            merged.add_many(raw)
            if merged.count:
                out[labels] = merged
        return out

    def totals(self, metric: str) -> dict[Labels, float]:
        """Cumulative counter values (or observation counts for distributions) since start, for /metrics."""
        table = self._counters.get(metric) or self._dists.get(metric) or {}
        return {labels: ring.total for labels, ring in table.items()}

    def cumulative(self, metric: str) -> dict[Labels, Distribution]:
        """Per series, every value observed since start (for /metrics histograms)."""
        return {labels: ring.cumulative for labels, ring in self._dists.get(metric, {}).items() if ring.cumulative}

    def dropped(self) -> dict[str, int]:
        """Per metric, observations refused because the metric hit max_series."""
        return dict(self._dropped)

    def series_count(self, metric: str) -> int:
        """Distinct label tuples held for the metric (at most max_series)."""
        return len(self._counters.get(metric, {})) + len(self._dists.get(metric, {}))

    def metrics(self) -> list[str]:
        """Names of the metrics that hold at least one series."""
        return sorted(set(self._counters) | set(self._dists))
