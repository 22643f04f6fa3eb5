"""Charts of a canary run: per latency metric, both sides' distributions in one PNG.

Each chart is the empirical CDF of the baseline's and the canary's values on a log x axis (the
judge compares them on the ratio scale, so equal ratios look equally far apart), with each side's
median and p95 marked and n in the legend; the title carries the judgement (state, ratio and its
interval). matplotlib's Agg backend through its object API (no pyplot state, no display), as the
load stage's latency.png. Only metric names and numbers go into a picture.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from releasegate.canary.model import LatencySamples, LookJudgement, MetricJudgement, MetricSamples
from releasegate.stats import percentile

__all__ = ["draw_latencies", "latency_png", "plot_path"]

# Beyond this many values a side is drawn from its quantiles: the curve looks the same and a
# 100k-sample run still draws in a moment.
MAX_POINTS = 2000
_COLORS = {"baseline": "tab:blue", "canary": "tab:orange"}


def plot_path(folder: Path, name: str) -> Path:
    """Where the chart of metric ``name`` goes: ``canary-<name>.png`` (names are [a-z0-9_] already)."""
    return folder / f"canary-{re.sub(r'[^a-z0-9_]', '_', name)}.png"


def draw_latencies(samples: Mapping[str, MetricSamples], look: LookJudgement | None, folder: Path) -> dict[str, Path]:
    """A PNG per latency metric that has values on at least one side; metric name -> path."""
    judged = {j.name: j for j in look.metrics} if look is not None else {}
    drawn: dict[str, Path] = {}
    for name, metric in samples.items():
        if not isinstance(metric.baseline, LatencySamples) or not isinstance(metric.canary, LatencySamples):
            continue
        if not _usable(metric.baseline).size and not _usable(metric.canary).size:
            continue
        path = plot_path(folder, name)
        latency_png(metric, judged.get(name), path)
        drawn[name] = path
    return drawn


def latency_png(samples: MetricSamples, judgement: MetricJudgement | None, path: Path) -> None:
    """Both sides' ECDFs of one latency metric, medians and p95s marked, into ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator

    figure = Figure(figsize=(9, 5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    for side, values in (("baseline", samples.baseline), ("canary", samples.canary)):
        assert isinstance(values, LatencySamples)
        usable = _usable(values)
        if not usable.size:
            continue
        xs, ys = _ecdf(usable)
        color = _COLORS[side]
        median, p95 = percentile(usable.tolist(), 50), percentile(usable.tolist(), 95)
        axes.step(xs, ys, where="post", color=color, label=f"{side}: n {usable.size}, median {median:.3g}, p95 {p95:.3g}")
        axes.axvline(median, color=color, linestyle="--", linewidth=1)
        axes.axvline(p95, color=color, linestyle=":", linewidth=1)
    axes.set_xscale("log")
    # Plain numbers (2, 5, 10, 20 ms), not 2x10^0: people read milliseconds.
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    axes.xaxis.set_major_formatter(plain)
    axes.xaxis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))
    axes.xaxis.set_minor_formatter(plain)
    axes.set_ylim(0, 1.02)
    axes.set_xlabel(f"{samples.name} (ms, log scale)  -- dashed: median, dotted: p95")
    axes.set_ylabel("share of samples at or below")
    axes.set_title(_title(samples.name, judgement))
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)


def _usable(side: LatencySamples) -> np.ndarray:
    values = np.asarray(side.values, dtype=np.float64)
    return np.sort(values[np.isfinite(values) & (values > 0)])


def _ecdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted values and the share at or below each; thinned to quantiles past MAX_POINTS."""
    n = values.size
    if n <= MAX_POINTS:
        return values, np.arange(1, n + 1) / n
    probabilities = np.linspace(0.0, 1.0, MAX_POINTS)
    return np.quantile(values, probabilities), probabilities


def _title(name: str, j: MetricJudgement | None) -> str:
    if j is None:
        return name
    if j.ratio is None or j.ci is None or not math.isfinite(j.ratio):
        return f"{name}: {j.state} (n {j.n_baseline}/{j.n_canary})"
    conf = f"{j.confidence:.0%} " if j.confidence is not None else ""
    return f"{name}: {j.state}, ratio canary/baseline {j.ratio:.3g} ({conf}CI {j.ci[0]:.3g}-{j.ci[1]:.3g}), allowed {j.allowed:g}"
