"""The latency-over-time chart of a load run (PNG, matplotlib's Agg backend: no display needed).

Drawn from the raw samples, one-second buckets: HTTP p50/p95 and sync p95 above, requests and
failures per second below. Failed sync events never arrived; they show as failures, not as a
latency. Only request names and numbers go into the picture, never a URL or a header.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from releasegate.load.results import Sample, is_round_trip, kind_of
from releasegate.stats import percentile


def buckets(samples: Sequence[Sample], started: float) -> dict[int, dict[str, list[float]]]:
    """Second since ``started`` -> series name -> values (latencies in ms; one 1.0 per request/failure)."""
    by_second: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for t, request_type, name, rt, failed in samples:
        second = max(0, int(t - started))
        kind = kind_of(request_type)
        row = by_second[second]
        if kind == "http":
            row["http"].append(rt)
            row["requests"].append(1.0)
        elif kind == "sync" and is_round_trip(name) and not failed:
            row["sync"].append(rt)
        if failed and kind != "arrival":
            row["failures"].append(1.0)
        if kind == "arrival":
            row["dropped"].append(1.0)
    return by_second


def latency_png(samples: Sequence[Sample], started: float, path: Path, *, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = buckets(samples, started)
    seconds = sorted(rows)
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, height_ratios=(2, 1))
    for series, p, style, label in (("http", 50, "-", "HTTP p50"), ("http", 95, "-", "HTTP p95"), ("sync", 95, "--", "sync p95")):
        xs = [s for s in seconds if rows[s].get(series)]
        if xs:
            top.plot(xs, [percentile(rows[s][series], p) for s in xs], style, marker=".", label=label)
    top.set_ylabel("latency (ms)")
    top.set_title(title)
    top.grid(True, alpha=0.3)
    if top.lines:
        top.legend(loc="upper left")
    bottom.bar(seconds, [len(rows[s].get("requests", [])) for s in seconds], width=0.9, label="HTTP requests/s", color="tab:blue")
    bottom.bar(seconds, [len(rows[s].get("failures", [])) for s in seconds], width=0.9, label="failures/s", color="tab:red")
    if any(rows[s].get("dropped") for s in seconds):
        bottom.plot(seconds, [len(rows[s].get("dropped", [])) for s in seconds], "k:", label="dropped iterations/s")
    bottom.set_xlabel("seconds since the start")
    bottom.set_ylabel("per second")
    bottom.grid(True, alpha=0.3)
    bottom.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
