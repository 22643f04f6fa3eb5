"""Percentiles from raw samples: observed values, lost samples as infinitely late."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from releasegate.stats import over_budget, percentile, summarize


def test_nearest_rank_returns_an_observed_sample() -> None:
    samples = [float(n) for n in range(1, 101)]  # 1..100 ms

    assert percentile(samples, 50) == 50.0
    assert percentile(samples, 95) == 95.0
    assert percentile(samples, 99) == 99.0
    assert percentile(samples, 100) == 100.0
    assert percentile([7.0], 95) == 7.0


def test_a_shift_of_every_sample_shifts_every_percentile_by_exactly_that() -> None:
    samples = [3.0, 9.5, 4.2, 12.0, 5.1, 6.6, 8.0, 4.9]
    shifted = [s + 100.0 for s in samples]

    before, after = summarize(samples), summarize(shifted)

    for name in ("p50_ms", "p95_ms", "p99_ms", "max_ms"):
        assert after.value(name) - before.value(name) == pytest.approx(100.0)


def test_lost_samples_push_upper_percentiles_to_infinity_instead_of_vanishing() -> None:
    # 94 fast answers and 6 lost: dropping the lost ones would report a p95 of 1 ms.
    samples = [1.0] * 94 + [math.inf] * 6

    summary = summarize(samples)

    assert summary.lost == 6 and summary.samples == 100
    assert summary.p50_ms == 1.0
    assert math.isinf(summary.p95_ms)
    assert summary.evidence()["p95_ms"] is None and summary.evidence()["lost"] == 6
    assert over_budget(summary, {"p95_ms": 250.0, "p50_ms": None}) == {"p95_ms": "lost (never arrived) > 250.0 ms"}


def test_no_samples_is_an_error_not_zero() -> None:
    with pytest.raises(ValueError):
        summarize([])
    with pytest.raises(ValueError):
        percentile([1.0], 0)


@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=200))
def test_percentiles_are_ordered_and_observed(samples: list[float]) -> None:
    summary = summarize(samples)

    assert summary.min_ms <= summary.p50_ms <= summary.p95_ms <= summary.p99_ms <= summary.max_ms
    assert {summary.p50_ms, summary.p95_ms, summary.p99_ms} <= set(samples)
