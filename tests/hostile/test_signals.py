"""SIGTERM or SIGINT in the middle of a run: a partial verdict, decision hold, exit 2, within seconds, no traceback.

A CI job being cancelled (SIGTERM from the runner, Kubernetes, Argo) or a person pressing Ctrl-C
(SIGINT) must not leave a pipeline without a verdict, nor with a promote built on half the
evidence. The gate runs against a loopback server whose every health answer takes 5 s; the
signal arrives ~2 s in, while the first check is waiting.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from harness import assert_fails_closed, record_row, run_gate

from loopback import Route, serve

SLOW_S = 5.0
SIGNAL_AFTER_S = 2.0
# From the signal to the process's end: the gate stops the running check, judges and writes reports.
MAX_AFTER_SIGNAL_S = 5.0
CHECKS = ["health.liveness", "health.readiness", "health.deep"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_run_writes_a_partial_hold_verdict_and_exits_2(tmp_path: Path, signum: signal.Signals) -> None:
    # Given a gate run against a target whose every health answer takes 5 s (within the 10 s probe timeout)
    routes = {path: Route(200, "ok", delay_s=SLOW_S) for path in ("/healthz", "/readyz", "/health")}
    with serve(dict(routes)) as server:
        # When the signal arrives 2 s in, while the first check waits for its answer
        result = run_gate(
            tmp_path,
            target=f"name: slow\nbase_url: {server.base_url}\nhealth: {{liveness: /healthz, readiness: /readyz, deep: /health}}\n",
            gates="deadline_s: 60\nprobe: {timeout_s: 10, retry: {timeout_s: 0}}\nthresholds: {health: {max_latency_ms: null}}\n",
            stage="post-deploy",
            only=CHECKS,
            send_signal_after_s=(signum, SIGNAL_AFTER_S),
            kill_after_s=60,
        )
        started_requests = len(server.requests)
    # Then it ends within seconds of the signal, long before the checks would have finished (3 x 5 s)
    assert result.seconds < SIGNAL_AFTER_S + MAX_AFTER_SIGNAL_S + 3, f"{result.seconds:.1f} s"
    # ... with a partial verdict: hold, exit 2, the interruption named first, no check passed
    assert_fails_closed(result, affected=[], deadline_s=60)
    assert result.verdict is not None
    assert (result.exit_code, result.verdict["decision"], result.verdict["exit_code"]) == (2, "hold", 2)
    assert "interrupted" in result.verdict["reasons"][0], result.verdict["reasons"]
    assert not [row for row in result.verdict["checks"] if row["outcome"] == "passed"], result.verdict["checks"]
    assert started_requests >= 1  # the signal really came mid-check, not before the first request
    for name in ("summary.md", "junit.xml"):
        assert (result.report_dir / name).is_file(), name
    record_row(
        "signals",
        f"{signum.name} {SIGNAL_AFTER_S:g} s into a run (health answers take {SLOW_S:g} s)",
        result,
        checks=CHECKS,
        outcome="interrupted: partial verdict",
    )
