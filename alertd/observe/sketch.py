"""The compact distribution sketch: log-binned values within 1 % (DDSketch-style), exact counts.

`Distribution` is what windows merge and rules read (quantiles, min, max within ALPHA; count and
sum exact); `Cumulative` counts every value since start into the /metrics histogram buckets.
Bin codes fit 16 bits, so sealed buckets (alertd.observe.ring) store them packed.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_right
from collections.abc import Iterable
from itertools import accumulate
from operator import add

# DDSketch-style log bins: bin k holds (GAMMA**(k-1), GAMMA**k] and answers with 2 GAMMA**k /
# (1 + GAMMA), which is within ALPHA of every value in the bin. 1 % needs ~115 bins per decade,
# so a task's runtimes (a decade or two wide) fill a couple of hundred bins at most.
ALPHA = 0.01
GAMMA = (1.0 + ALPHA) / (1.0 - ALPHA)
_INV_LN_GAMMA = 1.0 / math.log(GAMMA)
# Below MIN_VALUE (1 ns; also 0 and negatives, as a clamped queue wait) a value counts as 0, in
# a bin of its own; from MAX_VALUE (31,700 years) on, values share the top bin. Codes fit 16 bits.
MIN_VALUE = 1e-9
MAX_VALUE = 1e12
_OFFSET = 1 - math.ceil(math.log(MIN_VALUE) * _INV_LN_GAMMA)
MAX_CODE = math.ceil(math.log(MAX_VALUE) * _INV_LN_GAMMA) + _OFFSET
_VALUE = [0.0] + [2.0 * GAMMA ** (c - _OFFSET) / (1.0 + GAMMA) for c in range(1, MAX_CODE + 1)]

# What /metrics exports as histogram buckets: celery-exporter's (prometheus_client's defaults)
# plus 30 s, 1 m and 5 m (alertd.observe.exposition.BUCKETS is the same tuple). Counted exactly
# since start, per series: 18 integers, whatever the series' range of values.
HISTOGRAM_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0, 300.0)


def code_of(value: float) -> int:
    """The bin of a value: 0 for values <= MIN_VALUE, else 1 .. MAX_CODE."""
    if value > MIN_VALUE:
        if value < MAX_VALUE:
            return math.ceil(math.log(value) * _INV_LN_GAMMA) + _OFFSET
        return MAX_CODE
    return 0


def value_of(code: int) -> float:
    """What a bin answers with: within ALPHA of any value in it (exactly 0 for the zero bin)."""
    return _VALUE[code]


class Distribution:
    """Count, sum and log-binned values of observations over a window.

    Quantiles, min and max answer with the value of the bin holding the exact answer, so their
    relative error is at most ALPHA (1 %); values <= MIN_VALUE answer 0. Count and sum are exact.
    Merging is exact (the bins line up) and costs O(bins). Bins are dense over the range of codes
    seen, so a quantile is one C-level prefix sum and a bisection.
    """

    __slots__ = ("bins", "count", "lo", "sum", "zeros")

    def __init__(self) -> None:
        self.count = 0
        self.sum = 0.0
        self.zeros = 0  # values <= MIN_VALUE
        self.lo = 0  # the code of bins[0]
        self.bins: list[int] = []

    def add(self, value: float) -> None:
        """Record one observation."""
        self.count += 1
        self.sum += value
        self._add(code_of(value), 1)

    def add_many(self, values: Iterable[float]) -> None:
        """Record many observations at once."""
        for v in values:
            self.add(v)

    def _add(self, code: int, n: int) -> None:
        if code == 0:
            self.zeros += n
            return
        bins = self.bins
        i = code - self.lo
        if not bins:
            self.lo = code
            bins.append(n)
            return
        if i < 0:
            bins[0:0] = [0] * -i
            self.lo = code
            i = 0
        elif i >= len(bins):
            bins.extend([0] * (i + 1 - len(bins)))
        bins[i] += n

    def _trim(self) -> None:
        """Drop empty bins at both ends (after a view subtracted a bucket), so the range shrinks back."""
        bins = self.bins
        while bins and not bins[-1]:
            bins.pop()
        if bins and not bins[0]:
            i = 1
            while not bins[i]:
                i += 1
            del bins[:i]
            self.lo += i

    def copy(self) -> Distribution:
        d = Distribution()
        d.count, d.sum, d.zeros, d.lo, d.bins = self.count, self.sum, self.zeros, self.lo, list(self.bins)
        return d

    @property
    def min(self) -> float:
        """The smallest observation, within ALPHA; inf when empty."""
        if self.zeros:
            return 0.0
        for i, n in enumerate(self.bins):
            if n:
                return _VALUE[self.lo + i]
        return math.inf

    @property
    def max(self) -> float:
        """The largest observation, within ALPHA; -inf when empty."""
        bins = self.bins
        for i in range(len(bins) - 1, -1, -1):
            if bins[i]:
                return _VALUE[self.lo + i]
        return 0.0 if self.zeros else -math.inf

    def quantile(self, q: float) -> float:
        """q in [0, 1], lower rank (the value at sorted index floor(q * (count - 1))); nan when empty."""
        if self.count == 0:
            return math.nan
        if q <= 0:
            return self.min
        if q >= 1:
            return self.max
        rank = q * (self.count - 1)  # the answer is the first bin whose values and those below pass it
        if rank < self.zeros:
            return 0.0
        bins = self.bins
        if q > 0.5:
            # High quantiles (what rules ask: p90 .. p99) lie in the top few bins: walk down to them.
            need = self.count - rank  # values at and above the answer's bin: at least this many
            above = 0
            for i in range(len(bins) - 1, -1, -1):
                above += bins[i]
                if above >= need:
                    return _VALUE[self.lo + i]
            return 0.0
        cum = list(accumulate(bins))
        i = bisect_right(cum, rank - self.zeros)
        return _VALUE[self.lo + i] if i < len(cum) else self.max

    def count_at_most(self, bound: float) -> int:
        """Observations <= bound, to within one bin at the bound."""
        i = code_of(bound) - self.lo
        return self.zeros + (sum(self.bins[: i + 1]) if i >= 0 else 0)

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
        self.zeros += other.zeros
        ob = other.bins
        if not ob:
            return
        bins = self.bins
        olo, n = other.lo, len(ob)
        if not bins:
            self.lo, self.bins = olo, list(ob)
            return
        if olo < self.lo:
            bins[0:0] = [0] * (self.lo - olo)
            self.lo = olo
        i = olo - self.lo
        if i + n > len(bins):
            bins.extend([0] * (i + n - len(bins)))
        if n == 1:
            bins[i] += ob[0]
        else:
            bins[i : i + n] = map(add, bins[i : i + n], ob)


class Cumulative:
    """Every value a series observed since start, for /metrics histograms."""

    __slots__ = ("count", "counts", "sum")

    def __init__(self) -> None:
        self.count = 0
        self.sum = 0.0
        # counts[i]: values in (HISTOGRAM_BOUNDS[i-1], HISTOGRAM_BOUNDS[i]]; the last, above them all
        self.counts = array("q", bytes(8 * (len(HISTOGRAM_BOUNDS) + 1)))

    def count_at_most(self, bound: float) -> int:
        """Observations <= bound: exact at HISTOGRAM_BOUNDS; elsewhere, <= the nearest bound below."""
        return sum(self.counts[: bisect_right(HISTOGRAM_BOUNDS, bound)])
