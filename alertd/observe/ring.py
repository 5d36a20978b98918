"""The bucket ring of a metric: its series, its sealed buckets and how their bin codes are packed.

Bucket-major (see alertd.observe.series): a metric keeps a ring of sealed buckets, one per
`bucket_seconds` of the retention, each packing the series that had data in it into flat arrays;
the newest bucket is open and accumulates in the series' own slots until sealed.
"""

from __future__ import annotations

import weakref
from array import array
from collections import Counter
from typing import TYPE_CHECKING

from alertd.observe.sketch import MAX_CODE, Cumulative

if TYPE_CHECKING:
    from alertd.observe.window import _View

Labels = tuple[str, ...]

_NEVER = -(1 << 62)  # a bucket index before any
# A sealed record's codes (see _Sealed): codes take 12 bits, so the first one's top 4 bits say
# how many follow (0 .. 14); 15 there means a long record, whose next element is its length:
# that many codes, or with _PAIRS set, that many (code, count) pairs.
_CODE_BITS = 12
_LONG = 15
_PAIRS = 0x8000
_PLAIN_MAX = 8  # records of at most this many values are stored plain without counting them
assert MAX_CODE < 1 << _CODE_BITS


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
