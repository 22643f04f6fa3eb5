"""Distributed mode: a local master and two worker processes load the reference deployment.

The master runs no users; the workers forward their raw samples to it in batches (a custom
Locust message), and the gate judges them as for a single process. A short run, healthy, so
it must promote; then the figures must show that the load came from the two workers. A worker
killed mid-run must never let the gate promote on what the other one measured.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import psutil  # type: ignore[import-untyped]
import pytest
from test_load_gate import load, prepare, smoke_row

from releasegate.reference.demo import running


def test_a_short_distributed_run_with_two_local_workers(tmp_path: Path) -> None:
    # Given the healthy reference deployment
    with running() as deployment:
        target, gates = prepare(deployment, tmp_path)
        # When the profile runs with a master and two worker processes
        code, verdict = load(target, gates, tmp_path / "report", "--workers", "2", "--expect-workers-max-wait", "30")
    # Then the gate promotes on samples the workers sent
    row = smoke_row(verdict)
    assert (code, verdict["decision"], row["outcome"]) == (0, "promote", "passed"), row["summary"]
    summary = row["evidence"]["summary"]
    assert summary["workers"] == 2
    assert summary["requests"] >= 10 and summary["sync_events"] > 0
    assert summary["samples_kept"] == summary["requests"] + summary["sync_events"]
    assert summary["peak_users"] == 6
    out = tmp_path / "report" / "load-smoke"
    assert (out / "worker-0.log").is_file() and (out / "worker-1.log").is_file()
    log = (out / "locust.log").read_text(encoding="utf-8")
    assert "2 workers connected" in log and "sent no last batch" not in log
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["summary"]["workers"] == 2
    # And Locust's own figures, aggregated from the workers' reports, agree with the samples
    stats = (out / "locust_stats.csv").read_text(encoding="utf-8").splitlines()
    aggregated = next(line for line in stats if ",Aggregated," in line)
    assert int(aggregated.split(",")[2]) == summary["requests"] + summary["sync_events"]


def test_workers_that_never_connect_hold_the_gate_after_a_bounded_wait(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a master that expects a worker nobody starts (and a target nobody serves: no load is sent)
    monkeypatch.setenv("RELEASEGATE_TEST_TOKEN", "token-for-a-service-that-does-not-exist")
    target = tmp_path / "target.yaml"
    target.write_text(
        "name: nobody\nbase_url: https://127.0.0.1:9\nauth: {token_env: RELEASEGATE_TEST_TOKEN}\nload: {identities: [primary]}\n",
        encoding="utf-8",
    )
    gates = tmp_path / "gates.yaml"
    gates.write_text("load: {min_requests: 1}\n", encoding="utf-8")
    # When the wait for it is one second
    code, verdict = load(target, gates, tmp_path / "report", "--workers", "0", "--expect-workers", "1", "--expect-workers-max-wait", "1")
    # Then the run is inconclusive, and says why
    row = smoke_row(verdict)
    assert (code, verdict["decision"], row["outcome"]) == (2, "hold", "error")
    assert "only 0 of 1 load workers connected within 1 s" in row["summary"]


def _kill_one_worker_once_both_run(stop: threading.Event, killed: list[int]) -> None:
    """SIGKILL one of the run's two worker processes a second after both exist (bounded wait)."""
    me = psutil.Process()
    deadline = time.monotonic() + 60.0
    while not stop.is_set() and time.monotonic() < deadline:
        workers = []
        for child in me.children(recursive=True):
            try:
                if "--worker" in child.cmdline():
                    workers.append(child)
            except psutil.Error:
                continue
        if len(workers) == 2:
            # Both started; give them a second to connect and carry load, then kill one.
            stop.wait(2.0)
            try:
                workers[0].send_signal(signal.SIGKILL)
                killed.append(workers[0].pid)
            except psutil.Error:
                pass
            return
        stop.wait(0.05)


def test_a_worker_killed_mid_run_never_promotes(tmp_path: Path) -> None:
    # Given the healthy reference deployment and a run with two local workers
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_one_worker_once_both_run, args=(stop, killed), daemon=True)
    with running() as deployment:
        target, gates = prepare(deployment, tmp_path)
        killer.start()
        try:
            # When one worker is SIGKILLed during the load
            code, verdict = load(target, gates, tmp_path / "report", "--workers", "2", "--expect-workers-max-wait", "30")
        finally:
            stop.set()
            killer.join(timeout=5)
    assert killed, "no worker was killed: the test did not test anything"
    # Then the gate does not promote on what the surviving worker measured
    row = smoke_row(verdict)
    assert verdict["decision"] != "promote" and row["outcome"] != "passed", row["summary"]
    assert (verdict["decision"], row["outcome"]) == ("hold", "error"), row["summary"]
    assert "workers" in row["summary"], row["summary"]
