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
CHUNK = 32  # points buffered, past the cap, before they are folded into buckets
BINS_PER_OCTAVE = 32
NAN = math.nan


class Points:
    """A series of (x, y) in ascending x (y None: missing), in bounded memory.

    Points are buffered (`xs`, `ys`) and folded into buckets a few at a time (at most
    `CHUNK`), so that adding one costs two appends: while exact, the buffer is the series.
    """

    __slots__ = ("cap", "count", "xs", "ys", "width", "cols", "limit", "folded", "stats", "finite_folded")

    def __init__(self, cap: int = CAP, stats: GradStats | None = None) -> None:
        self.cap = cap
        self.stats = stats  # told of the points as they are folded (`grad_stats`)
        self.finite_folded = 0  # finite points folded into buckets
        self.count = 0  # points added, missing ones included
        self.xs: list[float] = []  # the points not folded into buckets yet (all, while exact)
        self.ys: list[float | None] = []
        self.width = 1  # points per bucket, once compacted
        # buckets: first x, last x, finite min, its x, finite max, its x, first non-finite y, its x
        # (the last one open: `folded` of its `width` points in it so far)
        self.cols: tuple[array, ...] | None = None
        self.folded = 0
        self.limit = cap + 1  # buffered points that set off a fold

    @property
    def exact(self) -> bool:
        return self.cols is None

    def add(self, x: float, y: float | None) -> None:
        self.count += 1
        xs = self.xs
        xs.append(x)
        self.ys.append(y)
        if len(xs) >= self.limit:
            self._fold()

    def _fold(self) -> None:
        """Fold the buffered points into buckets (the first time: compact the exact series)."""
        if self.cols is None:  # (a quarter of the cap's buckets: four points each)
            self.cols = tuple(array("d") for _ in range(8))
            self.width = 4
        xs, ys = self.xs, self.ys
        if self.stats is not None:
            self.stats.add_many(ys)
        start = 0
        while start < len(xs):
            room = self.width - self.folded
            self._into_open(xs[start:start + room], ys[start:start + room])
            start += room
        self.xs, self.ys = [], []
        self.limit = CHUNK

    def _into_open(self, xs: list[float], ys: list[float | None]) -> None:
        """Points into the open bucket (a new one when none is open); merge when full."""
        cols = self.cols
        assert cols is not None
        x0, x1, lo, xlo, hi, xhi, bad, xbad = cols
        if self.folded == 0:
            for col in cols:
                col.append(NAN)
            x0[-1] = xs[0]
            if len(x0) > self.cap:
                self._merge()
                cols = self.cols
                assert cols is not None
                x0, x1, lo, xlo, hi, xhi, bad, xbad = cols
        x1[-1] = xs[-1]
        finite = [y for y in ys if y is not None and y - y == 0]  # (NaN and ±Inf give NaN)
        self.finite_folded += len(finite)
        if finite:
            least, most = min(finite), max(finite)
            if not lo[-1] <= least:  # (NaN: none yet)
                lo[-1], xlo[-1] = least, xs[ys.index(least)]
            if not hi[-1] >= most:
                hi[-1], xhi[-1] = most, xs[ys.index(most)]
        if xbad[-1] != xbad[-1] and len(finite) < len(ys) - ys.count(None):
            x, y = next((x, y) for x, y in zip(xs, ys) if y is not None and not math.isfinite(y))
            bad[-1], xbad[-1] = y, x
        self.folded += len(xs)
        if self.folded >= self.width:
            self.folded = 0

    def _merge(self) -> None:
        """Neighbouring closed buckets into one: half as many, each twice as wide (a new,
        still empty, bucket stays last and open)."""
        merged = tuple(array("d") for _ in range(8))
        assert self.cols is not None
        x0, x1, lo, xlo, hi, xhi, bad, xbad = self.cols
        closed = len(x0) - 1
        for i in range(0, closed, 2):
            j = min(i + 1, closed - 1)
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
        for col, old in zip(merged, self.cols):
            col.append(old[-1])
        self.cols = merged
        self.width *= 2

    def points(self) -> tuple[list[float], list[float | None]]:
        """Every point while exact; else each bucket's extremes (and first non-finite point)
        at their own x, in x order, then the points not folded yet."""
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
        return xs + self.xs, ys + self.ys

    def finite(self) -> int:
        """How many points held a finite y."""
        return self.finite_folded + sum(1 for y in self.ys if y is not None and y - y == 0)

    def grad_stats(self) -> GradStats | None:
        """The `GradStats` of every point (the buffered ones too); None without one."""
        if self.stats is None:
            return None
        whole = self.stats.copy()
        whole.add_many(self.ys)
        return whole

    def buckets(self) -> int:
        """How many buckets are held (0 while exact)."""
        return len(self.cols[0]) if self.cols is not None else 0


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
        self.add_many([g])

    def add_many(self, gs: list[float | None]) -> None:
        """Norms in order (None: no gradient)."""
        bins, log2, floor = self.bins, math.log2, math.floor
        for g in gs:
            if g is None:
                continue
            self.with_grad += 1
            if not g - g == 0:  # NaN or ±Inf
                self.nonfinite += 1
                continue
            if self.first is None:
                self.first = g
            self.last = g
            if self.lo is None or g < self.lo:
                self.lo = g
            if self.hi is None or g > self.hi:
                self.hi = g
            if g > 0:
                k = floor(log2(g) * BINS_PER_OCTAVE)
                bins[k] = bins.get(k, 0) + 1
            else:
                self.zeros += 1

    def copy(self) -> GradStats:
        other = GradStats()
        for name in self.__slots__:
            setattr(other, name, getattr(self, name))
        other.bins = dict(self.bins)
        return other

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
