"""The two kinds of window view: counter sums and merged distributions per key (the engine's reads)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from alertd.observe.ring import _CODE_BITS, _LONG, _PAIRS, Labels, _Metric
from alertd.observe.sketch import Distribution
from alertd.observe.window import _UNSEEN, K, _View

if TYPE_CHECKING:
    from alertd.observe.series import SeriesStore


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
