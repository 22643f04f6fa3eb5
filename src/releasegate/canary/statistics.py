"""The canary judge's statistics: pure functions of numbers, numpy and :class:`statistics.NormalDist`.

- :func:`mann_whitney`: the two-sample Mann-Whitney U test (average ranks for ties, tie-corrected
  variance, continuity correction, both one-sided p-values); the exact null distribution of U
  (:func:`u_distribution`) when both samples have at most 30 values and there are no ties.
- :func:`hodges_lehmann`: the two-sample Hodges-Lehmann shift (median of the pairwise differences
  ``y_j - x_i``) and its distribution-free confidence bounds, the order statistics of those
  differences at the ranks the U test's critical value gives (the Mann-Whitney inversion).
  :func:`difference_order_statistics` finds them without materialising ``n * m`` differences.
- :func:`fisher_exact`: Fisher's exact test on a 2x2 table, both one-sided p-values, from the
  hypergeometric distribution (log-pmf recursion, exact for trials in the millions);
  :func:`risk_ratio`: the ratio of two rates with the Haldane-Anscombe +0.5 and its Katz log
  interval.
- :func:`percentile`: nearest rank, as :mod:`releasegate.stats`.

The order statistics of the pairwise differences are the expensive part: 100,000 values per side
make 10^10 differences. :func:`difference_order_statistics` counts the pairs with a difference at
or below ``d`` with one ``np.searchsorted`` of one sorted side into the other (a few ms), brackets
each wanted rank from a seeded random sample of differences, checks the bracket by counting, and
closes it with Illinois (regula falsi) steps, falling back to bisection; once a bracket holds few
enough pairs, they are enumerated and the rank is picked exactly. Below ``EXACT_PAIRS`` pairs
every difference is computed (exact, and faster at that size). Tied values (whole milliseconds,
coarse Prometheus points, 0/1 flags) are taken once with their multiplicity, so heavy ties make
the work smaller, not the search longer.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
ArrayLike = FloatArray | Sequence[float]

_NORMAL = NormalDist()
# The exact null distribution of U is used up to this many values per side (without ties);
# above it the normal approximation is accurate to well below the alphas a canary uses.
EXACT_U_MAX = 30
# Up to this many pairs, every pairwise difference is computed and the ranks picked exactly.
EXACT_PAIRS = 250_000
# The search for an order statistic of n*m differences may stop within this share of n*m ranks:
# 1,000 ranks out of 10^10 at 100k values per side, where neighbouring differences are equal to
# about seven digits. Below 10^7 pairs the tolerance is 0: the result is exact.
RANK_TOLERANCE = 1e-7
_SAMPLE_PAIRS = 20_000  # random differences that bracket the wanted ranks
_BRACKET_SIGMAS = 5.0  # how far (in sampling standard errors) the bracket reaches around a rank
_MAX_STEPS = 200  # per rank; each step at least halves the value range or the count range in practice
_SEED = 20_240_607  # fixed: the same samples always give the same figures


def _sorted(values: ArrayLike) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError("expected a one-dimensional sample")
    if not np.all(np.isfinite(array)):
        raise ValueError("samples must be finite (the judge drops non-finite values before testing)")
    if array.size > 1 and not bool(np.all(array[:-1] <= array[1:])):
        array = np.sort(array)
    return array


# --------------------------------------------------------------------------- Mann-Whitney U


@dataclass(frozen=True)
class MannWhitney:
    """Mann-Whitney U of ``y`` against ``x`` (y: the canary, x: the baseline)."""

    u: float  # pairs (x_i, y_j) with y_j > x_i; a tie counts one half
    n_x: int
    n_y: int
    sd: float  # standard deviation of U under the null, tie-corrected (0: every value equal)
    p_greater: float  # one-sided: y tends to be larger (P(U' >= u) under the null)
    p_less: float  # one-sided: y tends to be smaller (P(U' <= u))
    exact: bool  # exact null distribution (both n <= 30, no ties) rather than the normal one
    ties: bool

    @property
    def mean(self) -> float:
        return self.n_x * self.n_y / 2.0

    @property
    def effect_size(self) -> float:
        """Probability of superiority: P(y > x) + P(y = x) / 2, estimated by U / (n m)."""
        return self.u / (self.n_x * self.n_y)


def mann_whitney(x: ArrayLike, y: ArrayLike) -> MannWhitney:
    """The two-sample Mann-Whitney U test; both samples non-empty and finite."""
    return _mann_whitney_sorted(_sorted(x), _sorted(y))


def _mann_whitney_sorted(xs: FloatArray, ys: FloatArray) -> MannWhitney:
    n, m = xs.size, ys.size
    if n == 0 or m == 0:
        raise ValueError("Mann-Whitney needs values on both sides")
    below = np.searchsorted(xs, ys, side="left")  # x_i < y_j, per j
    # Ties anywhere in the pooled sample change U and its variance: within a side they are
    # neighbours, across the sides a y equals the x its search landed on.
    inside = below < n
    ties = bool(np.any(xs[1:] == xs[:-1]) or np.any(ys[1:] == ys[:-1]) or np.any(xs[below[inside]] == ys[inside]))
    if ties:
        at_or_below = np.searchsorted(xs, ys, side="right")
        u = float(below.sum()) + 0.5 * float((at_or_below - below).sum())
        # Sizes of the runs of equal pooled values, sum(t^3 - t) over them, from one merge (a
        # stable sort of two sorted runs is a linear merge).
        pooled = np.sort(np.concatenate((xs, ys)), kind="stable")
        starts = np.flatnonzero(np.concatenate(([True], pooled[1:] != pooled[:-1])))
        runs = np.diff(np.append(starts, pooled.size)).astype(np.float64)
        tie_term = float(np.sum(runs**3 - runs))
    else:
        u = float(below.sum())
        tie_term = 0.0
    total = n + m
    variance = n * m / 12.0 * ((total + 1) - tie_term / (total * (total - 1))) if total > 1 else 0.0
    sd = math.sqrt(max(variance, 0.0))
    mean = n * m / 2.0
    exact = not ties and n <= EXACT_U_MAX and m <= EXACT_U_MAX
    if exact:
        k = int(round(u))
        # Both tails summed from the pmf (more precise than 1 - cdf for a small tail).
        p_less = float(_u_cdf(n, m)[k])
        p_greater = float(_u_sf(n, m)[k])
    elif sd == 0.0:
        p_greater = p_less = 1.0  # every value equal: no evidence either way
    else:
        # Continuity correction: U moves in steps of 1/2 at least; P(U' >= u) ~ P(Z >= (u - 1/2 - mean) / sd).
        p_greater = _NORMAL.cdf(-(u - 0.5 - mean) / sd)  # the upper tail as a lower one: no cancellation
        p_less = _NORMAL.cdf((u + 0.5 - mean) / sd)
    return MannWhitney(u, n, m, sd, min(1.0, max(0.0, p_greater)), min(1.0, max(0.0, p_less)), exact, ties)


@functools.lru_cache(maxsize=1024)  # every (n, m) up to 30 x 30, a few MB at most
def _u_counts(n: int, m: int) -> FloatArray:
    """How many of the C(n+m, n) orderings of n x's and m y's give U = 0 .. n*m (no ties)."""
    size = n * m + 1
    delta = np.zeros(size)
    delta[0] = 1.0
    # f(i, j, u): orderings of i x's and j y's with U = u. The largest value is a y (it beats all
    # i x's: f(i, j-1, u-i)) or an x (it beats no y: f(i-1, j, u)).
    row = [delta] * (m + 1)  # i = 0: every y below no x, U = 0
    for i in range(1, n + 1):
        new = [delta]
        for j in range(1, m + 1):
            counts = row[j].copy()
            counts[i:] += new[j - 1][: size - i]
            new.append(counts)
        row = new
    counts = row[m]
    counts.setflags(write=False)  # shared by every caller through the cache
    return counts


def u_distribution(n: int, m: int) -> FloatArray:
    """The exact null distribution of U (no ties): P(U = u) for u = 0 .. n*m."""
    if n < 1 or m < 1:
        raise ValueError("both samples need at least one value")
    return _u_counts(n, m) / math.comb(n + m, n)


def _u_cdf(n: int, m: int) -> FloatArray:
    return np.minimum(np.cumsum(u_distribution(n, m)), 1.0)


def _u_sf(n: int, m: int) -> FloatArray:
    """P(U >= u) for u = 0 .. n*m."""
    return np.minimum(np.cumsum(u_distribution(n, m)[::-1])[::-1], 1.0)


def confidence_rank(n: int, m: int, alpha: float, *, sd: float | None = None, exact: bool = False) -> int:
    """The rank k of the one-sided level-``alpha`` bounds of the shift: lower = D_(k), upper = D_(nm+1-k).

    k - 1 is the largest u with P(U <= u) <= alpha under the null, so that "lower bound above 0"
    is the same statement as "p_greater <= alpha" (the Mann-Whitney inversion). 0 means the
    samples are too small for that level: the bounds are infinite.
    """
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    pairs = n * m
    if exact:
        cdf = _u_cdf(n, m)
        return int(np.searchsorted(cdf, alpha * (1 + 1e-12), side="right"))
    spread = math.sqrt(pairs * (n + m + 1) / 12.0) if sd is None else sd
    # Largest u with Phi((u + 1/2 - mean) / sd) <= alpha, plus one.
    k = math.floor(pairs / 2.0 - _NORMAL.inv_cdf(1.0 - alpha) * spread + 0.5)
    return max(0, min(k, pairs // 2))


# --------------------------------------------------------------------------- Hodges-Lehmann


@dataclass(frozen=True)
class HodgesLehmann:
    """The shift of y over x (median of y_j - x_i) and one-sided confidence bounds on it."""

    shift: float
    alphas: tuple[float, ...]  # one-sided level of each pair of bounds
    lower: tuple[float, ...]  # per alpha: D_(k), -inf when the samples are too small for it
    upper: tuple[float, ...]  # per alpha: D_(nm+1-k), +inf likewise

    def bounds(self, alpha: float) -> tuple[float, float]:
        index = self.alphas.index(alpha)
        return self.lower[index], self.upper[index]


def hodges_lehmann(
    x: ArrayLike,
    y: ArrayLike,
    alphas: Sequence[float] = (),
    *,
    test: MannWhitney | None = None,
    only: Mapping[float, Literal["lower", "upper"]] | None = None,
) -> HodgesLehmann:
    """The Hodges-Lehmann shift of y over x and, per one-sided ``alpha``, its distribution-free bounds.

    ``[lower, upper]`` at ``alpha`` is a two-sided ``1 - 2 * alpha`` interval. The ranks come from
    the exact null distribution of U when ``test`` says it was exact, else from the normal
    approximation with ``test``'s tie-corrected standard deviation (computed here if not given).
    ``only`` names alphas of which one bound is enough (each costs a search at 10^10 pairs);
    the other is NaN.
    """
    xs, ys = _sorted(x), _sorted(y)
    n, m = xs.size, ys.size
    if n == 0 or m == 0:
        raise ValueError("Hodges-Lehmann needs values on both sides")
    if test is None:
        test = _mann_whitney_sorted(xs, ys)
    pairs = n * m
    ranks: list[int] = []
    # The median: the middle difference, or the mean of the middle two (one of them when the
    # search may stop within a tolerance of more than one rank anyway).
    middle = [(pairs + 1) // 2] if pairs % 2 or _tolerance(pairs) >= 1 else [pairs // 2, pairs // 2 + 1]
    ranks.extend(middle)
    only = only or {}
    ks = [confidence_rank(n, m, a, sd=test.sd, exact=test.exact) for a in alphas]
    for a, k in zip(alphas, ks, strict=True):
        if k >= 1:
            ranks.extend(r for side, r in (("lower", k), ("upper", pairs + 1 - k)) if only.get(a, side) == side)
    values = dict(zip(sorted(set(ranks)), difference_order_statistics(xs, ys, sorted(set(ranks))), strict=True))
    shift = float(np.mean([values[r] for r in middle]))

    def bound(a: float, k: int, side: Literal["lower", "upper"]) -> float:
        if only.get(a, side) != side:
            return math.nan
        if k < 1:
            return -math.inf if side == "lower" else math.inf
        return values[k if side == "lower" else pairs + 1 - k]

    lower = tuple(bound(a, k, "lower") for a, k in zip(alphas, ks, strict=True))
    upper = tuple(bound(a, k, "upper") for a, k in zip(alphas, ks, strict=True))
    return HodgesLehmann(shift, tuple(alphas), lower, upper)


def _tolerance(pairs: int) -> int:
    return int(RANK_TOLERANCE * pairs)


def difference_order_statistics(
    x: ArrayLike,
    y: ArrayLike,
    ranks: Sequence[int],
    *,
    exact_pairs: int = EXACT_PAIRS,
    enumerate_pairs: int | None = None,
    tolerance: int | None = None,
    seed: int = _SEED,
) -> list[float]:
    """The ``ranks``-th smallest (1-based) of the pairwise differences ``y_j - x_i``, with multiplicity.

    Tied values are taken once with their multiplicity, so what counts is the number of pairs of
    distinct values. Up to ``exact_pairs`` of them (a quarter of that with ties, whose weights
    need a full sort) every difference is computed. Otherwise each rank is searched (see the
    module docstring); a result is a pairwise difference whose rank is within ``tolerance`` of the
    wanted one (default: ``RANK_TOLERANCE`` of the pairs, 0 below 10^7 pairs), found once the
    bracket holds at most ``enumerate_pairs`` pairs of distinct values (enumerated exactly) or a
    single distinct difference. The random sample is seeded: the same input, the same output.
    """
    xs, ys = _sorted(x), _sorted(y)
    pairs = xs.size * ys.size
    if pairs == 0:
        raise ValueError("pairwise differences need values on both sides")
    for k in ranks:
        if not 1 <= k <= pairs:
            raise ValueError(f"rank {k} is outside 1..{pairs}")
    x_values, x_weights = _compress(xs)
    y_values, y_weights = _compress(ys)
    if x_weights is None and y_weights is None and pairs <= exact_pairs:
        differences = (ys[None, :] - xs[:, None]).ravel()
        wanted = np.array(sorted({k - 1 for k in ranks}), dtype=np.intp)
        differences.partition(wanted)
        return [float(differences[k - 1]) for k in ranks]
    if (x_weights is not None or y_weights is not None) and x_values.size * y_values.size <= exact_pairs // 4:
        differences = (y_values[None, :] - x_values[:, None]).ravel()
        weights = np.outer(_ones(x_weights, x_values.size), _ones(y_weights, y_values.size)).ravel()
        order = np.argsort(differences, kind="stable")
        cumulative = np.cumsum(weights[order])
        at = np.searchsorted(cumulative, np.asarray(ranks, dtype=np.int64), side="left")
        return [float(differences[order[i]]) for i in at]
    search = _DifferenceSearch(
        xs,
        ys,
        (x_values, x_weights),
        (y_values, y_weights),
        enumerate_pairs=max(xs.size + ys.size, 65_536) if enumerate_pairs is None else enumerate_pairs,
        tolerance=_tolerance(pairs) if tolerance is None else tolerance,
        seed=seed,
    )
    return [search.select(k) for k in ranks]


IntArray = npt.NDArray[np.int64]


def _compress(values: FloatArray) -> tuple[FloatArray, IntArray | None]:
    """Sorted values as (distinct values, multiplicities), or (values, None) when all are distinct."""
    new = np.concatenate(([True], values[1:] != values[:-1]))
    if new.all():
        return values, None
    starts = np.flatnonzero(new)
    return values[starts], np.diff(np.append(starts, values.size)).astype(np.int64)


def _ones(weights: IntArray | None, size: int) -> IntArray:
    return np.ones(size, dtype=np.int64) if weights is None else weights


_Point = tuple[float, int, npt.NDArray[np.intp]]


class _DifferenceSearch:
    """Order statistics of y_j - x_i by counting, never materialising the n*m differences.

    count(d) = #{(i, j): x_i >= y_j - d} = #{y_j - x_i <= d} is one searchsorted of the sorted
    queries y - d into the sorted x (numpy walks sorted queries fast), on distinct values weighted
    by their multiplicity. Every count is kept, so a later rank starts from the tightest bracket
    the earlier searches left.
    """

    def __init__(
        self,
        xs: FloatArray,
        ys: FloatArray,
        x_distinct: tuple[FloatArray, IntArray | None],
        y_distinct: tuple[FloatArray, IntArray | None],
        *,
        enumerate_pairs: int,
        tolerance: int,
        seed: int,
    ) -> None:
        self.xs, self.x_weights = x_distinct
        self.ys, self.y_weights = y_distinct
        self.n, self.m = self.xs.size, self.ys.size  # distinct values
        self.pairs = xs.size * ys.size  # pairs of samples, with multiplicity
        # Samples of x below index i (of the distinct values): the count of pairs is weighted by it.
        self.x_below = None if self.x_weights is None else np.concatenate(([0], np.cumsum(self.x_weights)))
        self.enumerate_pairs = max(1, enumerate_pairs)
        self.tolerance = max(0, tolerance)
        self.counts = 0  # searchsorted calls, for the benchmark's curiosity
        # Known points (d, count, per-j first index with x >= y_j - d), kept sorted by d.
        self.points: list[_Point] = []
        rng = np.random.default_rng(seed)
        size = min(_SAMPLE_PAIRS, self.pairs)
        # Sampled from the samples themselves, so ties weigh as often as they occur.
        sample = ys[rng.integers(0, ys.size, size)] - xs[rng.integers(0, xs.size, size)]
        self.sample = np.sort(sample)
        # Points surely below every difference and at or above every one, by a margin that
        # rounding in y - d cannot eat (y_0 - x_last itself may count its own pair or not).
        margin = 1.0 + abs(float(xs[0])) + abs(float(xs[-1])) + abs(float(ys[0])) + abs(float(ys[-1]))
        self.lowest = float(ys[0] - xs[-1]) - margin
        self.highest = float(ys[-1] - xs[0]) + margin
        # Differences closer than this are equal but for rounding (log 42 - log 38 and log 21 -
        # log 19): the search never tries to tell them apart.
        self.resolution = 64 * float(np.finfo(np.float64).eps) * (margin - 1.0 + 1e-300)

    # ----------------------------------------------------------------- counting

    def count(self, d: float) -> tuple[int, npt.NDArray[np.intp]]:
        first = np.searchsorted(self.xs, self.ys - d, side="left")
        self.counts += 1
        below = first if self.x_below is None else self.x_below[first]
        c = self.pairs - int(below.sum() if self.y_weights is None else np.dot(self.y_weights, below))
        index = _insert_at(self.points, d)
        if not (index < len(self.points) and self.points[index][0] == d):
            self.points.insert(index, (d, c, first))
        return c, first

    def distinct_pairs(self, low: npt.NDArray[np.intp], high: npt.NDArray[np.intp], c_low: int, c_high: int) -> int:
        """Pairs of distinct values counted at the high point but not at the low one."""
        if self.x_weights is None and self.y_weights is None:
            return c_high - c_low
        return int((low - high).sum())

    def largest_at_or_below(self, first: npt.NDArray[np.intp]) -> float:
        """The largest difference counted at this point (-inf if none): D_(count)."""
        has = first < self.n
        if not has.any():
            return -math.inf
        return float(np.max(self.ys[has] - self.xs[first[has]]))

    def smallest_above(self, first: npt.NDArray[np.intp]) -> float:
        """The smallest difference not counted at this point (+inf if none): D_(count + 1)."""
        has = first > 0
        if not has.any():
            return math.inf
        return float(np.min(self.ys[has] - self.xs[first[has] - 1]))

    def enumerate(self, low: npt.NDArray[np.intp], high: npt.NDArray[np.intp], offset: int, k: int) -> float:
        """The (k - offset)-th smallest difference counted at ``high`` but not at ``low``."""
        # Pairs counted at high and not at low: for each j, i in [high_j, low_j).
        widths = (low - high).astype(np.intp)
        total = int(widths.sum())
        j = np.repeat(np.arange(self.m), widths)
        starts = np.repeat(high - np.concatenate(([0], np.cumsum(widths)[:-1])), widths)
        i = starts + np.arange(total)
        differences = self.ys[j] - self.xs[i]
        if self.x_weights is None and self.y_weights is None:
            position = k - offset - 1
            differences.partition(position)
            return float(differences[position])
        weights = _ones(self.x_weights, self.n)[i] * _ones(self.y_weights, self.m)[j]
        order = np.argsort(differences, kind="stable")
        at = int(np.searchsorted(np.cumsum(weights[order]), k - offset, side="left"))
        return float(differences[order[min(at, total - 1)]])

    # ----------------------------------------------------------------- one rank

    def bracket(self, k: int) -> tuple[_Point, _Point]:
        """The tightest known points with count < k (low) and count >= k (high), counting new ones if needed."""
        low = next((p for p in reversed(self.points) if p[1] < k), None)
        high = next((p for p in self.points if p[1] >= k), None)
        if low is not None and high is not None:
            return low, high
        # Nothing known on one side yet: take it from the random sample, far enough out that the
        # rank lies inside with near certainty, and check it by counting.
        q = (k - 0.5) / self.pairs
        reach = _BRACKET_SIGMAS * math.sqrt(max(q * (1 - q), 1.0 / self.sample.size) / self.sample.size) + 2.0 / self.sample.size
        size = self.sample.size
        if low is None:
            guess = float(self.sample[max(0, math.floor((q - reach) * size))]) if q - reach > 0 else None
            if guess is not None:
                c, first = self.count(guess)
                if c < k:
                    low = (guess, c, first)
            if low is None:  # below every difference: counts nothing
                c, first = self.count(self.lowest)
                low = (self.lowest, c, first)
        if high is None:
            guess = float(self.sample[min(size - 1, math.ceil((q + reach) * size))]) if q + reach < 1 else None
            if guess is not None and guess > low[0]:
                c, first = self.count(guess)
                if c >= k:
                    high = (guess, c, first)
            if high is None:
                c, first = self.count(self.highest)
                high = (self.highest, c, first)
        # Counting may have added points inside: start from the tightest.
        low = next(p for p in reversed(self.points) if p[1] < k)
        high = next(p for p in self.points if p[1] >= k)
        return low, high

    def select(self, k: int) -> float:
        (lo, c_lo, first_lo), (hi, c_hi, first_hi) = self.bracket(k)
        target = k - 0.5  # the count steps through k somewhere in (lo, hi]
        f_lo, f_hi = c_lo - target, c_hi - target
        side = 0
        widths = [c_hi - c_lo]
        for _ in range(_MAX_STEPS):
            if self.distinct_pairs(first_lo, first_hi, c_lo, c_hi) <= self.enumerate_pairs:
                return self.enumerate(first_lo, first_hi, c_lo, k)
            if c_hi - k <= self.tolerance:
                return self.largest_at_or_below(first_hi)  # D_(c_hi), within tolerance of k
            if k - (c_lo + 1) <= self.tolerance or hi - lo <= self.resolution:
                return self.smallest_above(first_lo)  # D_(c_lo + 1), or a rounding away from D_(k)
            stalled = len(widths) >= 3 and widths[-1] > widths[-3] / 2
            if stalled:
                # Illinois is not closing in (a step function with big jumps: ties): the next
                # count either closes the bracket on one distinct value or bisects it.
                above, below = self.smallest_above(first_lo), min(hi, self.largest_at_or_below(first_hi))
                if below - above <= self.resolution:
                    return above  # one distinct difference in (lo, hi]: it has every rank in between
                d = 0.5 * (above + below)
            else:
                d = (lo * f_hi - hi * f_lo) / (f_hi - f_lo)
            if not lo < d < hi:
                d = 0.5 * (lo + hi)
                if not lo < d < hi:  # adjacent floats: nothing left to split
                    return self.smallest_above(first_lo)
            c, first = self.count(d)
            if c >= k:
                hi, c_hi, first_hi, f_hi = d, c, first, c - target
                if side == 1:
                    f_lo /= 2.0  # Illinois: the low end survived twice, pull the next step toward it
                side = 1
            else:
                lo, c_lo, first_lo, f_lo = d, c, first, c - target
                if side == -1:
                    f_hi /= 2.0
                side = -1
            widths.append(c_hi - c_lo)
        return self.smallest_above(first_lo)  # bounded: the closest known difference above the bracket's floor


def _insert_at(points: Sequence[_Point], d: float) -> int:
    low, high = 0, len(points)
    while low < high:
        middle = (low + high) // 2
        if points[middle][0] < d:
            low = middle + 1
        else:
            high = middle
    return low


# --------------------------------------------------------------------------- rates


@dataclass(frozen=True)
class FisherExact:
    """Fisher's exact test of y's rate against x's (y: canary, x: baseline), conditional on the margins."""

    p_greater: float  # one-sided: y's rate is higher (P(events_y' >= events_y))
    p_less: float  # one-sided: y's rate is lower


def fisher_exact(events_x: int, trials_x: int, events_y: int, trials_y: int) -> FisherExact:
    """Both one-sided p-values of Fisher's exact test on the table (events, trials - events) per side."""
    for events, trials in ((events_x, trials_x), (events_y, trials_y)):
        if trials < 0 or events < 0 or events > trials:
            raise ValueError(f"impossible counts: {events} events out of {trials} trials")
    pmf, low = _hypergeometric_pmf(trials_x + trials_y, events_x + events_y, trials_y)
    index = events_y - low
    p_greater = float(min(1.0, pmf[index:].sum()))
    p_less = float(min(1.0, pmf[: index + 1].sum()))
    return FisherExact(p_greater, p_less)


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _hypergeometric_pmf(population: int, successes: int, draws: int) -> tuple[FloatArray, int]:
    """P(X = x) for x = low .. high (returned with low), X the successes among ``draws`` from the population."""
    low = max(0, draws - (population - successes))
    high = min(successes, draws)
    x = np.arange(low, high + 1, dtype=np.float64)
    if x.size == 1:
        return np.ones(1), low
    # Anchored at the mode (computed with lgamma), the rest by the ratio of neighbours:
    # P(x+1)/P(x) = (K - x)(n - x) / ((x + 1)(N - K - n + x + 1)).
    mode = min(high, max(low, math.floor((draws + 1) * (successes + 1) / (population + 2))))
    log_mode = _log_comb(successes, mode) + _log_comb(population - successes, draws - mode) - _log_comb(population, draws)
    step = x[:-1]
    log_ratio = np.log(successes - step) + np.log(draws - step) - np.log(step + 1) - np.log(population - successes - draws + step + 1)
    cumulative = np.concatenate(([0.0], np.cumsum(log_ratio)))
    log_pmf = log_mode + cumulative - cumulative[mode - low]
    pmf = np.exp(log_pmf)
    # The recursion is exact up to rounding; renormalising removes the last of it (sum = 1).
    return pmf / pmf.sum(), low


@dataclass(frozen=True)
class RiskRatio:
    """Rate of y over rate of x with +0.5 in every cell (finite with 0 events), and its Katz interval."""

    ratio: float
    lower: float
    upper: float


def risk_ratio(events_x: int, trials_x: int, events_y: int, trials_y: int, alpha: float) -> RiskRatio:
    """The Haldane-Anscombe-corrected ratio of rates and its Katz log interval, two-sided ``1 - 2 * alpha``."""
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    a, b = events_y + 0.5, trials_y - events_y + 0.5
    c, d = events_x + 0.5, trials_x - events_x + 0.5
    log_ratio = math.log(a / (a + b)) - math.log(c / (c + d))
    se = math.sqrt(1.0 / a - 1.0 / (a + b) + 1.0 / c - 1.0 / (c + d))
    z = _NORMAL.inv_cdf(1.0 - alpha)
    return RiskRatio(math.exp(log_ratio), math.exp(log_ratio - z * se), math.exp(log_ratio + z * se))


# --------------------------------------------------------------------------- descriptive


def percentile(sorted_values: FloatArray, p: float) -> float:
    """Nearest-rank percentile of values sorted ascending (as :func:`releasegate.stats.percentile`)."""
    if sorted_values.size == 0:
        raise ValueError("percentile of no samples")
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p}")
    rank = max(1, math.ceil(p / 100 * sorted_values.size))
    return float(sorted_values[rank - 1])
