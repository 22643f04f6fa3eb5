"""bench/RESULTS.md is shared: each benchmark owns one section between its begin and end markers.

A benchmark rewrites only its own section, so running one benchmark keeps every other's figures. The header (the
machine, the date of the whole run, the peers at a glance) is written by ``bench/run_all.py`` (``make bench``); each
section states when, at which commit and under what load its own figures were taken (``Stamp``), since a section
can be regenerated alone.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import re
import subprocess
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_HEADER = "# Benchmark results\n\nWritten by the scripts in bench/ (`make bench` runs them all); see bench/README.md.\n"


def markers(script: str) -> tuple[str, str]:
    """The begin and end markers of ``script``'s section (an HTML comment: invisible when rendered)."""
    return f"<!-- {script}: begin -->", f"<!-- {script}: end -->"


def write_section(path: Path, section: str, begin: str, end: str) -> None:
    """Replace the section between ``begin`` and ``end`` in ``path`` (or append it), keeping everything else."""
    text = path.read_text(encoding="utf-8") if path.exists() else DEFAULT_HEADER
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        text = head + section + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------- the peers at a glance


def record_peer(benchmark: str, measure: str, ours: float, peer_name: str, peer: float, *, unit: str, note: str = "") -> None:
    """Note one ours-vs-peer figure for the header's table (only under ``make bench``: RELEASEGATE_BENCH_PEERS names
    the file). ``ours`` and ``peer`` are medians measured in the same run; the ratio is always ours / peer."""
    target = os.environ.get("RELEASEGATE_BENCH_PEERS")
    if not target:
        return
    row = {"benchmark": benchmark, "measure": measure, "ours": ours, "peer_name": peer_name, "peer": peer, "unit": unit, "note": note}
    with Path(target).open("a", encoding="utf-8") as out:
        out.write(json.dumps(row) + "\n")


# --------------------------------------------------------------------------- the machine and the moment


def _cmd(args: list[str]) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=20, cwd=REPO, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def cpus() -> str:
    return f"{len(os.sched_getaffinity(0))} of {os.cpu_count()} · {cpu_model()}"


def git_commit(*, files: bool = True) -> str:
    """The commit, and the tracked files changed on top of it (uncommitted work moves figures too)."""
    commit = _cmd(["git", "rev-parse", "--short=12", "HEAD"]) or "?"
    status = _cmd(["git", "status", "--porcelain", "--untracked-files=no"])
    dirty = [line.split(maxsplit=1)[1] for line in status.splitlines() if line.strip()]
    if dirty:
        shown = f" ({', '.join(dirty[:6])}{', …' if len(dirty) > 6 else ''})" if files else ""
        commit += f" + uncommitted changes to {len(dirty)} tracked files{shown}"
    return commit


def machine() -> list[tuple[str, str]]:
    """What the figures were measured on: stated once, in the header."""
    os_name = platform.platform()
    with contextlib.suppress(OSError):
        pretty = re.search(r'^PRETTY_NAME="?([^"\n]*)', Path("/etc/os-release").read_text(encoding="utf-8"), re.M)
        if pretty:
            os_name = f"{pretty.group(1)} (kernel {platform.release()})"
    versions = []
    for dist in ("releasegate", "sslyze", "pytest", "locust", "numpy"):
        with contextlib.suppress(Exception):
            versions.append(f"{dist} {version(dist)}")
    memory = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text(encoding="utf-8").split("\n", 1)[0].split()[1])
        memory = f"{kib / 1048576:.1f} GiB"
    return [
        ("CPUs (usable of all)", cpus()),
        ("memory", memory),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("OS", os_name),
        ("packages", ", ".join(versions)),
    ]


def now_utc() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M")


@dataclass(frozen=True)
class Stamp:
    """When one benchmark started and under what load: each section states its own date, commit and load."""

    started: str
    started_monotonic: float
    load_at_start: float

    @classmethod
    def start(cls) -> Stamp:
        return cls(now_utc(), time.monotonic(), os.getloadavg()[0])

    def rows(self) -> list[tuple[str, str]]:
        minutes = (time.monotonic() - self.started_monotonic) / 60
        return [
            ("measured (UTC)", f"{self.started} – {now_utc()} ({minutes:.1f} min)"),
            ("git commit", git_commit(files=False)),
            ("CPUs", cpus()),
            ("load average (1 min)", f"{self.load_at_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end (other work adds noise)"),
        ]

    def table(self, extra: list[tuple[str, str]] | None = None) -> list[str]:
        """The stamp as markdown table lines (with ``extra`` rows, e.g. a peer's version)."""
        return ["| | |", "|---|---|", *(f"| {key} | {value} |" for key, value in [*self.rows(), *(extra or [])])]
