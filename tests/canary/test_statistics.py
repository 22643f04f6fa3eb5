"""The canary judge's statistics against values computed independently: textbook tables, brute force.

Every reference here is computed a different way from the code under test: U by comparing every
pair, its null distribution by enumerating every split of the pooled ranks, Hodges-Lehmann by
sorting every pairwise difference, Fisher by summing exact binomial coefficients as fractions.
The fast order-statistic search is checked against the full sort on data where subtraction is
exact (multiples of 1/8), so the comparison can demand equality.
"""

from __future__ import annotations

import itertools
import math
import statistics
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from releasegate import stats as release_stats
from releasegate.canary import statistics as st

NORMAL = statistics.NormalDist()


def brute_u(x: list[float], y: list[float]) -> float:
    return sum(1.0 if b > a else 0.5 if b == a else 0.0 for a in x for b in y)


def brute_null(n: int, m: int) -> list[Fraction]:
    """P(U = u) by enumerating which of the ranks 1..n+m belong to y."""
    counts = [0] * (n * m + 1)
    for chosen in itertools.combinations(range(n + m), m):
        ys = set(chosen)
        u = sum(1 for j in chosen for i in range(n + m) if i not in ys and i < j)
        counts[u] += 1
    total = math.comb(n + m, n)
    return [Fraction(c, total) for c in counts]


# --------------------------------------------------------------------------- Mann-Whitney


def test_exact_null_distribution_matches_the_textbook_table_for_five_and_five() -> None:
    # Given n = m = 5: the numbers of splits with U = 0..5 are the partition counts 1, 1, 2, 3, 5, 7
    # out of C(10, 5) = 252, so P(U <= 2) = 4/252 and P(U <= 3) = 7/252: the one-sided 2.5 %
    # critical value of the tables is U = 2.
    pmf = st.u_distribution(5, 5)

    assert [round(p * 252) for p in pmf[:6]] == [1, 1, 2, 3, 5, 7]
    assert pmf.sum() == pytest.approx(1.0)
    assert st.confidence_rank(5, 5, 0.025, exact=True) == 3  # k - 1 = 2, the table's critical value


@pytest.mark.parametrize(("n", "m"), [(1, 1), (2, 3), (4, 4), (3, 6), (6, 5)])
def test_exact_null_distribution_equals_enumeration_of_every_split(n: int, m: int) -> None:
    expected = brute_null(n, m)

    assert st.u_distribution(n, m) == pytest.approx([float(p) for p in expected], abs=1e-15)


def test_exact_p_values_are_the_share_of_splits_at_least_as_extreme() -> None:
    # Given small samples without ties (exact path): the p-values are permutation p-values.
    x = [12.1, 14.0, 9.8, 11.2, 13.3]
    y = [15.2, 13.9, 16.8, 12.5, 17.1, 14.4]
    pooled = x + y
    observed = brute_u(x, y)
    splits = [brute_u([pooled[i] for i in range(11) if i not in c], [pooled[i] for i in c]) for c in itertools.combinations(range(11), 6)]

    result = st.mann_whitney(x, y)

    assert result.exact and not result.ties
    assert result.u == observed == 27.0
    assert result.p_greater == pytest.approx(sum(u >= observed for u in splits) / len(splits), rel=1e-12)
    assert result.p_less == pytest.approx(sum(u <= observed for u in splits) / len(splits), rel=1e-12)
    assert result.effect_size == pytest.approx(27 / 30)


def test_ties_use_average_ranks_the_tie_corrected_variance_and_the_continuity_correction() -> None:
    # Worked by hand: pooled 1, 2, 2, 2, 3, 3, 3, 4, 5 has two runs of three ties,
    # sum(t^3 - t) = 48; N = 9, nm = 20: var U = 20/12 * (10 - 48/72) = 15.556.
    x = [1.0, 2.0, 2.0, 3.0]
    y = [2.0, 3.0, 3.0, 4.0, 5.0]
    u = brute_u(x, y)  # 2 + 3.5 + 3.5 + 4 + 4
    sd = math.sqrt(20 / 12 * (10 - 48 / 72))

    result = st.mann_whitney(x, y)

    assert result.ties and not result.exact
    assert result.u == u == 17.0
    assert result.sd == pytest.approx(sd)
    assert result.p_greater == pytest.approx(1 - NORMAL.cdf((17 - 0.5 - 10) / sd))
    assert result.p_less == pytest.approx(NORMAL.cdf((17 + 0.5 - 10) / sd))


@settings(max_examples=80, deadline=None)
@given(hs.lists(hs.integers(0, 12), min_size=1, max_size=25), hs.lists(hs.integers(0, 12), min_size=1, max_size=25))
def test_u_and_the_ties_flag_agree_with_pairwise_comparison(xi: list[int], yi: list[int]) -> None:
    # Ties within a side, across the sides, or both: U counts each tie one half, and any
    # repeated pooled value switches to the tie-corrected normal approximation.
    x, y = [float(v) for v in xi], [float(v) for v in yi]

    result = st.mann_whitney(x, y)

    assert result.u == brute_u(x, y)
    assert result.ties == (len(set(x + y)) < len(x) + len(y))
    assert result.exact == (not result.ties)


def test_every_value_equal_is_no_evidence_either_way() -> None:
    result = st.mann_whitney([3.0] * 40, [3.0] * 50)

    assert result.sd == 0.0 and result.u == 1000.0
    assert result.p_greater == result.p_less == 1.0


def test_large_samples_use_the_normal_approximation_and_agree_with_pairwise_counting() -> None:
    rng = np.random.default_rng(11)
    x, y = rng.normal(0, 1, 300), rng.normal(0.3, 1, 200)
    below = (x[:, None] < y[None, :]).sum()

    result = st.mann_whitney(x, y)

    assert not result.exact and result.u == below
    z = (below - 0.5 - 300 * 200 / 2) / math.sqrt(300 * 200 * 501 / 12)
    assert result.p_greater == pytest.approx(1 - NORMAL.cdf(z), rel=1e-9)


# --------------------------------------------------------------------------- Hodges-Lehmann


def brute_bounds(x: list[float], y: list[float], alpha: float) -> tuple[float, float, float]:
    """Median of all differences and the bounds at the exact critical rank, by enumeration."""
    differences = sorted(b - a for a in x for b in y)
    null = brute_null(len(x), len(y))
    cumulative, k = Fraction(0), 0
    for u, p in enumerate(null):
        cumulative += p
        if cumulative <= Fraction(alpha).limit_denominator(10**12):
            k = u + 1
    return statistics.median(differences), differences[k - 1], differences[len(differences) - k]


def test_hodges_lehmann_and_its_exact_bounds_equal_the_sorted_pairwise_differences() -> None:
    x = [101.0, 97.5, 110.2, 99.9, 104.4, 95.1, 102.8]
    y = [108.3, 111.0, 103.7, 115.9, 109.4, 106.6]

    result = st.hodges_lehmann(x, y, [0.025, 0.05])

    for alpha in (0.025, 0.05):
        median, lower, upper = brute_bounds(x, y, alpha)
        assert result.shift == pytest.approx(median)
        assert result.bounds(alpha) == (pytest.approx(lower), pytest.approx(upper))


def test_one_bound_only_saves_the_other_search_and_leaves_it_nan() -> None:
    rng = np.random.default_rng(12)
    x, y = rng.normal(0, 1, 60), rng.normal(0.2, 1, 70)

    both = st.hodges_lehmann(x, y, [0.01, 0.05])
    upper_only = st.hodges_lehmann(x, y, [0.01, 0.05], only={0.05: "upper"})

    assert upper_only.bounds(0.01) == both.bounds(0.01)
    assert math.isnan(upper_only.bounds(0.05)[0]) and upper_only.bounds(0.05)[1] == both.bounds(0.05)[1]


def test_too_small_samples_give_infinite_bounds_rather_than_false_precision() -> None:
    # Given 2 values a side, even the most extreme split has P = 1/6 > 1 %.
    result = st.hodges_lehmann([1.0, 2.0], [3.0, 4.0], [0.01])

    assert result.bounds(0.01) == (-math.inf, math.inf)
    assert result.shift == 2.0


@settings(max_examples=60, deadline=None)
@given(
    hs.lists(hs.integers(0, 400), min_size=3, max_size=30, unique=True),
    hs.lists(hs.integers(0, 400), min_size=3, max_size=30, unique=True),
    hs.sampled_from([0.001, 0.005, 0.01, 0.025, 0.1]),
)
def test_lower_bound_above_zero_is_the_same_statement_as_p_at_most_alpha_exact(xi: list[int], yi: list[int], alpha: float) -> None:
    # The Mann-Whitney inversion: the interval excludes 0 exactly when the test rejects.
    x, y = [v / 4 for v in xi], [v / 4 + 0.125 for v in yi]  # disjoint values: no ties, no zero differences
    test = st.mann_whitney(x, y)
    hl = st.hodges_lehmann(x, y, [alpha], test=test)

    assert test.exact
    assert (hl.bounds(alpha)[0] > 0) == (test.p_greater <= alpha)
    assert (hl.bounds(alpha)[1] < 0) == (test.p_less <= alpha)


@settings(max_examples=30, deadline=None)
@given(hs.integers(31, 120), hs.integers(31, 120), hs.floats(-0.6, 0.6), hs.integers(0, 2**32 - 1))
def test_lower_bound_above_zero_is_the_same_statement_as_p_below_alpha_normal(n: int, m: int, shift: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, y = rng.normal(0, 1, n), rng.normal(shift, 1, m)
    test = st.mann_whitney(x, y)
    hl = st.hodges_lehmann(x, y, [0.01], test=test)

    assert not test.exact and not test.ties
    assert (hl.bounds(0.01)[0] > 0) == (test.p_greater <= 0.01)


# --------------------------------------------------------------------------- the fast order statistics


def exact_order_statistics(x: np.ndarray, y: np.ndarray, ranks: list[int]) -> list[float]:
    differences = np.sort((y[None, :] - x[:, None]).ravel())
    return [float(differences[k - 1]) for k in ranks]


eighths = hs.integers(-800, 800).map(lambda v: v / 8)  # subtraction of these is exact


@settings(max_examples=120, deadline=None)
@given(
    hs.lists(eighths, min_size=1, max_size=60),
    hs.lists(eighths, min_size=1, max_size=60),
    hs.lists(hs.floats(0, 1), min_size=1, max_size=6),
    hs.integers(1, 50),
)
def test_search_finds_exactly_the_rank_the_full_sort_finds(
    xv: list[float], yv: list[float], quantiles: list[float], enumerate_pairs: int
) -> None:
    # Given any samples (ties, duplicates, one value, far-apart sides) and the search forced on
    # (exact_pairs=0) with tiny enumerations, so the Illinois/bisection steps do the work.
    x, y = np.array(xv), np.array(yv)
    pairs = x.size * y.size
    ranks = [min(pairs, max(1, math.ceil(q * pairs))) for q in quantiles]

    found = st.difference_order_statistics(x, y, ranks, exact_pairs=0, enumerate_pairs=enumerate_pairs, tolerance=0)

    assert found == exact_order_statistics(x, y, ranks)


@settings(max_examples=80, deadline=None)
@given(
    hs.lists(hs.integers(0, 12).map(lambda v: v / 4), min_size=1, max_size=80),
    hs.lists(hs.integers(0, 16).map(lambda v: v / 4), min_size=1, max_size=80),
    hs.lists(hs.floats(0, 1), min_size=1, max_size=6),
)
def test_tied_values_count_with_their_multiplicity_on_every_path(xv: list[float], yv: list[float], quantiles: list[float]) -> None:
    # Given heavy ties (a dozen distinct values): the weighted full sort (default) and the
    # weighted search (forced) both find what sorting every one of the n*m differences finds.
    x, y = np.array(xv), np.array(yv)
    pairs = x.size * y.size
    ranks = [min(pairs, max(1, math.ceil(q * pairs))) for q in quantiles]
    expected = exact_order_statistics(x, y, ranks)

    assert st.difference_order_statistics(x, y, ranks) == expected
    assert st.difference_order_statistics(x, y, ranks, exact_pairs=0, enumerate_pairs=3, tolerance=0) == expected


def test_search_on_heavy_ties_closes_on_the_one_distinct_difference() -> None:
    # Integer milliseconds: a few dozen distinct differences, each millions of pairs deep, far
    # more than any enumeration; the bracket ends holding one distinct value.
    rng = np.random.default_rng(5)
    x, y = rng.integers(10, 40, 3000).astype(float), rng.integers(10, 45, 2500).astype(float)
    ranks = [1, 2, 3_750_000, 3_750_001, 7_500_000, 123_457]

    found = st.difference_order_statistics(x, y, ranks, exact_pairs=0, enumerate_pairs=8, tolerance=0)

    assert found == exact_order_statistics(x, y, ranks)


def test_search_within_a_rank_tolerance_returns_a_difference_that_close_to_the_rank() -> None:
    rng = np.random.default_rng(9)
    x, y = np.log(rng.lognormal(0, 0.5, 1500)), np.log(rng.lognormal(0.1, 0.5, 1200))
    differences = np.sort((y[None, :] - x[:, None]).ravel())
    ranks = [1, 900_000, 900_001, 1_799_999, 1_800_000, 40_000]

    found = st.difference_order_statistics(x, y, ranks, exact_pairs=0, enumerate_pairs=10, tolerance=25)

    for k, value in zip(ranks, found, strict=True):
        first = int(np.searchsorted(differences, value, side="left")) + 1
        last = int(np.searchsorted(differences, value, side="right"))
        assert differences[first - 1] == value  # an actual pairwise difference
        assert first - 25 <= k <= last + 25  # ... whose rank is within the tolerance


def test_search_on_real_valued_latencies_matches_the_sort_and_is_deterministic() -> None:
    rng = np.random.default_rng(3)
    x, y = np.log(rng.lognormal(3, 0.5, 700)), np.log(rng.lognormal(3.1, 0.5, 800))
    ranks = [1, 280_000, 280_001, 12_345, 559_999, 560_000]

    first = st.difference_order_statistics(x, y, ranks, exact_pairs=0)
    second = st.difference_order_statistics(x, y, ranks, exact_pairs=0)

    assert first == second == exact_order_statistics(x, y, ranks)


def test_hodges_lehmann_fast_path_equals_the_exact_path() -> None:
    # 800 x 700 = 560,000 pairs: above EXACT_PAIRS, so hodges_lehmann searches; the same
    # figures come from sorting every difference.
    rng = np.random.default_rng(4)
    x, y = np.log(rng.lognormal(0, 0.5, 800)), np.log(rng.lognormal(0.05, 0.5, 700))
    alphas = [0.00025, 0.009, 0.01]

    result = st.hodges_lehmann(x, y, alphas)

    differences = np.sort((y[None, :] - x[:, None]).ravel())
    assert result.shift == pytest.approx((differences[279_999] + differences[280_000]) / 2, abs=0)
    test = st.mann_whitney(x, y)
    for alpha in alphas:
        k = st.confidence_rank(800, 700, alpha, sd=test.sd)
        assert result.bounds(alpha) == (differences[k - 1], differences[560_000 - k])


# --------------------------------------------------------------------------- Fisher and rates


def brute_fisher(events_x: int, trials_x: int, events_y: int, trials_y: int) -> tuple[Fraction, Fraction]:
    total, events = trials_x + trials_y, events_x + events_y

    def pmf(k: int) -> Fraction:
        return Fraction(math.comb(events, k) * math.comb(total - events, trials_y - k), math.comb(total, trials_y))

    support = range(max(0, trials_y - (total - events)), min(events, trials_y) + 1)
    return sum((pmf(k) for k in support if k >= events_y), Fraction(0)), sum((pmf(k) for k in support if k <= events_y), Fraction(0))


def test_fisher_lady_tasting_tea() -> None:
    # Fisher's own example: 3 of 4 cups right; one-sided p = 17/70.
    result = st.fisher_exact(1, 4, 3, 4)

    assert result.p_greater == pytest.approx(17 / 70, rel=1e-12)
    assert result.p_less == pytest.approx(69 / 70, rel=1e-12)


@pytest.mark.parametrize(
    "table",
    [(0, 10, 0, 10), (0, 50, 3, 40), (5, 100, 5, 100), (10, 2000, 40, 2000), (7, 30, 0, 25), (30, 30, 12, 30), (0, 1, 1, 1), (2, 9, 9, 9)],
)
def test_fisher_equals_exact_sums_of_binomial_coefficients(table: tuple[int, int, int, int]) -> None:
    greater, less = brute_fisher(*table)

    result = st.fisher_exact(*table)

    assert result.p_greater == pytest.approx(float(greater), rel=1e-10, abs=1e-300)
    assert result.p_less == pytest.approx(float(less), rel=1e-10, abs=1e-300)


def test_fisher_stays_exact_with_millions_of_trials() -> None:
    # 5,000 vs 5,400 errors in 1,000,000 requests each: the reference sums the hypergeometric
    # tail term by term from lgamma in plain Python (a different formula from the recursion).
    ex, tx, ey, ty = 5_000, 1_000_000, 5_400, 1_000_000
    n_total, k_total = tx + ty, ex + ey

    def log_pmf(k: int) -> float:
        def log_comb(a: int, b: int) -> float:
            return math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)

        return log_comb(k_total, k) + log_comb(n_total - k_total, ty - k) - log_comb(n_total, ty)

    reference = math.fsum(math.exp(log_pmf(k)) for k in range(ey, k_total + 1))

    result = st.fisher_exact(ex, tx, ey, ty)

    assert result.p_greater == pytest.approx(reference, rel=1e-7)
    assert 1e-5 < result.p_greater < 1e-2  # a real but modest difference, not 0 or 1 by rounding


def test_fisher_refuses_impossible_counts() -> None:
    with pytest.raises(ValueError, match="impossible"):
        st.fisher_exact(5, 4, 0, 10)


def test_risk_ratio_with_haldane_correction_and_katz_interval_by_hand() -> None:
    # 10/2000 -> 40/2000 with +0.5 in every cell: (40.5/2001) / (10.5/2001) = 3.857;
    # se = sqrt(1/40.5 - 1/2001 + 1/10.5 - 1/2001) = 0.34369.
    result = st.risk_ratio(10, 2000, 40, 2000, 0.025)
    se = math.sqrt(1 / 40.5 - 1 / 2001 + 1 / 10.5 - 1 / 2001)

    assert result.ratio == pytest.approx(40.5 / 10.5)
    assert result.lower == pytest.approx(40.5 / 10.5 * math.exp(-1.959964 * se), rel=1e-6)
    assert result.upper == pytest.approx(40.5 / 10.5 * math.exp(1.959964 * se), rel=1e-6)


def test_risk_ratio_is_finite_with_no_events_at_all() -> None:
    result = st.risk_ratio(0, 500, 0, 800, 0.01)

    assert result.ratio == pytest.approx((0.5 / 801) / (0.5 / 501))
    assert 0 < result.lower < 1 < result.upper < math.inf


# --------------------------------------------------------------------------- percentiles


@settings(max_examples=50, deadline=None)
@given(hs.lists(hs.floats(0.001, 1e6), min_size=1, max_size=200), hs.sampled_from([1, 50, 95, 99, 99.9, 100]))
def test_percentile_is_nearest_rank_as_in_releasegate_stats(values: list[float], p: float) -> None:
    assert st.percentile(np.sort(np.array(values)), p) == release_stats.percentile(values, p)
