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

Labels = tuple[str, ...]


class Distribution:
    """Count, sum, min, max and approximate quantiles of observed values over a window.

    Quantiles come from log-spaced histogram bins (relative error a few percent), so merging
    windows and series is exact for the bins and O(bins).
    """

    count: int
    sum: float
    min: float
    max: float

    def quantile(self, q: float) -> float:
        """q in [0, 1]; nan when empty."""
        raise NotImplementedError

    def stat(self, name: str) -> float:
        """One of alertd.catalogue.DISTRIBUTION_STATS: avg min max count sum p50 p75 p90 p95 p99."""
        raise NotImplementedError

    def merge(self, other: Distribution) -> None:
        raise NotImplementedError


class SeriesStore:
    def __init__(self, bucket_seconds: float = 5.0, retention_seconds: float = 3600.0, max_series: int = 10_000):
        raise NotImplementedError

    def count(self, metric: str, labels: Labels, now: float, n: float = 1.0) -> None:
        raise NotImplementedError

    def observe(self, metric: str, labels: Labels, value: float, now: float) -> None:
        raise NotImplementedError

    def sums(self, metric: str, window: float, now: float) -> dict[Labels, float]:
        """Per series, the counter's sum over the window ending at now (series with 0 omitted)."""
        raise NotImplementedError

    def distributions(self, metric: str, window: float, now: float) -> dict[Labels, Distribution]:
        raise NotImplementedError

    def totals(self, metric: str) -> dict[Labels, float]:
        """Cumulative counter values since start, for /metrics."""
        raise NotImplementedError

    def dropped(self) -> dict[str, int]:
        raise NotImplementedError
