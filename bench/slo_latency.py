"""Benchmark: does slo.latency measure latency truly? The +100 ms shift, and the reference's own figures.

Starts three reference deployments on loopback (healthy, slow-api at +100 ms, slow-api at its
default +300 ms) and measures with the SLO probe itself (``releasegate.probes.slo``):

1. **The shift.** Healthy and slow-api(+100 ms) probed in one window, requests alternating (both
   see the same machine load), ``--repetitions`` times ``--requests`` requests each. The p50
   shift should be 100 ms; the figure is its mean and spread. Beside it, what a Prometheus
   ``histogram_quantile`` over the reference's buckets would have reported for the same samples:
   why the checks judge raw samples, not buckets.
2. **The demo plan.** The demo target's probe plan (40 requests over 2 s, as in
   ``demo.BUSINESS_SECTIONS``) against healthy and against slow-api(+300 ms), ``--demo-runs``
   times: the p50/p95 a gate sees, which is what a p95 budget for the reference must separate.

It writes its section into bench/RESULTS.md between markers (``results_file.py``), replacing an
earlier one and keeping the rest of the file; ``make bench`` (``bench/run_all.py``) runs every benchmark.

Run: ``.venv/bin/python bench/slo_latency.py [--repetitions 5] [--requests 200]`` or ``make bench``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from results_file import Stamp, markers, write_section  # bench/ is on sys.path: the scripts run as files

from releasegate.config import SloProbeSettings
from releasegate.probes.http import HttpSettings, ssl_context
from releasegate.probes.slo import Endpoint, SloObservation, probe
from releasegate.reference import server
from releasegate.reference.demo import login
from releasegate.reference.metrics import _LATENCY_BUCKETS
from releasegate.reference.settings import ServiceSettings

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO / "bench" / "RESULTS.md"
BEGIN, END = markers("slo_latency.py")
PATHS = ["/api/v1/me", "/api/v1/conversations"]
SHIFT_MS = 100
# Per deployment; the reference allows one user 20 requests/s, so this keeps 429s out of the figures.
RATE_PER_S = 15.0
DEMO_PLAN = SloProbeSettings(paths=PATHS, requests=40, window_s=2.0)
TEST_TOLERANCE_MS = (85.0, 140.0)  # tests/slo/test_slo_live.py


@dataclass(frozen=True)
class Figures:
    p50_ms: float
    p95_ms: float
    samples: int
    throttled: int


def figures(observation: SloObservation) -> Figures:
    summary = observation.latency()
    if summary is None or observation.unmeasurable():
        raise RuntimeError(f"{observation.deployment}: could not measure ({observation.unmeasurable()})")
    return Figures(summary.p50_ms, summary.p95_ms, summary.samples, observation.throttled)


def bucket_quantile(q: float, samples_ms: Sequence[float]) -> float:
    """What Prometheus' histogram_quantile(q, ...) reports for these samples in the reference's buckets (ms)."""
    bounds = [b * 1000 for b in _LATENCY_BUCKETS]
    counts = [sum(1 for s in samples_ms if s <= bound) for bound in bounds]
    rank = q * len(samples_ms)
    lower_bound, lower_count = 0.0, 0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            # Linear interpolation inside the bucket, as Prometheus does.
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / max(count - lower_count, 1)
        lower_bound, lower_count = bound, count
    return math.inf


@contextlib.contextmanager
def deployment(name: str, faults: frozenset[str], slow_api_ms: int, folder: Path) -> Iterator[Endpoint]:
    settings = ServiceSettings(data_dir=folder / name, faults=faults, slow_api_ms=slow_api_ms)
    with server.start(settings) as service:
        username, password = settings.users[0]
        token = login(service.base_url, service.ca_path, username, password)
        http = HttpSettings(timeout_s=5.0, max_body_bytes=1 << 20, verify=ssl_context(service.ca_path))
        yield Endpoint(f"{name} ({service.base_url})", service.base_url, http, token)


def shift_runs(healthy: Endpoint, slow: Endpoint, *, repetitions: int, requests: int) -> list[tuple[Figures, Figures, float, float]]:
    """(healthy, slow, bucket p50 healthy, bucket p50 slow) per repetition, requests alternating."""
    plan = SloProbeSettings(paths=PATHS, requests=requests, window_s=requests / RATE_PER_S)
    runs = []
    for index in range(repetitions):
        fast_obs, slow_obs = probe([healthy, slow], plan)
        fast, slow_figures = figures(fast_obs), figures(slow_obs)
        runs.append((fast, slow_figures, bucket_quantile(0.5, fast_obs.latencies()), bucket_quantile(0.5, slow_obs.latencies())))
        print(
            f"  shift {index + 1}/{repetitions}: p50 {fast.p50_ms:.2f} -> {slow_figures.p50_ms:.2f} ms "
            f"(+{slow_figures.p50_ms - fast.p50_ms:.2f})",
            file=sys.stderr,
            flush=True,
        )
    return runs


def demo_runs(endpoint: Endpoint, runs: int) -> list[Figures]:
    out = []
    for _ in range(runs):
        (observation,) = probe([endpoint], DEMO_PLAN)
        out.append(figures(observation))
    print(f"  demo plan on {endpoint.deployment.split()[0]}: p95 {[round(f.p95_ms, 1) for f in out]}", file=sys.stderr, flush=True)
    return out


def spread(values: Sequence[float]) -> str:
    stdev = statistics.stdev(values) if len(values) > 1 else 0.0
    return (
        f"median {statistics.median(values):.2f} (min {min(values):.2f}, max {max(values):.2f}; "
        f"mean {statistics.mean(values):.2f} ± {stdev:.2f})"
    )


def render(
    shifts: Sequence[tuple[Figures, Figures, float, float]],
    demo: dict[str, list[Figures]],
    *,
    requests: int,
    stamp: Stamp,
) -> str:
    p50_shift = [slow.p50_ms - fast.p50_ms for fast, slow, _, _ in shifts]
    p95_shift = [slow.p95_ms - fast.p95_ms for fast, slow, _, _ in shifts]
    bucket_shift = [slow_b - fast_b for _, _, fast_b, slow_b in shifts]
    error = [s - SHIFT_MS for s in p50_shift]
    out: list[str] = [BEGIN, "", "## SLO latency: is a +100 ms shift measured as +100 ms?", ""]
    w = out.append
    w("Generated by `bench/slo_latency.py` (`make bench`); see bench/README.md.")
    w("")
    out.extend(stamp.table())
    w("")
    w("Goal (issue 5): *latency is measured truly: with slow-api at +100 ms, the reported p50 rises by 100 ms within a")
    w("few ms.* The probe is `releasegate.probes.slo` itself (one keep-alive client per deployment, open loop, raw")
    w(f"samples, nearest-rank percentiles). Healthy and slow-api(+{SHIFT_MS} ms) reference deployments on loopback, probed")
    w(f"in one window with requests alternating; {len(shifts)} repetitions × {requests} requests per deployment")
    w(f"({RATE_PER_S:g} requests/s each, paths {', '.join(PATHS)}).")
    w("")
    w("| repetition | healthy p50 ms | slow-api p50 ms | p50 shift ms | healthy p95 ms | slow-api p95 ms | 429s |")
    w("|---|---|---|---|---|---|---|")
    for index, (fast, slow, _, _) in enumerate(shifts, 1):
        w(
            f"| {index} | {fast.p50_ms:.2f} | {slow.p50_ms:.2f} | **{slow.p50_ms - fast.p50_ms:.2f}** | {fast.p95_ms:.2f} | "
            f"{slow.p95_ms:.2f} | {fast.throttled + slow.throttled} |"
        )
    w("")
    w(f"- **p50 shift: {spread(p50_shift)} ms** over the repetitions (± the sample standard deviation);")
    w(f"  error against the injected {SHIFT_MS} ms: {statistics.mean(error):+.2f} ms on average, at most {max(error, key=abs):+.2f} ms.")
    w(f"- p95 shift: {spread(p95_shift)} ms.")
    w(f"- The same samples through the reference's histogram buckets ({', '.join(f'{b:g}' for b in _LATENCY_BUCKETS)} s) and")
    w(f"  Prometheus-style `histogram_quantile(0.5, ...)` interpolation: p50 shift **{spread(bucket_shift)} ms**. The bucket")
    w("  estimate lands wherever the interpolation puts it inside (0.1 s, 0.25 s]; the raw samples show the real +100 ms.")
    w(f"- The test (`tests/slo/test_slo_live.py`, 60 requests each) accepts {TEST_TOLERANCE_MS[0]:g}..{TEST_TOLERANCE_MS[1]:g} ms:")
    w("  wide for a noisy 2-core CI machine; the figure above is the precise one.")
    w("")
    w(f"### The demo's probe plan ({DEMO_PLAN.requests} requests over {DEMO_PLAN.window_s:g} s), {len(demo['healthy'])} runs each")
    w("")
    w("| deployment | p50 ms (median of runs) | p95 ms (median of runs) | p95 ms (worst run) | 429s |")
    w("|---|---|---|---|---|")
    for name, runs in demo.items():
        p50 = statistics.median(f.p50_ms for f in runs)
        p95 = statistics.median(f.p95_ms for f in runs)
        w(f"| {name} | {p50:.2f} | {p95:.2f} | {max(f.p95_ms for f in runs):.2f} | {sum(f.throttled for f in runs)} |")
    w("")
    w("A p95 budget for the reference must sit between the two rows: the shipped 500 ms lets slow-api's +300 ms")
    w("through, 200 ms keeps a wide margin on both sides.")
    w("")
    out.append(END)
    return "\n".join(out) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--repetitions", type=int, default=5, help="interleaved healthy/slow-api windows (default 5)")
    parser.add_argument("--requests", type=int, default=200, help="requests per deployment per window (default 200)")
    parser.add_argument("--demo-runs", type=int, default=5, help="windows of the demo plan per deployment (default 5)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="file to write the section into (default bench/RESULTS.md)")
    args = parser.parse_args(argv)
    if args.repetitions < 1 or args.requests < 10 or args.demo_runs < 1:
        parser.error("--repetitions and --demo-runs must be >= 1, --requests >= 10")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = Stamp.start()
    with tempfile.TemporaryDirectory(prefix="releasegate-bench-slo-") as tmp, contextlib.ExitStack() as stack:
        folder = Path(tmp)
        healthy = stack.enter_context(deployment("healthy", frozenset(), 300, folder))
        slow_100 = stack.enter_context(deployment("slow-api-100", frozenset({"slow-api"}), SHIFT_MS, folder))
        slow_300 = stack.enter_context(deployment("slow-api-300", frozenset({"slow-api"}), 300, folder))
        print(f"shift: {args.repetitions} x {args.requests} requests per deployment", file=sys.stderr, flush=True)
        shifts = shift_runs(healthy, slow_100, repetitions=args.repetitions, requests=args.requests)
        demo = {
            "healthy": demo_runs(healthy, args.demo_runs),
            "slow-api (+300 ms, the fault's default)": demo_runs(slow_300, args.demo_runs),
        }
    section = render(shifts, demo, requests=args.requests, stamp=stamp)
    write_section(args.output, section, BEGIN, END)
    print(section)
    print(f"written to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
