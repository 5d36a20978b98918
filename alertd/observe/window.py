"""Sliding windows over a metric's bucket ring: the incremental merge both kinds of view share.

A view keeps the merge of the sealed buckets of its window per group key; each read adds the
buckets that closed and subtracts the ones that left (alertd.observe.views says how per kind).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Generic, TypeVar

from alertd.observe.ring import _NEVER, Labels, _Metric, _Sealed

if TYPE_CHECKING:
    from alertd.observe.series import SeriesStore

K = TypeVar("K", bound=Hashable)

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
