"""``make bench``: every benchmark, one after the other, into a fresh bench/RESULTS.md.

1. Checks that every peer and real component the benchmarks measure is installed (testssl.sh, wrk, strace,
   PostgreSQL's server binaries). A missing one stops the run before anything is measured, with the command that
   installs it (``make bench-deps``): a benchmark never skips its peer quietly.
2. Runs each benchmark (``BENCHMARKS``, in issue order) as a subprocess that writes its section into a new file in a
   temporary folder, under ``RELEASEGATE_REQUIRE_REAL=1`` (a missing component fails instead of skipping).
3. Only when every benchmark succeeded, writes the header (the machine and the dates, once; the peers at a glance, as
   ours / peer ratios) and replaces bench/RESULTS.md. A failure leaves RESULTS.md as it was (no mix of new and stale
   figures), exits non-zero and names the partial file.

Run: ``.venv/bin/python bench/run_all.py`` (``make bench``, about 25 minutes on 2 cores); ``--quick`` runs every
benchmark with small options, a few minutes, into a temporary file (figures too noisy to record); ``--install-deps``
installs the missing peers with apt-get (``make bench-deps``, as root).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from results_file import git_commit, machine, now_utc  # bench/ is on sys.path: the scripts run as files

BENCH = Path(__file__).resolve().parent
DEFAULT_OUTPUT = BENCH / "RESULTS.md"


@dataclass(frozen=True)
class Benchmark:
    script: str
    goal: str  # the issue that asked for it
    quick: tuple[str, ...]  # options of a smoke run
    timeout_s: float  # a bound on one run; the full runs take a fraction of it


BENCHMARKS = (
    Benchmark("security_stage.py", "issue 4", ("--faults", "healthy", "--runs", "2", "--testssl-runs", "1", "--no-egress-check"), 3600),
    Benchmark("slo_latency.py", "issue 5", ("--repetitions", "2", "--requests", "40", "--demo-runs", "2"), 1200),
    Benchmark("load_generator.py", "issue 6", ("--seconds", "2", "--repetitions", "2", "--sessions", "200"), 1800),
    Benchmark("canary_judge.py", "issue 7", ("--quick",), 2400),
    Benchmark("restore_drill.py", "issue 8", ("--messages", "2000", "--runs", "2"), 1200),
)


@dataclass(frozen=True)
class Requirement:
    what: str
    package: str  # Debian package
    needed_by: str

    def installed(self) -> bool:
        if self.package == "postgresql":
            # Debian keeps initdb and pg_ctl off PATH, under /usr/lib/postgresql/<version>/bin (tests/postgres_server.py).
            return shutil.which("initdb") is not None or bool(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        return any(shutil.which(name) for name in self.what.split(" or "))


REQUIREMENTS = (
    Requirement("testssl or testssl.sh", "testssl.sh", "security_stage.py (the peer on the same TLS target)"),
    Requirement("strace", "strace", "security_stage.py (proves testssl.sh stays on loopback)"),
    Requirement("wrk", "wrk", "load_generator.py (the C peer on the same HTTP endpoint)"),
    Requirement("initdb", "postgresql", "restore_drill.py (a throw-away PostgreSQL cluster)"),
)


def missing() -> list[Requirement]:
    return [r for r in REQUIREMENTS if not r.installed()]


def install(requirements: Sequence[Requirement]) -> int:
    packages = sorted({r.package for r in requirements})
    if not packages:
        print("bench-deps: every peer is installed", file=sys.stderr)
        return 0
    command = ["apt-get", "install", "-y", "-qq", *packages]
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(f"bench-deps: as root on Debian, run: apt-get update && {' '.join(command)}", file=sys.stderr)
        return 3
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=environment, timeout=600)
    return subprocess.run(command, check=False, env=environment, timeout=1800).returncode


# --------------------------------------------------------------------------- the header


def peers_table(peers_file: Path) -> list[str]:
    if not peers_file.exists():
        return []
    rows = [json.loads(line) for line in peers_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not rows:
        return []
    out = [
        "## Peers at a glance",
        "",
        "Each peer measured in the same run as ours, against the same target: the ratio of the two medians (a section may "
        "also give the median of its per-repetition ratios, which can differ by a few points).",
        "",
        "| benchmark | measure | ours | peer | peer's figure | **ours / peer** | better | |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ours, peer = float(row["ours"]), float(row["peer"])
        figure = "{:,.0f}" if row["unit"] == "/s" else "{:.2f}"
        out.append(
            f"| {row['benchmark']} | {row['measure']} | {figure.format(ours)} | {row['peer_name']} | {figure.format(peer)} | "
            f"**{ours / peer:.2f}** | {'higher' if row['unit'] == '/s' else 'lower'} | {row['note']} |"
        )
    return [*out, ""]


def header(*, started: str, load_at_start: float, minutes: dict[str, float], peers_file: Path, quick: bool) -> str:
    out = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`bench/run_all.py`: every script in bench/, one after the other) from what they measured; do",
        "not edit by hand: rerun it. See bench/README.md for what each figure means. Each section states its own time and load;",
        "the machine is the same for all of them.",
        "",
    ]
    if quick:
        out += ["**A `--quick` smoke run: too few runs for the figures to mean anything.**", ""]
    rows = [
        ("date (UTC)", f"{started} – {now_utc()} ({sum(minutes.values()):.0f} minutes)"),
        ("git commit", git_commit()),
        *machine(),
        ("load average (1 min)", f"{load_at_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end"),
        ("benchmarks (minutes)", ", ".join(f"{script} {m:.1f}" for script, m in minutes.items())),
    ]
    out += ["| | |", "|---|---|", *(f"| {key} | {value} |" for key, value in rows), ""]
    out += peers_table(peers_file)
    return "\n".join(out)


# --------------------------------------------------------------------------- the run


def run(benchmarks: Sequence[Benchmark], output: Path, *, quick: bool) -> int:
    started, load_at_start = now_utc(), os.getloadavg()[0]
    folder = Path(tempfile.mkdtemp(prefix="releasegate-bench-"))
    partial, peers_file = folder / "RESULTS.md", folder / "peers.jsonl"
    partial.write_text("", encoding="utf-8")
    environment = {**os.environ, "RELEASEGATE_REQUIRE_REAL": "1", "RELEASEGATE_BENCH_PEERS": str(peers_file)}
    minutes: dict[str, float] = {}
    for index, bench in enumerate(benchmarks, 1):
        command = [sys.executable, str(BENCH / bench.script), *(bench.quick if quick else ()), "--output", str(partial)]
        print(
            f"== [{index}/{len(benchmarks)}] {bench.script} ({bench.goal}): {' '.join(command[2:-2]) or 'defaults'}",
            file=sys.stderr,
            flush=True,
        )
        log = folder / f"{bench.script}.log"
        t0 = time.monotonic()
        try:
            with log.open("wb") as out:  # the section the script prints; progress goes to stderr, shown as it comes
                code: int | None = subprocess.run(command, stdout=out, env=environment, timeout=bench.timeout_s, check=False).returncode
        except subprocess.TimeoutExpired:
            code = None
        minutes[bench.script] = (time.monotonic() - t0) / 60
        if code != 0:
            why = f"killed after {bench.timeout_s:.0f} s" if code is None else f"exit {code}"
            print(
                f"\nmake bench: {bench.script} failed ({why}); {output} is unchanged (no stale figures mixed in).\n"
                f"Sections measured so far: {partial}; the script's output: {log}",
                file=sys.stderr,
            )
            return 1
    sections = partial.read_text(encoding="utf-8").strip("\n")
    text = header(started=started, load_at_start=load_at_start, minutes=minutes, peers_file=peers_file, quick=quick)
    output.write_text(text + "\n" + sections + "\n", encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    print(f"make bench: every benchmark ran; written to {output}", file=sys.stderr)
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small options for every benchmark; writes a temporary file unless --output")
    parser.add_argument("--only", nargs="+", choices=[b.script for b in BENCHMARKS], help="run these benchmarks only")
    parser.add_argument("--output", type=Path, help="where to write (default bench/RESULTS.md; with --quick a temporary file)")
    parser.add_argument("--install-deps", action="store_true", help="apt-get install the missing peers (as root), then stop")
    args = parser.parse_args(argv)
    if args.output is None:
        args.output = Path(tempfile.mkdtemp(prefix="releasegate-bench-quick-")) / "RESULTS.md" if args.quick else DEFAULT_OUTPUT
    if args.only and args.output == DEFAULT_OUTPUT:
        parser.error("--only would drop the other sections from bench/RESULTS.md: run that script alone (it keeps them), or pass --output")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.install_deps:
        return install(missing())
    absent = missing()
    if absent:
        print("make bench: the peers and components the benchmarks measure are not all installed; nothing was measured:", file=sys.stderr)
        for r in absent:
            print(f"  - {r.what.split(' or ')[0]} (Debian package {r.package}), for {r.needed_by}", file=sys.stderr)
        packages = " ".join(sorted({r.package for r in absent}))
        print(f"Install them with `make bench-deps` (as root; it runs apt-get install {packages}), then rerun.", file=sys.stderr)
        return 3
    benchmarks = [b for b in BENCHMARKS if not args.only or b.script in args.only]
    return run(benchmarks, args.output, quick=args.quick)


if __name__ == "__main__":
    sys.exit(main())
