"""Benchmark: the pre-deploy security stage against the loopback reference deployment, with testssl.sh as the peer.

For each configuration (healthy, and one TLS/HSTS fault at a time) this starts the reference deployment, times
``releasegate run --stage pre-deploy`` in-process N times, then runs testssl.sh against the same target in the same
process lifetime, and lines up testssl's findings with the verdict of the same configuration. It writes its section
of bench/RESULTS.md (or ``--output``) between markers from the figures it measured, so the text cannot drift from the
code, and keeps the rest of the file.

Run: ``.venv/bin/python bench/security_stage.py [--runs N] [--faults NAME ...]`` or ``make bench``.
Nothing leaves loopback: testssl.sh gets ``--ip 127.0.0.1 --nodns none``, no ``--phone-out`` (no CRL/OCSP fetches),
and ``NXCONNECT=127.0.0.1:0`` (its local-OpenSSL capability probes otherwise resolve the name ``invalid.``);
``--egress-check`` (default on when strace exists) proves it with an extra, untimed, strace'd run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import ipaddress
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from results_file import Stamp, markers, record_peer, write_section  # bench/ is on sys.path: the scripts run as files

from releasegate.cli import main as releasegate_main
from releasegate.reference.demo import running

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO / "bench" / "RESULTS.md"
BEGIN, END = markers("security_stage.py")
CONFIGURATIONS: dict[str, tuple[str, ...]] = {
    "healthy": (),
    "tls-legacy": ("tls-legacy",),
    "tls-weak-ciphers": ("tls-weak-ciphers",),
    "cert-expiring": ("cert-expiring",),
    "no-hsts": ("no-hsts",),
}
GOAL_S = 3.0
GOAL_TEXT = "the whole pre-deploy security stage against a loopback target: at most 3 s wall"
# Quotas the rate-limit checks drained are whole again after ~1 s; the pause keeps runs independent. Untimed.
SETTLE_S = 1.5
TESTSSL_TIMEOUT_S = 300.0
TESTSSL_FLAGS = (
    # protocols, cipher categories, forward secrecy, server defaults + certificate, HTTP headers, vulnerabilities
    ["-p", "-s", "-f", "-S", "-h", "-U"]
    + ["--quiet", "--color", "0", "--warnings", "off", "--nodns", "none", "--ip", "127.0.0.1"]
    + ["--connect-timeout", "5", "--openssl-timeout", "5"]
)
NON_PASS = frozenset({"failed", "warned", "error"})
SEVERITY_RANK = {"OK": 0, "INFO": 0, "LOW": 1, "WARN": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4}
Family = Literal["protocol", "certificate", "hsts", "cipher", "vulnerability", "header", "other"]
# The rule: a finding of these families rated MEDIUM or worse must be a non-pass here too.
RULE_FAMILIES: frozenset[Family] = frozenset({"protocol", "certificate", "hsts"})

# One-line analyses of the disagreements seen so far, keyed by testssl finding id. Shown only when that disagreement
# actually occurs in a run; an unexplained one says so.
ANALYSES: dict[str, str] = {
    "cert_revocation": "testssl wants a CRL or OCSP URI in the leaf; our certificate profile (chain, host, expiry, lifespan) "
    "does not ask for revocation info, and the demo's short-lived private-CA leaf has none: a profile difference.",
    "cert_expirationStatus": "both look at expiry: testssl warns under 30 days, we fail under `cert_min_days` (14) and warn under 30.",
    "cert_notAfter": "same expiry as cert_expirationStatus, reported as the date.",
    "BREACH": "HTTP compression of secrets; no releasegate check covers it (security.headers does not look at Content-Encoding).",
}
REVERSE_ANALYSES: dict[str, str] = {
    "security.tls.protocols": "our profile (TLS >= 1.2) blocks TLS 1.0/1.1; testssl only rates them LOW (deprecated).",
    "security.hsts": "missing/short HSTS blocks here (issue 4); testssl rates a missing HSTS header LOW.",
    "security.tls.ciphers": "we judge suites against Mozilla intermediate; testssl rates CBC suites LOW (cipherlist_AVERAGE / LUCKY13).",
    "security.tls.certificate": "our certificate rule is stricter than testssl's rating for this configuration.",
}


# ---------------------------------------------------------------------------------------------------------------
# data


@dataclass(frozen=True)
class StageRun:
    wall_s: float
    exit_code: int
    decision: str
    checks: dict[str, tuple[str, float]]  # id -> (outcome, duration_s)
    waits: dict[str, float]  # id -> seconds a rate-limit check slept for quotas to refill (evidence "waited")
    errors: dict[str, str]  # id -> summary, for checks that could not judge (outcome error)


@dataclass(frozen=True)
class Finding:
    section: str
    id: str
    severity: str
    finding: str

    @property
    def base_id(self) -> str:
        """The id without testssl's per-certificate suffix (``cert_revocation <cert#2>``)."""
        return self.id.split(" <", 1)[0]


@dataclass(frozen=True)
class TestsslRun:
    wall_s: float
    exit_code: int | None  # None: killed at the timeout
    findings: tuple[Finding, ...]
    version: str
    problem: str | None = None


@dataclass(frozen=True)
class EgressCheck:
    destinations: dict[str, int]  # address -> number of connect()/sendto() calls
    outside_loopback: tuple[str, ...]
    problem: str | None = None


@dataclass
class ConfigResult:
    name: str
    faults: tuple[str, ...]
    runs: list[StageRun] = field(default_factory=list)
    testssl: list[TestsslRun] = field(default_factory=list)

    @property
    def walls(self) -> list[float]:
        return [run.wall_s for run in self.runs]

    def outcome(self, check_id: str) -> str:
        """The outcome of ``check_id`` over the runs: the one outcome, or ``mixed(a×n, ...)``."""
        counts = Counter(run.checks[check_id][0] for run in self.runs if check_id in run.checks)
        if not counts:
            return "absent"
        if len(counts) == 1:
            return next(iter(counts))
        return "mixed(" + ", ".join(f"{o}×{n}" for o, n in counts.most_common()) + ")"

    def wait_medians(self) -> dict[str, float]:
        ids = {check_id for run in self.runs for check_id in run.waits}
        return {i: statistics.median(run.waits.get(i, 0.0) for run in self.runs) for i in ids}

    def check_medians(self) -> dict[str, float]:
        ids = {check_id for run in self.runs for check_id in run.checks}
        return {i: statistics.median(run.checks[i][1] for run in self.runs if i in run.checks) for i in ids}


# ---------------------------------------------------------------------------------------------------------------
# measuring releasegate


def time_stage(target: Path, gates: Path) -> StageRun:
    """One in-process ``releasegate run --stage pre-deploy``; the terminal output goes to a buffer."""
    with tempfile.TemporaryDirectory(prefix="rg-bench-") as report_dir:
        argv = ["run", "--stage", "pre-deploy", "--target", str(target), "--gates", str(gates), "--report-dir", report_dir]
        sink = io.StringIO()
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            started = time.perf_counter()
            code = releasegate_main(argv)
            wall = time.perf_counter() - started
        verdict_path = Path(report_dir) / "verdict.json"
        if not verdict_path.exists():
            raise RuntimeError(f"no verdict.json (exit {code}); output:\n{sink.getvalue()[-3000:]}")
        verdict = json.loads(verdict_path.read_text(encoding="utf-8"))
    checks = {c["id"]: (str(c["outcome"]), float(c["duration_s"] or 0.0)) for c in verdict["checks"]}
    waits = {c["id"]: slept for c in verdict["checks"] if (slept := _slept(c.get("evidence"))) is not None}
    errors = {c["id"]: str(c.get("summary", "")) for c in verdict["checks"] if c["outcome"] == "error"}
    return StageRun(wall_s=wall, exit_code=code, decision=str(verdict["decision"]), checks=checks, waits=waits, errors=errors)


def _slept(evidence: Any) -> float | None:
    """The ``waited.slept_s`` a rate-limit check puts in its evidence, wherever it is nested; None if absent."""
    if isinstance(evidence, dict):
        waited = evidence.get("waited")
        if isinstance(waited, dict) and isinstance(waited.get("slept_s"), int | float):
            return float(waited["slept_s"])
        values: Iterable[Any] = evidence.values()
    elif isinstance(evidence, list):
        values = evidence
    else:
        return None
    found = [s for s in (_slept(v) for v in values) if s is not None]
    return sum(found) if found else None


# ---------------------------------------------------------------------------------------------------------------
# measuring testssl.sh


def testssl_binary() -> str | None:
    return shutil.which("testssl") or shutil.which("testssl.sh")


def testssl_env() -> dict[str, str]:
    # testssl probes its local OpenSSL with `s_client -connect invalid.`: DNS queries to the resolver. Point them at
    # a closed loopback port instead (the same workaround testssl applies on WSL).
    return {**os.environ, "NXCONNECT": "127.0.0.1:0"}


def run_bounded(cmd: Sequence[str], *, log: Path, timeout_s: float, env: dict[str, str]) -> int | None:
    """Run ``cmd`` in its own process group, output to ``log``; kill the whole group at the timeout (None)."""
    with log.open("wb") as out:
        # cwd: testssl may write there, and reports the git commit of its cwd in its version.
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=log.parent, start_new_session=True
        )
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            # testssl forks openssl and bash helpers: end the group, not just the shell.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return None


def testssl_command(binary: str, base_url: str, ca_path: Path, json_path: Path) -> list[str]:
    host_port = base_url.removeprefix("https://").rstrip("/")
    return [binary, *TESTSSL_FLAGS, "--add-ca", str(ca_path), "--jsonfile-pretty", str(json_path), host_port]


def parse_testssl(document: dict[str, Any]) -> tuple[tuple[Finding, ...], str]:
    findings: list[Finding] = []
    for result in document.get("scanResult", []):
        for section, entries in result.items():
            if section in {"pretest", "cipherTests", "browserSimulations"} or not isinstance(entries, list):
                continue
            for entry in entries:
                if isinstance(entry, dict) and "id" in entry:
                    findings.append(Finding(section, str(entry["id"]), str(entry.get("severity", "")), str(entry.get("finding", ""))))
    # "version" is "3.0.8 <git commit of the cwd> from <date>": keep the release only.
    release = (str(document.get("version", "?")).split() or ["?"])[0]
    version = f"testssl.sh {release} with {str(document.get('openssl', '?')).strip()}"
    return tuple(findings), version


def time_testssl(binary: str, base_url: str, ca_path: Path, *, timeout_s: float) -> TestsslRun:
    with tempfile.TemporaryDirectory(prefix="rg-bench-testssl-") as tmp:
        json_path, log = Path(tmp) / "testssl.json", Path(tmp) / "testssl.log"
        started = time.perf_counter()
        code = run_bounded(testssl_command(binary, base_url, ca_path, json_path), log=log, timeout_s=timeout_s, env=testssl_env())
        wall = time.perf_counter() - started
        if code is None:
            return TestsslRun(wall, None, (), "?", f"killed after {timeout_s:.0f} s")
        try:
            findings, version = parse_testssl(json.loads(json_path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            tail = log.read_text(encoding="utf-8", errors="replace")[-500:]
            return TestsslRun(wall, code, (), "?", f"no readable JSON ({exc}); log tail: {tail!r}")
    return TestsslRun(wall, code, findings, version)


_ADDRESS = re.compile(r'inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)"')


def egress_check(binary: str, base_url: str, ca_path: Path, *, timeout_s: float) -> EgressCheck:
    """An extra, untimed testssl run under strace: every address it connect()s or sends to must be loopback."""
    strace = shutil.which("strace")
    if strace is None:
        return EgressCheck({}, (), "strace not installed (apt-get install strace): egress not verified")
    with tempfile.TemporaryDirectory(prefix="rg-bench-egress-") as tmp:
        trace = Path(tmp) / "strace.txt"
        cmd = [strace, "-f", "-qq", "-e", "trace=connect,sendto,sendmsg,sendmmsg", "-o", str(trace)]
        cmd += testssl_command(binary, base_url, ca_path, Path(tmp) / "testssl.json")
        code = run_bounded(cmd, log=Path(tmp) / "log", timeout_s=timeout_s, env=testssl_env())
        if code is None:
            return EgressCheck({}, (), f"strace'd testssl killed after {timeout_s:.0f} s")
        destinations: Counter[str] = Counter()
        for line in trace.read_text(encoding="utf-8", errors="replace").splitlines():
            for v4, v6 in _ADDRESS.findall(line):
                destinations[v4 or v6] += 1
    if not destinations:
        return EgressCheck({}, (), "strace saw no inet connect(): cannot verify (strace not permitted?)")
    outside = tuple(sorted(a for a in destinations if not ipaddress.ip_address(a).is_loopback))
    return EgressCheck(dict(destinations), outside)


# ---------------------------------------------------------------------------------------------------------------
# comparing findings


def family_of(finding: Finding) -> tuple[Family, str | None]:
    """The finding's family and the releasegate check that judges the same thing (None: no check does)."""
    section, fid = finding.section, finding.base_id
    if section == "protocols":
        if fid in {"SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3"}:
            return "protocol", "security.tls.protocols"
        return "other", None  # NPN, ALPN
    if section in {"ciphers", "pfs", "serverPreferences"}:
        return "cipher", "security.tls.ciphers"
    if section == "serverDefaults":
        certificate_ids = ("cert", "intermediate_cert", "chain_of_trust", "OCSP_", "DNS_CAArecord", "certificate_transparency")
        if fid.startswith(certificate_ids):
            return "certificate", "security.tls.certificate"
        return "other", None  # session tickets, extensions, clock skew
    if section == "headerResponse":
        if fid.startswith("HSTS"):
            return "hsts", "security.hsts"
        if fid.startswith("cookie"):
            return "header", "security.cookies"
        return "header", "security.headers"
    if section == "vulnerabilities":
        if fid == "BREACH":
            return "vulnerability", None
        return "vulnerability", "security.tls.ciphers"
    return "other", None


@dataclass(frozen=True)
class Row:
    finding: Finding
    family: Family
    check: str | None
    outcome: str
    agree: str  # yes | no | n/a
    rule: bool  # MEDIUM+ in a rule family


def compare(result: ConfigResult, findings: Iterable[Finding], baseline: tuple[ConfigResult, Sequence[Finding]] | None = None) -> list[Row]:
    """Rows for every finding rated LOW or worse (or WARN). ``baseline`` is the healthy configuration: a check
    that fails here for the fault but passed on healthy despite the same finding did not agree with the finding."""
    rows = []
    for finding in findings:
        rank = SEVERITY_RANK.get(finding.severity, 0)
        if rank < 1:
            continue
        family, check = family_of(finding)
        outcome = result.outcome(check) if check else "—"
        if check is None:
            agree = "n/a"
        elif finding.severity == "WARN":
            agree = "n/a (testssl could not test)"
        else:
            agree = "yes" if outcome in NON_PASS else "no"
        if agree == "yes" and check is not None and baseline is not None and baseline[0] is not result:
            healthy, healthy_findings = baseline
            same = any(f.id == finding.id and f.severity == finding.severity for f in healthy_findings)
            if same and healthy.outcome(check) not in NON_PASS:
                agree, outcome = "no", f"{outcome} (for the fault; passed on healthy with the same finding)"
        rows.append(Row(finding, family, check, outcome, agree, rank >= 2 and family in RULE_FAMILIES))
    return sorted(rows, key=lambda r: (-SEVERITY_RANK.get(r.finding.severity, 0), r.finding.section, r.finding.id))


def stricter_here(result: ConfigResult, rows: Sequence[Row]) -> list[tuple[str, str, str]]:
    """Our non-pass TLS/HSTS checks that testssl rated below MEDIUM (check, outcome, testssl's worst rating of it)."""
    out = []
    for check_id in ("security.tls.protocols", "security.tls.ciphers", "security.tls.certificate", "security.hsts"):
        outcome = result.outcome(check_id)
        if outcome not in NON_PASS:
            continue
        ratings = [r.finding.severity for r in rows if r.check == check_id]
        worst = max(ratings, key=lambda s: SEVERITY_RANK.get(s, 0), default="OK/INFO")
        if SEVERITY_RANK.get(worst, 0) < 2:
            out.append((check_id, outcome, worst))
    return out


# ---------------------------------------------------------------------------------------------------------------
# the report


def fmt(seconds: float) -> str:
    return f"{seconds:.2f}"


def testssl_version(results: Sequence[ConfigResult]) -> str:
    return next((t.version for r in results for t in r.testssl if t.version != "?"), "not run")


def render(
    results: Sequence[ConfigResult], *, runs: int, cold_s: float | None, egress: EgressCheck | None, note: str | None, stamp: Stamp
) -> str:
    out: list[str] = [BEGIN, ""]
    w = out.append
    w("## Security stage: `releasegate run --stage pre-deploy` against the loopback reference deployment\n")
    w("Generated by `bench/security_stage.py` (`make bench`); see bench/README.md. The releasegate runs and testssl.sh ran")
    w("against the same running deployment of each configuration, one after the other.\n")
    out.extend(stamp.table([("testssl.sh", testssl_version(results))]))
    w("")
    w(f"Goal (issue 4): {GOAL_TEXT}.\n")
    w(f"Wall time of the whole stage in-process (pytest session, every check, reports written), {runs} runs per")
    w(f"configuration after one untimed warm-up, {SETTLE_S} s untimed pause between runs so the rate-limit quotas")
    w("are whole at the start of each run.\n")
    w("| configuration | checks | decision (exit) | median s | min s | max s | top checks by median duration |")
    w("|---|---|---|---|---|---|---|")
    for r in results:
        decisions = Counter(f"{run.decision} ({run.exit_code})" for run in r.runs)
        top = sorted(r.check_medians().items(), key=lambda kv: -kv[1])[:3]
        top_text = ", ".join(f"{i.removeprefix('security.')} {d:.2f}" for i, d in top)
        n_checks = len(r.runs[0].checks) if r.runs else 0
        w(
            f"| {r.name} | {n_checks} | {', '.join(decisions)} | **{fmt(statistics.median(r.walls))}** | {fmt(min(r.walls))} | "
            f"{fmt(max(r.walls))} | {top_text} |"
        )
    unexpected = [
        (r.name, index, run)
        for r in results
        for index, run in enumerate(r.runs, 1)
        if run.decision != ("pass" if not r.faults else "rollback") or run.errors
    ]
    if unexpected:
        w("\n**Unexpected outcomes** (healthy should pass and each fault roll back, with no check unable to judge):\n")
        for name, index, run in unexpected:
            errors = "; ".join(f"{i} error: {summary[:200]}" for i, summary in run.errors.items()) or "no check errored"
            w(f"- {name}, run {index}: {run.decision} (exit {run.exit_code}) — {errors}")
    if cold_s is not None:
        w(f"\nThe untimed warm-up (first run in the process: imports of pytest, sslyze, httpx, ...) took {fmt(cold_s)} s;")
        w("a CI job pays that once, in a fresh process.")
    w("")

    healthy = next((r for r in results if r.name == "healthy"), results[0])
    medians = healthy.check_medians()
    stage = statistics.median(healthy.walls)
    rate = sum(d for i, d in medians.items() if i.startswith("security.rate_limit."))
    tls = sum(d for i, d in medians.items() if i.startswith("security.tls."))
    rest = sum(medians.values()) - rate - tls
    overhead = stage - sum(medians.values())
    met = stage <= GOAL_S
    w(f"### Goal: {'met' if met else 'NOT met'} ({fmt(stage)} s median on {healthy.name}, goal {GOAL_S:.1f} s)\n")
    w(f"Where the {fmt(stage)} s go ({healthy.name}, sums of per-check medians from `verdict.json` `duration_s`):\n")
    w("| part | s | share |\n|---|---|---|")
    for label, part_s in (
        ("rate-limit checks (`security.rate_limit.*`: bursts, then waits for the quotas to refill)", rate),
        ("TLS checks (`security.tls.*`: one sslyze scan, charged to the first TLS check)", tls),
        (f"the other {len(medians) - sum(1 for i in medians if i.startswith(('security.rate_limit.', 'security.tls.')))} checks", rest),
        ("harness (pytest session, collection, fixtures, reports): wall minus the checks", overhead),
    ):
        w(f"| {label} | {fmt(part_s)} | {100 * part_s / stage:.0f} % |")
    waits = healthy.wait_medians()
    if waits:
        slept = sum(waits.values())
        each = ", ".join(f"{i.removeprefix('security.')} {d:.2f} s" for i, d in sorted(waits.items()))
        w(f"\nOf the rate-limit time, {fmt(slept)} s ({100 * slept / stage:.0f} % of the stage) is sleeping until the quotas the")
        w(f"previous check drained are whole again (evidence `waited.slept_s`, medians: {each}); the bursts themselves")
        w(f"take {fmt(rate - slept)} s. Without the sleeps the stage would take about {fmt(stage - slept)} s.")
    w("")
    w(f"Per-check median durations ({healthy.name}, {len(healthy.runs)} runs):\n")
    w("| check | median s | outcome |\n|---|---|---|")
    for check_id, duration in sorted(medians.items(), key=lambda kv: -kv[1]):
        w(f"| {check_id} | {duration:.3f} | {healthy.outcome(check_id)} |")
    w("")

    w("### Peer: testssl.sh on the same target, same run\n")
    if note:
        w(f"{note}\n")
    if any(r.testssl for r in results):
        w(f"Flags `{' '.join(TESTSSL_FLAGS)} --add-ca <demo CA> --jsonfile-pretty <file>`, environment")
        w(f"`NXCONNECT=127.0.0.1:0`; {max(len(r.testssl) for r in results)} runs per configuration, right after ours against the same")
        w("deployment. The work differs: testssl covers TLS and HTTP headers only, in more depth (cipher categories, every")
        w("vulnerability test); the releasegate stage also probes auth, WebSocket, rate and size limits. Read the ratio")
        w("(ours / testssl, medians) as the share of testssl's time the whole gate stage takes.\n")
        w("| configuration | ours s, median (min – max) | testssl s, median (min – max) | testssl exits | ours / testssl |")
        w("|---|---|---|---|---|")
        for r in results:
            if not r.testssl:
                continue
            peers = [t.wall_s for t in r.testssl]
            codes = ", ".join("killed" if t.exit_code is None else str(t.exit_code) for t in r.testssl)
            stage_s, peer = statistics.median(r.walls), statistics.median(peers)
            w(
                f"| {r.name} | {fmt(stage_s)} ({fmt(min(r.walls))} – {fmt(max(r.walls))}) | {fmt(peer)} ({fmt(min(peers))} – "
                f"{fmt(max(peers))}) | {codes} | **{stage_s / peer:.2f}** |"
            )
        problems = [(r.name, t.problem) for r in results for t in r.testssl if t.problem]
        for name, problem in problems:
            w(f"\n- {name}: testssl problem: {problem}")
        w("")
        if egress is not None:
            w("#### Egress\n")
            if egress.problem:
                w(f"Not verified: {egress.problem}.\n")
            else:
                dests = ", ".join(f"{a} ×{n}" for a, n in sorted(egress.destinations.items()))
                verdict = "nothing left loopback" if not egress.outside_loopback else f"LEFT LOOPBACK: {', '.join(egress.outside_loopback)}"
                w(f"An extra, untimed testssl run on {results[0].name} (after its timed runs) under")
                w("`strace -f -e trace=connect,sendto,sendmsg,sendmmsg`:")
                w(f"inet destinations {dests} — {verdict}.\n")

        w("### Findings side by side\n")
        w("Every testssl finding rated LOW or worse (and WARN: testssl could not test), mapped to the releasegate check")
        w("that judges the same thing, with that check's outcome in the same configuration. **Rule** (issue 4): every")
        w("protocol, certificate or HSTS finding rated MEDIUM or worse must be a non-pass here (`failed`, `warned` or")
        w("`error`). Cipher, vulnerability and header findings are compared the same way but are outside the rule; LOW")
        w("rows are context.\n")
        rule_total = rule_agree = 0
        disagreements: dict[tuple[str, str, str | None], list[tuple[str, Row]]] = {}
        healthy_result = next((r for r in results if r.name == "healthy" and r.testssl), None)
        baseline = (healthy_result, healthy_result.testssl[-1].findings) if healthy_result else None
        stricter: list[tuple[str, str, str, str]] = []
        for r in results:
            if not r.testssl:
                continue
            rows = compare(r, r.testssl[-1].findings, baseline)
            w(f"#### {r.name}\n")
            if not rows:
                w("testssl rated nothing LOW or worse.\n")
            else:
                w("| testssl finding | severity | finding | our check | our outcome | agree? | rule |")
                w("|---|---|---|---|---|---|---|")
                for row in rows:
                    text = row.finding.finding.replace("|", "\\|")
                    text = text if len(text) <= 70 else text[:67] + "..."
                    agree = "**no**" if row.agree == "no" else row.agree
                    w(
                        f"| {row.finding.section}/`{row.finding.id}` | {row.finding.severity} | {text} | {row.check or '—'} | "
                        f"{row.outcome} | {agree} | {'yes' if row.rule else ''} |"
                    )
                    if row.rule:
                        rule_total += 1
                        rule_agree += row.agree == "yes"
                    if row.agree != "yes" and SEVERITY_RANK.get(row.finding.severity, 0) >= 2:
                        disagreements.setdefault((row.finding.base_id, row.finding.severity, row.check), []).append((r.name, row))
                w("")
            for check_id, outcome, worst in stricter_here(r, rows):
                stricter.append((r.name, check_id, outcome, worst))
        w("#### Disagreements\n")
        w(f"Rule rows: **{rule_agree} of {rule_total} agree**.\n")
        if disagreements:
            w("testssl rated MEDIUM or worse, releasegate did not flag it (or has no check for it):\n")
            for (base_id, severity, check), seen in disagreements.items():
                why = ANALYSES.get(base_id, "no analysis recorded yet: investigate.")
                rule = " (rule)" if seen[0][1].rule else ""
                where = "; ".join(
                    f"{name}: {row.outcome}" + (f" ({row.finding.id})" if row.finding.id != base_id else "") for name, row in seen
                )
                w(f"- `{base_id}` {severity}{rule} vs {check or 'no check'} — {where}. {why}")
            w("")
        if stricter:
            w("releasegate did not pass, testssl rated it below MEDIUM (we are stricter; not a rule violation):\n")
            for name, check_id, outcome, worst in stricter:
                w(f"- {name}: {check_id} {outcome}, testssl's worst rating {worst}: {REVERSE_ANALYSES.get(check_id, '')}")
            w("")
    out.append(END)
    return "\n".join(out).rstrip() + "\n"


# ---------------------------------------------------------------------------------------------------------------
# driver


def loopback_endpoint(target_path: Path) -> tuple[str, Path]:
    """The demo target's base URL and CA bundle; refuses anything that is not https on loopback."""
    text = target_path.read_text(encoding="utf-8")
    base_url = re.search(r"^base_url:\s*(https://(?:localhost|127\.0\.0\.1):\d+)/?$", text, re.M)
    ca = re.search(r"ca_bundle:\s*([^,}\s]+)", text)
    if base_url is None or ca is None:
        raise RuntimeError(f"the demo target is not a loopback https URL with a CA bundle:\n{text}")
    return base_url.group(1), (target_path.parent / ca.group(1)).resolve()


def measure(
    name: str,
    faults: tuple[str, ...],
    *,
    runs: int,
    testssl: str | None,
    testssl_runs: int,
    timeout_s: float,
    warm_up: bool,
    check_egress: bool,
) -> tuple[ConfigResult, float | None, EgressCheck | None]:
    """Time one configuration: releasegate ``runs`` times, then testssl, then (untimed) the egress trace."""
    result = ConfigResult(name, faults)
    cold: float | None = None
    egress: EgressCheck | None = None
    with running(faults) as deployment:
        base_url, ca_path = loopback_endpoint(deployment.target_path)
        if warm_up:
            cold = time_stage(deployment.target_path, deployment.gates_path).wall_s
            time.sleep(SETTLE_S)
        for index in range(runs):
            run = time_stage(deployment.target_path, deployment.gates_path)
            result.runs.append(run)
            print(f"  {name}: run {index + 1}/{runs}: {run.wall_s:.2f} s, {run.decision}", file=sys.stderr, flush=True)
            time.sleep(SETTLE_S)
        if testssl is not None:
            for index in range(testssl_runs):
                peer = time_testssl(testssl, base_url, ca_path, timeout_s=timeout_s)
                result.testssl.append(peer)
                status = peer.problem or f"{len(peer.findings)} findings"
                print(f"  {name}: testssl {index + 1}/{testssl_runs}: {peer.wall_s:.1f} s, {status}", file=sys.stderr, flush=True)
            if check_egress:
                # After the timed runs: the trace slows testssl down.
                egress = egress_check(testssl, base_url, ca_path, timeout_s=timeout_s)
                print(f"  {name}: egress: {egress.problem or egress.outside_loopback or 'loopback only'}", file=sys.stderr, flush=True)
    return result, cold, egress


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="timed releasegate runs per configuration (default 5)")
    parser.add_argument(
        "--faults", nargs="+", choices=list(CONFIGURATIONS), default=list(CONFIGURATIONS), help="configurations to measure (default all)"
    )
    parser.add_argument("--testssl-runs", type=int, default=3, help="testssl.sh runs per configuration (default 3; 0 = skip the peer)")
    parser.add_argument("--testssl-timeout", type=float, default=TESTSSL_TIMEOUT_S, help="kill testssl.sh after this many seconds")
    parser.add_argument("--egress-check", action=argparse.BooleanOptionalAction, default=True, help="strace one extra testssl run")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where to write the results (default bench/RESULTS.md)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.testssl_runs < 0:
        parser.error("--runs must be >= 1 and --testssl-runs >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = Stamp.start()
    binary = testssl_binary() if args.testssl_runs else None
    note = None
    if args.testssl_runs and binary is None:
        note = "testssl.sh is not installed (Debian: `apt-get install testssl.sh`): the peer was skipped."
        print(note, file=sys.stderr)
    elif not args.testssl_runs:
        note = "The peer was skipped (`--testssl-runs 0`)."
    results: list[ConfigResult] = []
    cold_s: float | None = None
    egress: EgressCheck | None = None
    for index, name in enumerate(args.faults):
        print(f"{name}: {args.runs} releasegate runs, {args.testssl_runs if binary else 0} testssl runs", file=sys.stderr, flush=True)
        result, cold, traced = measure(
            name,
            CONFIGURATIONS[name],
            runs=args.runs,
            testssl=binary,
            testssl_runs=args.testssl_runs,
            timeout_s=args.testssl_timeout,
            warm_up=index == 0,
            check_egress=index == 0 and args.egress_check,
        )
        results.append(result)
        cold_s = cold if cold is not None else cold_s
        egress = traced if traced is not None else egress
    section = render(results, runs=args.runs, cold_s=cold_s, egress=egress, note=note, stamp=stamp)
    write_section(args.output, section, BEGIN, END)
    healthy = next((r for r in results if r.name == "healthy" and r.testssl), None)
    if healthy is not None:
        record_peer(
            "security stage (healthy)",
            "wall s",
            statistics.median(healthy.walls),
            "testssl.sh",
            statistics.median(t.wall_s for t in healthy.testssl),
            unit="s",
            note="the whole gate stage vs testssl's TLS and header scan",
        )
    print(section)
    print(f"written to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
