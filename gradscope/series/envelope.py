"""Bounded memory for a series that grows with every pass of a long run.

`Points` holds a series' (x, y) points exactly while there are at most `CAP` of them; past
that it holds at most `CAP` buckets of consecutive points, each with its least and greatest
finite y (and where they were) and the first non-finite one, merging neighbours pairwise
when full. What it gives back (`points()`) is every point while exact, else each bucket's
extremes at their own x: a chart's min/max envelope of those is the envelope of the whole
series, and its finite extremes are the series' own.

`GradStats` keeps what the per-parameter table and the flags read from a gradient series
(counts, first/last/min/max, medians), exactly while its `Points` is exact and, past that,
the counts and extremes exactly and the medians from a histogram of log-spaced bins
(2 ** (1/32) apart: within about 1 %).
"""

from __future__ import annotations

import math
from array import array
from statistics import median

CAP = 256  # points held exactly per series; then at most this many buckets
BINS_PER_OCTAVE = 32
NAN = math.nan


class Points:
    """A series of (x, y) in ascending x (y None: missing), in bounded memory."""

    __slots__ = ("cap", "count", "xs", "ys", "width", "cols")

    def __init__(self, cap: int = CAP) -> None:
        self.cap = cap
        self.count = 0  # points added, missing ones included
        self.xs: list[float] = []  # exact, while cols is None
        self.ys: list[float | None] = []
        self.width = 1  # points per bucket, once compacted
        # buckets: first x, last x, finite min, its x, finite max, its x, first non-finite y, its x
        self.cols: tuple[array, ...] | None = None

    @property
    def exact(self) -> bool:
        return self.cols is None

    def add(self, x: float, y: float | None) -> None:
        self.count += 1
        if self.cols is None:
            self.xs.append(x)
            self.ys.append(y)
            if len(self.xs) > self.cap:
                self._compact()
            return
        self._into_bucket(x, y)

    def _compact(self) -> None:
        xs, ys = self.xs, self.ys
        self.xs, self.ys = [], []
        self.cols = tuple(array("d") for _ in range(8))
        self.width, self.count = 2, 0
        for x, y in zip(xs, ys):
            self.count += 1
            self._into_bucket(x, y)

    def _into_bucket(self, x: float, y: float | None) -> None:
        cols = self.cols
        assert cols is not None
        x0, x1, lo, xlo, hi, xhi, bad, xbad = cols
        n = len(x0)
        if n == 0 or self.count - (n - 1) * self.width > self.width:  # the last bucket is full
            for col, v in zip(cols, (x, x, NAN, NAN, NAN, NAN, NAN, NAN)):
                col.append(v)
            n += 1
            if n > self.cap:
                self._merge()
                n = len(x0)
        k = n - 1
        x1[k] = x
        if y is None:
            return
        if math.isfinite(y):
            if not lo[k] <= y:  # (NaN: none yet)
                lo[k], xlo[k] = y, x
            if not hi[k] >= y:
                hi[k], xhi[k] = y, x
        elif xbad[k] != xbad[k]:
            bad[k], xbad[k] = y, x

    def _merge(self) -> None:
        """Neighbouring buckets into one: half as many, each twice as wide."""
        merged = tuple(array("d") for _ in range(8))
        assert self.cols is not None
        x0, x1, lo, xlo, hi, xhi, bad, xbad = self.cols
        for i in range(0, len(x0), 2):
            j = min(i + 1, len(x0) - 1)
            a_lo, b_lo = lo[i], lo[j]
            low = (a_lo, xlo[i]) if not b_lo < a_lo else (b_lo, xlo[j])  # (NaN never wins)
            if low[0] != low[0]:
                low = (b_lo, xlo[j])
            a_hi, b_hi = hi[i], hi[j]
            high = (a_hi, xhi[i]) if not b_hi > a_hi else (b_hi, xhi[j])
            if high[0] != high[0]:
                high = (b_hi, xhi[j])
            worse = (bad[i], xbad[i]) if xbad[i] == xbad[i] else (bad[j], xbad[j])
            for col, v in zip(merged, (x0[i], x1[j], *low, *high, *worse)):
                col.append(v)
        self.cols = merged
        self.width *= 2

    def points(self) -> tuple[list[float], list[float | None]]:
        """Every point while exact; else each bucket's extremes (and first non-finite point)
        at their own x, in x order."""
        if self.cols is None:
            return list(self.xs), list(self.ys)
        xs: list[float] = []
        ys: list[float | None] = []
        x0, x1, lo, xlo, hi, xhi, bad, xbad = self.cols
        for k in range(len(x0)):
            found = {}
            if lo[k] == lo[k]:
                found[xlo[k]] = lo[k]
                found.setdefault(xhi[k], hi[k])
            if xbad[k] == xbad[k]:
                found.setdefault(xbad[k], bad[k])
            for x in sorted(found):
                xs.append(x)
                ys.append(found[x])
        return xs, ys

    def finite_count(self) -> int | None:
        """How many points held a finite y, while exact (None once compacted)."""
        if self.cols is not None:
            return None
        return sum(1 for y in self.ys if y is not None and math.isfinite(y))


class GradStats:
    """Counts, extremes and medians of a gradient-norm series, in bounded memory."""

    __slots__ = ("with_grad", "nonfinite", "first", "last", "lo", "hi", "zeros", "bins")

    def __init__(self) -> None:
        self.with_grad = 0  # points with a gradient (NaN/Inf included)
        self.nonfinite = 0
        self.first: float | None = None  # the first and last finite norms
        self.last: float | None = None
        self.lo: float | None = None
        self.hi: float | None = None
        self.zeros = 0  # finite norms that are 0 (or below: none should be)
        self.bins: dict[int, int] = {}  # log2-spaced bins of the positive finite norms

    def add(self, g: float | None) -> None:
        if g is None:
            return
        self.with_grad += 1
        if not math.isfinite(g):
            self.nonfinite += 1
            return
        if self.first is None:
            self.first = g
        self.last = g
        self.lo = g if self.lo is None or g < self.lo else self.lo
        self.hi = g if self.hi is None or g > self.hi else self.hi
        if g > 0:
            k = math.floor(math.log2(g) * BINS_PER_OCTAVE)
            self.bins[k] = self.bins.get(k, 0) + 1
        else:
            self.zeros += 1

    def median(self, positive: bool) -> float | None:
        """The median of the finite norms (`positive`: of those above 0), from the bins."""
        counts = sorted(self.bins.items())
        n = sum(c for _, c in counts) + (0 if positive else self.zeros)
        if n == 0:
            return None
        wanted = [(n - 1) // 2, n // 2]  # the middle one, or the two middle ones
        values = [self._nth(counts, w, 0 if positive else self.zeros) for w in wanted]
        return median(values)

    def _nth(self, counts: list[tuple[int, int]], rank: int, zeros: int) -> float:
        if rank < zeros:
            return 0.0
        rank -= zeros
        for k, c in counts:
            if rank < c:
                middle = 2.0 ** ((k + 0.5) / BINS_PER_OCTAVE)
                return min(max(middle, self.lo or middle), self.hi or middle)
            rank -= c
        return self.hi or 0.0
