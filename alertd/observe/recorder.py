"""Gauge history for the console's charts: the series store keeps counters and distributions, not
gauges (queue lengths, worker memory, workers online, rule values), so these are sampled here.

One ring of `points` samples, `step` seconds apart, shared by every series: a sample appends one
value per series (nan where a series had none), so memory is series x points x 8 bytes whatever the
event rate. Past `max_series` new series are dropped (counted); a series with no value in the whole
ring is forgotten.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Mapping

Key = tuple[str, tuple[str, ...]]  # (name, label values)
NAN = math.nan


class Recorder:
    """Samples of named series on a shared time ring."""

    def __init__(self, step: float, points: int, max_series: int = 20_000) -> None:
        if step <= 0 or points < 2:
            raise ValueError("need step > 0 and at least 2 points")
        self.step = float(step)
        self.points = points
        self.max_series = max_series
        self.dropped = 0
        self._times = array("d", [NAN] * points)
        self._n = 0  # samples taken; the newest is at (_n - 1) % points
        self._series: dict[Key, array[float]] = {}
        self._last: dict[Key, int] = {}  # the sample number of each series' newest value

    @property
    def samples(self) -> int:
        return min(self._n, self.points)

    def due(self, now: float) -> bool:
        """Whether a step has passed since the last sample."""
        return self._n == 0 or now - self._times[(self._n - 1) % self.points] >= self.step * 0.95

    def sample(self, now: float, values: Mapping[Key, float]) -> None:
        """One sample: every series' value now (series not given get nan)."""
        slot = self._n % self.points
        self._times[slot] = now
        for old in self._series.values():
            old[slot] = NAN
        for key, v in values.items():
            ring = self._series.get(key)
            if ring is None:
                if len(self._series) >= self.max_series:
                    self.dropped += 1
                    continue
                ring = self._series[key] = array("d", [NAN] * self.points)
            ring[slot] = v if math.isfinite(v) else NAN
            self._last[key] = self._n
        self._n += 1
        stale = [k for k, last in self._last.items() if self._n - last > self.points]
        for k in stale:
            del self._series[k], self._last[k]

    def times(self) -> list[float]:
        """Sample times, oldest first."""
        return self._ordered(self._times)

    def series(self, name: str, labels: tuple[str, ...] = ()) -> list[float | None]:
        """A series' values aligned with times() (None where it had none)."""
        ring = self._series.get((name, labels))
        if ring is None:
            return [None] * self.samples
        return [None if math.isnan(v) else v for v in self._ordered(ring)]

    def latest(self, name: str, labels: tuple[str, ...] = ()) -> float | None:
        ring = self._series.get((name, labels))
        if ring is None or self._n == 0:
            return None
        v = ring[(self._n - 1) % self.points]
        return None if math.isnan(v) else v

    def labels_of(self, name: str) -> list[tuple[str, ...]]:
        """The label tuples of every series of `name` held."""
        return [labels for (n, labels) in self._series if n == name]

    def _ordered(self, ring: array[float]) -> list[float]:
        if self._n <= self.points:
            return list(ring[: self._n])
        i = self._n % self.points
        return list(ring[i:]) + list(ring[:i])
