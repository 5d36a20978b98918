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
"""

from __future__ import annotations

import math
import time
import weakref
from array import array
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from itertools import accumulate
from operator import add
from typing import Generic, TypeVar, cast

Labels = tuple[str, ...]
K = TypeVar("K", bound=Hashable)

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

_NEVER = -(1 << 62)  # a bucket index before any
# A sealed record's codes (see _Sealed): codes take 12 bits, so the first one's top 4 bits say
# how many follow (0 .. 14); 15 there means a long record, whose next element is its length:
# that many codes, or with _PAIRS set, that many (code, count) pairs.
_CODE_BITS = 12
_LONG = 15
_PAIRS = 0x8000
_PLAIN_MAX = 8  # records of at most this many values are stored plain without counting them
assert MAX_CODE < 1 << _CODE_BITS


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


class _Series:
    """One label set of one metric: its id in sealed buckets, totals, and its open-bucket slots."""

    __slots__ = ("acc", "cum", "idx", "labels", "sid", "sum", "total")

    def __init__(self, sid: int, labels: Labels, dist: bool) -> None:
        self.sid = sid
        self.labels = labels
        self.total = 0.0  # since start, for /metrics
        self.cum = Cumulative() if dist else None
        self.idx = _NEVER  # the open bucket this series has data in, if any
        self.sum = 0.0  # in that bucket: the count (counters) or the sum of values (distributions)
        self.acc: list[int] | None = None  # in that bucket: bin codes (distributions)


class _Sealed:
    """One closed bucket of one metric: a record per series that had data in it (late data adds records).

    Counters: sids[i] counted vals[i]. Distributions: sids[i] observed values summing to vals[i],
    whose bin codes are the i-th record in `codes` (see _CODE_BITS). A busy series' record (3
    values) costs 2 + 8 + 6 bytes: 720 of them, the hour of 5 s buckets, are 11.5 KiB.
    """

    __slots__ = ("codes", "sids", "vals")

    def __init__(self, dist: bool, sid_type: str) -> None:
        self.sids = array(sid_type)
        self.vals = array("d")
        self.codes = array("H") if dist else None


class _Metric:
    __slots__ = ("by_sid", "dist", "epochs", "open_idx", "ring", "series", "touched", "views")

    def __init__(self, size: int, dist: bool) -> None:
        self.dist = dist
        self.series: dict[Labels, _Series] = {}
        self.by_sid: list[_Series] = []
        self.open_idx = _NEVER  # the newest bucket; data for it sits in the series until sealed
        self.touched: list[_Series] = []  # series with data in the open bucket
        self.ring: list[_Sealed | None] = [None] * size
        self.epochs = [_NEVER] * size  # the bucket index each ring slot holds
        self.views: weakref.WeakSet[_View[object]] = weakref.WeakSet()


def _encode(codes: list[int], acc: list[int]) -> None:
    n = len(acc)
    if n <= _LONG:
        if n > _PLAIN_MAX and 2 * len(set(acc)) + 2 < n:
            _encode_pairs(codes, acc)
            return
        codes.append(acc[0] | (n - 1) << _CODE_BITS)
        codes.extend(acc[1:])
    elif n < _PAIRS and n <= 2 * len(set(acc)) + 2:
        codes += (_LONG << _CODE_BITS, n)
        codes.extend(acc)
    else:
        _encode_pairs(codes, acc)


def _encode_pairs(codes: list[int], acc: list[int]) -> None:
    pairs: list[int] = []
    for c, k in Counter(acc).items():
        while k > 0xFFFF:  # a pair counts at most 65535; more of one code takes more pairs
            pairs += (c, 0xFFFF)
            k -= 0xFFFF
        pairs += (c, k)
    # at most 4,096 codes, so fewer than _PAIRS pairs unless one series sends 2**31 values in a bucket
    codes += (_LONG << _CODE_BITS, _PAIRS | len(pairs) // 2)
    codes.extend(pairs)


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
        idx = int(now // self.bucket_seconds)
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
        idx = int(now // self.bucket_seconds)
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


_UNSEEN = object()  # a series whose key a view has not asked for yet


class _View(Generic[K]):
    """The sealed buckets of a sliding window, merged per key, advanced bucket by bucket.

    Results are computed when read and share the view's state: read them before the next read.
    """

    def __init__(self, store: SeriesStore, metric: str, n: int, key: Callable[[Labels], K | None]) -> None:
        self.store = store
        self.metric = metric
        self._n = n  # buckets in the window, the open one included
        self._key = key
        self._m: _Metric | None = None
        self._keys: list[object] = []  # by series id: its key, None (left out) or _UNSEEN
        self._lo = self._hi = _NEVER  # sealed buckets merged so far: lo .. hi (none while hi is _NEVER)
        self._added: list[int] = []  # the buckets among them that had data, oldest first
        self._built = False  # whether lo has reached the window's start once (else a read builds it)

    def _table(self) -> dict[str, _Metric]:
        raise NotImplementedError

    def _key_of(self, sid: int) -> object:
        keys = self._keys
        if sid >= len(keys):
            keys.extend([_UNSEEN] * (sid + 1 - len(keys)))
        k = keys[sid]
        if k is _UNSEEN:
            assert self._m is not None
            k = keys[sid] = self._key(self._m.by_sid[sid].labels)
        return k

    def _bind(self) -> _Metric | None:
        m = self._m
        if m is None:
            m = self._m = self._table().get(self.metric)
            if m is not None:
                m.views.add(self)  # type: ignore[arg-type]
        return m

    def _window(self, m: _Metric, idx: int) -> tuple[int, int]:
        """The sealed buckets of the window ending in bucket idx."""
        self.store._close_before(m, idx)
        # Bucket idx is open unless data for a later one came already (a reader behind the writers).
        return idx - self._n + 1, (idx - 1 if m.open_idx == idx else idx)

    @property
    def built(self) -> bool:
        """Whether a read costs only what changed since the last (else it merges the whole window)."""
        return self._built or self._bind() is None

    def build(self, now: float, deadline: float | None = None) -> bool:
        """Merge the window's past buckets, newest first, until built or time.perf_counter() passes
        deadline; True once built. A new view (a rule just loaded on a full store) is built in
        slices this way, so that no single tick pays for its whole window."""
        if self._built:
            return True
        m = self._bind()
        if m is None:
            return True
        try:
            return self._build(m, int(now // self.store.bucket_seconds), deadline)
        except BaseException:
            self._lo = self._hi = _NEVER  # half-applied: start over
            raise

    def _build(self, m: _Metric, idx: int, deadline: float | None) -> bool:
        lo, hi = self._window(m, idx)
        added = self._added
        if self._hi == _NEVER or hi < self._hi:
            self._clear()
            added.clear()
            self._lo, self._hi = hi + 1, hi  # nothing merged yet
        else:
            for b in range(self._hi + 1, hi + 1):  # buckets that closed since the last slice
                if self._apply(m, b, 1):
                    added.append(b)
            self._hi = hi
        floor = max(lo, m.open_idx - self.store._size + 1)  # nothing older is kept
        while self._lo > floor:
            b = self._lo - 1
            if self._apply(m, b, 1):
                added.insert(0, b)
            self._lo = b
            if deadline is not None and self._lo > floor and time.perf_counter() > deadline:
                return False  # at least a bucket per slice, so that it always gets there
        # Done; what left the window while it was built is taken out by the next read.
        self._lo = min(self._lo, lo)
        self._built = True
        return True

    def _advance(self, idx: int) -> _Metric | None:
        """Bring the merge to the sealed buckets of the window ending in bucket idx."""
        m = self._bind()
        if m is None:
            return None
        try:
            if not self._built:
                self._build(m, idx, None)
            lo, hi = self._window(m, idx)
            if self._hi == _NEVER or lo > self._hi or lo < self._lo or hi < self._hi:
                self._rebuild(m, lo, hi)
            else:
                added = self._added
                gone = 0
                while gone < len(added) and added[gone] < lo:
                    if not self._apply(m, added[gone], -1):
                        # Its ring slot was reused (a view not read for about the retention).
                        self._rebuild(m, lo, hi)
                        return m
                    gone += 1
                del added[:gone]
                for b in range(self._hi + 1, hi + 1):
                    if self._apply(m, b, 1):
                        added.append(b)
                self._lo, self._hi = lo, hi
        except BaseException:
            self._lo = self._hi = _NEVER  # half-applied: start over on the next read
            self._built = False
            raise
        return m

    def _rebuild(self, m: _Metric, lo: int, hi: int) -> None:
        self._clear()
        self._added = [b for b in range(max(lo, m.open_idx - self.store._size + 1), hi + 1) if self._apply(m, b, 1)]
        self._lo, self._hi = lo, hi
        self._built = True

    def _sealed(self, m: _Metric, b: int) -> _Sealed | None:
        slot = b % self.store._size
        return m.ring[slot] if m.epochs[slot] == b else None

    def _late(self, b: int, sid: int, v: float, code: int) -> None:
        """Data added to sealed bucket b: merged at once if b is inside what this view holds."""
        if not self._lo <= b <= self._hi:
            return
        k = self._key_of(sid)
        if k is not None:
            self._add_late(k, v, code)
        added = self._added
        i = bisect_left(added, b)
        if i == len(added) or added[i] != b:
            added.insert(i, b)

    def _expire(self, m: _Metric, b: int) -> None:
        """Sealed bucket b is about to be dropped from the ring: take it out if merged."""
        added = self._added
        if not added or added[0] > b or self._hi == _NEVER:
            return
        i = bisect_left(added, b)
        if i < len(added) and added[i] == b:
            self._apply(m, b, -1)
            del added[i]
        if self._lo <= b:
            self._lo = b + 1

    def _clear(self) -> None:
        raise NotImplementedError

    def _apply(self, m: _Metric, b: int, sign: int) -> bool:
        raise NotImplementedError

    def _add_late(self, k: object, v: float, code: int) -> None:
        raise NotImplementedError


class CounterView(_View[K]):
    """Counter sums over a sliding window per key."""

    def __init__(self, store: SeriesStore, metric: str, n: int, key: Callable[[Labels], K | None]) -> None:
        super().__init__(store, metric, n, key)
        self._sums: dict[object, list[float]] = {}  # key -> [sum, records]: at 0 records the sum is reset

    def _table(self) -> dict[str, _Metric]:
        return self.store._counters

    def _clear(self) -> None:
        self._sums = {}

    def _apply(self, m: _Metric, b: int, sign: int) -> bool:
        sealed = self._sealed(m, b)
        if sealed is None:
            return False
        keys, sums, unseen = self._keys, self._sums, _UNSEEN
        nkeys = len(keys)
        for sid, v in zip(sealed.sids, sealed.vals, strict=True):
            k = keys[sid] if sid < nkeys else unseen
            if k is unseen:
                k = self._key_of(sid)
                nkeys = len(keys)
            if k is None:
                continue
            acc = sums.get(k)
            if acc is None:
                if sign > 0:
                    sums[k] = [v, 1.0]
            elif sign > 0:
                acc[0] += v
                acc[1] += 1.0
            else:
                acc[1] -= 1.0
                if acc[1] <= 0.0:
                    del sums[k]
                else:
                    acc[0] -= v
        return True

    def _add_late(self, k: object, v: float, code: int) -> None:
        acc = self._sums.get(k)
        if acc is None:
            self._sums[k] = [v, 1.0]
        else:
            acc[0] += v
            acc[1] += 1.0

    def read(self, now: float) -> dict[K, float]:
        """Per key, the sum over the window ending at now (keys summing to 0 omitted)."""
        idx = int(now // self.store.bucket_seconds)
        m = self._advance(idx)
        if m is None:
            return {}
        out: dict[object, float] = {k: acc[0] for k, acc in self._sums.items()}
        if m.open_idx == idx:
            for s in m.touched:
                k = self._keys[s.sid] if s.sid < len(self._keys) else _UNSEEN
                if k is _UNSEEN:
                    k = self._key_of(s.sid)
                if k is not None:
                    out[k] = out.get(k, 0.0) + s.sum
        return {k: v for k, v in out.items() if v}  # type: ignore[misc]


class DistributionView(_View[K]):
    """Merged distributions over a sliding window per key."""

    def __init__(self, store: SeriesStore, metric: str, n: int, key: Callable[[Labels], K | None]) -> None:
        super().__init__(store, metric, n, key)
        self._dists: dict[object, Distribution] = {}

    def _table(self) -> dict[str, _Metric]:
        return self.store._dists

    def _clear(self) -> None:
        self._dists = {}

    def _apply(self, m: _Metric, b: int, sign: int) -> bool:
        sealed = self._sealed(m, b)
        if sealed is None:
            return False
        keys, dists, unseen = self._keys, self._dists, _UNSEEN
        codes = sealed.codes
        assert codes is not None
        nkeys = len(keys)
        p = 0
        mask, shift = (1 << _CODE_BITS) - 1, _CODE_BITS
        for sid, total in zip(sealed.sids, sealed.vals, strict=True):
            first = codes[p]
            more = first >> shift
            pairs = False
            if more < _LONG:
                n = more + 1
                first &= mask
                seg: Iterable[int] = codes[p + 1 : p + n] if more else ()
                p += n
            else:
                h = codes[p + 1]
                first = 0
                if h < _PAIRS:
                    n = h
                    seg = codes[p + 2 : p + 2 + h]
                    p += 2 + h
                else:
                    seg = codes[p + 2 : p + 2 + 2 * (h - _PAIRS)]
                    p += 2 + 2 * (h - _PAIRS)
                    n = sum(seg[1::2])
                    pairs = True
            k = keys[sid] if sid < nkeys else unseen
            if k is unseen:
                k = self._key_of(sid)
                nkeys = len(keys)
            if k is None:
                continue
            d = dists.get(k)
            if sign < 0:
                if d is None:
                    continue
                d.count -= n
                if d.count <= 0:
                    del dists[k]  # also resets the sum's rounding
                    continue
                d.sum -= total
            else:
                if d is None:
                    d = dists[k] = Distribution()
                d.count += n
                d.sum += total
            if more < _LONG:
                # Most records are one value (a series with a task or two per bucket): inlined.
                bins = d.bins
                i = first - d.lo
                if first and 0 <= i < len(bins):
                    bins[i] += sign
                else:
                    d._add(first, sign)
                if more:
                    _add_codes(d, seg, False, sign)
            else:
                _add_codes(d, seg, pairs, sign)
            # Shrink a range left wide by values that left the window (small ranges cost nothing).
            if sign < 0 and len(d.bins) > 16 and not (d.bins[0] and d.bins[-1]):
                d._trim()
        return True

    def _add_late(self, k: object, v: float, code: int) -> None:
        d = self._dists.get(k)
        if d is None:
            d = self._dists[k] = Distribution()
        d.count += 1
        d.sum += v
        d._add(code, 1)

    def read(self, now: float) -> dict[K, Distribution]:
        """Per key, the merged distribution over the window ending at now (read-only; empty keys omitted)."""
        idx = int(now // self.store.bucket_seconds)
        m = self._advance(idx)
        if m is None:
            return {}
        out: dict[object, Distribution] = dict(self._dists)
        if m.open_idx == idx and m.touched:
            copied: set[object] = set()
            for s in m.touched:
                k = self._keys[s.sid] if s.sid < len(self._keys) else _UNSEEN
                if k is _UNSEEN:
                    k = self._key_of(s.sid)
                if k is None:
                    continue
                if k not in copied:
                    closed = out.get(k)
                    out[k] = closed.copy() if closed is not None else Distribution()
                    copied.add(k)
                d = out[k]
                acc = s.acc
                assert acc is not None
                d.count += len(acc)
                d.sum += s.sum
                _add_codes(d, acc, False, 1)
        return out  # type: ignore[return-value]


def _add_codes(d: Distribution, seg: Iterable[int], pairs: bool, sign: int) -> None:
    add_code = d._add
    if pairs:
        it = iter(seg)
        for c, n in zip(it, it, strict=True):
            add_code(c, sign * n)
    else:
        for c in seg:
            add_code(c, sign)


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
