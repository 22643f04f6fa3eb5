"""`releasegate canary replay SAMPLES.json [--gates FILE]`: saved samples judged again, offline.

The samples files here are written by hand in the samples.json format (schema
releasegate.canary-samples/v1), with latencies placed deterministically: value i of n is the
(i + 0.5) / n quantile of a lognormal with sigma 0.5 (median 100 ms), so a test knows exactly
what shift it holds and needs no seed.
"""

from __future__ import annotations

import json
from pathlib import Path
from statistics import NormalDist
from typing import Any

import pytest

from releasegate.cli import main

SIGMA = 0.5


def lognormal(n: int, *, scale: float = 1.0, offset: float = 0.5) -> list[float]:
    """n latencies (ms) at evenly spaced quantiles of lognormal(log 100, 0.5), times ``scale``."""
    unit = NormalDist()
    return [round(100.0 * scale * 2.718281828459045 ** (SIGMA * unit.inv_cdf((i + offset) / n)), 4) for i in range(n)]


def latency_policy(*, allowed_increase: float = 1.1, max_intervals: int = 1) -> dict[str, Any]:
    return {
        "interval_s": 60,
        "max_intervals": max_intervals,
        "alpha": 0.01,
        "interim_alpha": 0.001,
        "score": {"pass": 95, "marginal": 75},
        "metrics": [
            {"name": "http_latency", "kind": "latency", "probe": "http_latency", "allowed_increase": allowed_increase, "critical": True}
        ],
    }


def samples_file(
    path: Path, baseline: list[float], canary: list[float], *, policy: dict[str, Any] | None = None, intervals: int = 1
) -> Path:
    """A samples.json holding ``intervals`` equal intervals of the given latencies."""
    per = [
        {
            "index": i + 1,
            "started_at": f"2026-01-01T00:0{i}:00Z",
            "duration_s": 60.0,
            "metrics": {
                "http_latency": {
                    "kind": "latency",
                    "baseline": {"values": baseline, "dropped": 0},
                    "canary": {"values": canary, "dropped": 0},
                    "problems": [],
                }
            },
        }
        for i in range(intervals)
    ]
    document = {"schema": "releasegate.canary-samples/v1", "target": "shop", "policy": policy or {}, "intervals": per}
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def gates_file(path: Path, policy: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"canary": policy}), encoding="utf-8")  # JSON is YAML
    return path


def test_a_latency_regression_replays_as_rollback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a canary 50% slower than its baseline, 400 requests a side, under the policy it ran with
    samples = samples_file(tmp_path / "samples.json", lognormal(400), lognormal(400, scale=1.5), policy=latency_policy())

    code = main(["canary", "replay", str(samples)])

    out = capsys.readouterr().out
    assert code == 1, out
    assert "http_latency" in out and "rollback" in out
    assert f"saved in {samples}" in out


def test_an_a_a_run_replays_as_promote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    samples = samples_file(tmp_path / "samples.json", lognormal(400), lognormal(400, offset=0.45), policy=latency_policy())

    code = main(["canary", "replay", str(samples)])

    out = capsys.readouterr().out
    assert code == 0, out
    assert "promote" in out


def test_the_same_samples_under_a_stricter_and_a_looser_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a canary 12% slower: significant at n = 400, but within a 50% allowance
    samples = samples_file(tmp_path / "samples.json", lognormal(400), lognormal(400, scale=1.12), policy=latency_policy())
    strict = gates_file(tmp_path / "strict.yaml", latency_policy(allowed_increase=1.0))
    loose = gates_file(tmp_path / "loose.yaml", latency_policy(allowed_increase=1.5))

    strict_code = main(["canary", "replay", str(samples), "--gates", str(strict)])
    strict_out = capsys.readouterr().out
    loose_code = main(["canary", "replay", str(samples), "--gates", str(loose)])
    loose_out = capsys.readouterr().out

    assert (strict_code, loose_code) == (1, 0), strict_out + loose_out
    assert f"canary section of {strict}" in strict_out and f"canary section of {loose}" in loose_out


def test_a_run_that_stopped_before_the_last_look_of_a_longer_policy_holds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given an A/A run of two intervals, replayed under a policy of ten looks: nothing decided early,
    # and the run ended before its last look
    samples = samples_file(tmp_path / "samples.json", lognormal(60), lognormal(60, offset=0.45), intervals=2)
    longer = gates_file(tmp_path / "longer.yaml", latency_policy(allowed_increase=1.0, max_intervals=10))

    code = main(["canary", "replay", str(samples), "--gates", str(longer)])

    assert code == 2, capsys.readouterr().out


def test_metrics_of_the_policy_without_samples_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = latency_policy()
    policy["metrics"].append({"name": "sync_latency", "kind": "latency", "probe": "sync_latency", "critical": True})
    samples = samples_file(tmp_path / "samples.json", lognormal(400), lognormal(400, offset=0.45), policy=policy)

    code = main(["canary", "replay", str(samples)])

    out = capsys.readouterr().out
    assert code == 2, out  # a critical metric without data at the last look holds
    assert "no samples recorded for sync_latency" in out


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("{not json", id="not-json"),
        pytest.param(json.dumps({"schema": "something/else", "intervals": []}), id="wrong-schema"),
        pytest.param(json.dumps({"schema": "releasegate.canary-samples/v1", "intervals": [{"index": 1}]}), id="malformed-interval"),
        pytest.param(json.dumps({"schema": "releasegate.canary-samples/v1", "intervals": []}), id="no-interval"),
    ],
)
def test_a_malformed_samples_file_exits_3_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> None:
    path = tmp_path / "broken-samples.json"
    path.write_text(text, encoding="utf-8")

    code = main(["canary", "replay", str(path)])

    err = capsys.readouterr().err
    assert code == 3
    assert str(path) in err and "Traceback" not in err


def test_a_missing_samples_file_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["canary", "replay", str(tmp_path / "nowhere.json")]) == 3
    assert "nowhere.json" in capsys.readouterr().err


def test_a_bad_policy_exits_3_naming_file_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad_saved = latency_policy()
    bad_saved["alpha"] = 2
    samples = samples_file(tmp_path / "samples.json", lognormal(50), lognormal(50), policy=bad_saved)
    bad_gates = tmp_path / "bad-gates.yaml"
    bad_gates.write_text("canary:\n  looks: sometimes\n", encoding="utf-8")

    saved_code = main(["canary", "replay", str(samples)])
    saved_err = capsys.readouterr().err
    gates_code = main(["canary", "replay", str(samples), "--gates", str(bad_gates)])
    gates_err = capsys.readouterr().err

    assert (saved_code, gates_code) == (3, 3)
    assert str(samples) in saved_err and "policy.alpha" in saved_err
    assert f"{bad_gates}:2" in gates_err and "canary.looks" in gates_err
    assert "Traceback" not in saved_err + gates_err


def test_replay_needs_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["canary", "replay"]) == 3
    assert main(["canary"]) == 3
