"""The hostile-target suite's harness: run the real gate against a misbehaving server, and judge how it failed.

Every case runs ``python -m releasegate run`` in its own process (as a user would), so the case
measures what the user meets: wall time to the verdict, the gate process's peak memory (VmHWM,
sampled every 50 ms while it runs), the exit code and verdict.json. :func:`assert_fails_closed`
is the rule every case obeys (issue 9):

- the run ends within its deadline (plus a small grace for starting Python and writing reports);
- memory stays bounded (:data:`MAX_RSS_MB`: bodies and frames are read up to a cap);
- the affected checks are ``error`` (or ``failed``) with a clear one-line cause;
- the decision is hold or rollback, never pass or promote, and the exit code matches it.

Each case also records its row of the table in docs/hostile.md (:func:`record_row`): with
``RELEASEGATE_WRITE_HOSTILE_TABLE=1`` the rows are written to ``tests/hostile/rows/`` and
``python tests/hostile/table.py`` assembles the document; otherwise the case checks that the
document's row says what the case just saw (outcome, decision, exit code), so the table cannot
drift from the code. Times are measured figures and are not compared.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "hostile.md"
ROWS = Path(__file__).resolve().parent / "rows"
WRITE_ENV = "RELEASEGATE_WRITE_HOSTILE_TABLE"

# Peak resident memory of one gate process. A gate run (pytest, httpx, sslyze imported) is ~75-100
# MB; a body or frame read without a cap would be hundreds of MB more.
MAX_RSS_MB = 400.0
# Starting Python and pytest, collecting the suite, writing the reports: what a run may take
# beyond its deadline (the plugin's own hard stop is one probe timeout past it).
GRACE_S = 20.0
# Exit codes of the contract (docs/contract.md): 0 pass/promote, 1 rollback, 2 hold, 3 configuration.
DECISION_EXIT = {"pass": 0, "promote": 0, "rollback": 1, "hold": 2}


@dataclass(frozen=True)
class GateResult:
    """What one gate process did."""

    exit_code: int
    seconds: float
    peak_rss_mb: float
    verdict: dict[str, Any] | None
    stdout: str
    stderr: str
    report_dir: Path

    def check(self, check_id: str) -> dict[str, Any]:
        assert self.verdict is not None, f"no verdict.json (exit {self.exit_code}); stderr:\n{self.stderr[-3000:]}"
        for row in self.verdict["checks"]:
            if row["id"] == check_id:
                return dict(row)
        raise AssertionError(f"{check_id} not in the verdict: {[row['id'] for row in self.verdict['checks']]}")


def write_files(folder: Path, target: str, gates: str) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    target_path, gates_path = folder / "target.yaml", folder / "gates.yaml"
    target_path.write_text(target, encoding="utf-8")
    gates_path.write_text(gates, encoding="utf-8")
    return target_path, gates_path


def run_gate(
    folder: Path,
    *,
    target: str,
    gates: str,
    stage: str,
    only: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    kill_after_s: float = 300.0,
    send_signal_after_s: tuple[signal.Signals, float] | None = None,
) -> GateResult:
    """Run the gate in a child process on ``target``/``gates``; never waits more than ``kill_after_s``.

    ``send_signal_after_s``: (signal, seconds) delivers that signal to the run once, mid-way.
    """
    target_path, gates_path = write_files(folder, target, gates)
    report_dir = folder / "report"
    argv = [sys.executable, "-m", "releasegate", "run", "--stage", stage, "--target", str(target_path), "--gates", str(gates_path)]
    argv += ["--report-dir", str(report_dir), *(f"--only={prefix}" for prefix in only), *extra_args]
    child_env = {**os.environ, **(env or {})}
    started = time.monotonic()
    out_path, err_path = folder / "stdout.txt", folder / "stderr.txt"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = subprocess.Popen(argv, stdout=out, stderr=err, env=child_env, cwd=REPO, start_new_session=True)
        signalled = False
        status, peak_kb = 0, 0
        while True:
            peak_kb = max(peak_kb, _high_water_kb(process.pid))
            pid, status, _ = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            elapsed = time.monotonic() - started
            if send_signal_after_s and not signalled and elapsed >= send_signal_after_s[1]:
                process.send_signal(send_signal_after_s[0])
                signalled = True
            if elapsed > kill_after_s:
                os.killpg(process.pid, signal.SIGKILL)
                os.wait4(process.pid, 0)
                raise AssertionError(f"the gate was still running after {kill_after_s:g} s: it hangs")
            time.sleep(0.05)
        process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - started
    verdict_path = report_dir / "verdict.json"
    verdict = json.loads(verdict_path.read_text(encoding="utf-8")) if verdict_path.exists() else None
    return GateResult(
        exit_code=process.returncode,
        seconds=seconds,
        peak_rss_mb=peak_kb / 1024,
        verdict=verdict,
        stdout=out_path.read_text(encoding="utf-8", errors="replace"),
        stderr=err_path.read_text(encoding="utf-8", errors="replace"),
        report_dir=report_dir,
    )


def _high_water_kb(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM, kB), 0 once it is gone.

    Not ``ru_maxrss`` from wait4: that counts the forked copy of this (large) test process
    before the exec, so it would measure the test, not the gate. VmHWM starts again at exec.
    """
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def assert_fails_closed(
    result: GateResult,
    *,
    affected: Iterable[str],
    deadline_s: float,
    outcomes: Sequence[str] = ("error",),
    cause: str | re.Pattern[str] | None = None,
) -> None:
    """The rule of every hostile case: bounded in time and memory, affected checks not passed, never promote."""
    assert result.seconds <= deadline_s + GRACE_S, f"took {result.seconds:.1f} s, deadline {deadline_s:g} s"
    assert result.peak_rss_mb <= MAX_RSS_MB, f"peak memory {result.peak_rss_mb:.0f} MB > {MAX_RSS_MB:g} MB"
    assert "Traceback (most recent call last)" not in result.stdout + result.stderr, result.stderr[-3000:]
    assert result.verdict is not None, f"no verdict.json (exit {result.exit_code}); stderr:\n{result.stderr[-3000:]}"
    decision = result.verdict["decision"]
    assert decision in ("hold", "rollback"), f"decision {decision}: {result.verdict['reasons']}"
    assert result.exit_code == DECISION_EXIT[decision] == result.verdict["exit_code"]
    for check_id in affected:
        row = result.check(check_id)
        assert row["outcome"] in outcomes, f"{check_id}: {row['outcome']}: {row['summary']}"
        summary = row["summary"]
        assert summary and "\n" not in summary and len(summary) <= 400, f"{check_id}: not a clear one-line cause: {summary!r}"
        if cause is not None:
            assert re.search(cause, summary), f"{check_id}: {summary!r} does not say {cause!r}"


# --------------------------------------------------------------------------- the table in docs/hostile.md


@dataclass(frozen=True)
class Row:
    """One line of docs/hostile.md: a case and what the gate made of it."""

    family: str  # HTTP | TLS | WebSocket | Prometheus | signals
    case: str  # the misbehaviour, in a few words
    checks: str  # the affected checks, comma-separated
    outcome: str  # e.g. "error: read timeout (5 s)"; the cause in a few words
    decision: str
    exit_code: int
    seconds: float = field(compare=False)  # time to verdict, measured
    peak_rss_mb: float = field(compare=False)

    @property
    def key(self) -> str:
        return f"{self.family}: {self.case}"


def record_row(family: str, case: str, result: GateResult, *, checks: Iterable[str], outcome: str) -> Row:
    """This case's row: written under RELEASEGATE_WRITE_HOSTILE_TABLE=1, else checked against docs/hostile.md."""
    assert result.verdict is not None
    row = Row(
        family, case, ", ".join(checks), outcome, result.verdict["decision"], result.exit_code, round(result.seconds, 1),
        round(result.peak_rss_mb),
    )  # fmt: skip
    if os.environ.get(WRITE_ENV) == "1":
        ROWS.mkdir(exist_ok=True)
        name = re.sub(r"[^a-z0-9]+", "-", row.key.lower()).strip("-")
        (ROWS / f"{name}.json").write_text(json.dumps(asdict(row), indent=1) + "\n", encoding="utf-8")
        return row
    documented = documented_rows().get(row.key)
    assert documented is not None, f"docs/hostile.md has no row for {row.key!r}: regenerate it (tests/hostile/table.py)"
    assert documented == row, f"docs/hostile.md says {documented}, the gate did {row}: regenerate it (tests/hostile/table.py)"
    return row


HEADER = "| family | case | checks | outcome | decision | exit | time to verdict (s) | peak memory (MB) |"


def documented_rows() -> dict[str, Row]:
    """The rows of the table in docs/hostile.md, by family and case."""
    rows: dict[str, Row] = {}
    if not DOC.exists():
        return rows
    lines = DOC.read_text(encoding="utf-8").splitlines()
    if HEADER not in lines:
        return rows
    for line in lines[lines.index(HEADER) + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip().replace("\\|", "|") for cell in line.strip("|").split(" | ")]
        family, case, checks, outcome, decision, code, seconds, rss = cells
        row = Row(family, case, checks.replace("`", ""), outcome, decision, int(code), float(seconds), float(rss))
        rows[row.key] = row
    return rows


def render_row(row: Row) -> str:
    checks = ", ".join(f"`{c}`" for c in row.checks.split(", ")) if row.checks else ""
    cells = [row.family, row.case, checks, row.outcome, row.decision, str(row.exit_code), f"{row.seconds:.1f}", f"{row.peak_rss_mb:.0f}"]
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"
