"""Latency statistics from raw samples: pure functions, no I/O.

Percentiles are computed from the samples themselves (nearest rank), never from histogram
buckets, so a +100 ms shift shows as +100 ms and not as "moved to the next bucket". A lost
sample (an event that never arrived, a request that timed out) is ``math.inf``: it pushes the
upper percentiles up instead of silently vanishing from the population (survivorship bias).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

PERCENTILES = (50, 95, 99)


def percentile(samples: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (the smallest sample with at least p % of samples at or below it).

    Nearest rank returns a value that was actually observed, never an interpolation between two
    samples; with ``inf`` samples the result is ``inf`` once p reaches them.
    """
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p}")
    ordered = sorted(samples)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class LatencySummary:
    """p50/p95/p99/max/min/mean of one set of samples in milliseconds; ``lost`` of them are inf."""

    samples: int
    lost: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    min_ms: float
    mean_ms: float  # of the samples that arrived

    def value(self, name: str) -> float:
        """One statistic by its policy name: p50_ms, p95_ms, p99_ms or max_ms."""
        return float(getattr(self, name))

    def evidence(self) -> dict[str, Any]:
        """JSON-safe: inf (lost) is written as null, with the count of lost samples beside it."""
        return {
            "samples": self.samples,
            "lost": self.lost,
            **{name: _ms(getattr(self, name)) for name in ("p50_ms", "p95_ms", "p99_ms", "max_ms", "min_ms", "mean_ms")},
        }


def summarize(samples_ms: Sequence[float]) -> LatencySummary:
    """Summary of latency samples in ms (``inf`` = lost). ValueError for an empty sequence."""
    if not samples_ms:
        raise ValueError("no samples to summarize")
    arrived = [s for s in samples_ms if math.isfinite(s)]
    return LatencySummary(
        samples=len(samples_ms),
        lost=len(samples_ms) - len(arrived),
        p50_ms=percentile(samples_ms, 50),
        p95_ms=percentile(samples_ms, 95),
        p99_ms=percentile(samples_ms, 99),
        max_ms=max(samples_ms),
        min_ms=min(samples_ms),
        mean_ms=sum(arrived) / len(arrived) if arrived else math.inf,
    )


def over_budget(summary: LatencySummary, budgets: dict[str, float | None]) -> dict[str, str]:
    """Each statistic over its budget (name -> "observed > budget"); budgets of None are not judged."""
    problems: dict[str, str] = {}
    for name, budget in budgets.items():
        if budget is None:
            continue
        observed = summary.value(name)
        if observed > budget:
            problems[name] = f"{format_ms(observed)} > {format_ms(budget)}"
    return problems


def format_ms(value: float) -> str:
    return "lost (never arrived)" if math.isinf(value) else f"{value:.1f} ms"


def _ms(value: float) -> float | None:
    return None if math.isinf(value) else round(value, 2)
