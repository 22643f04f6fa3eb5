"""summary.md's canary section (releasegate.report.canary), rendered from canary.judge's evidence."""

from __future__ import annotations

from typing import Any

from releasegate.report.canary import canary_blocks
from releasegate.results import CheckResult


def metric(name: str, kind: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "state": "passed",
        "critical": True,
        "n_baseline": 160,
        "n_canary": 150,
        "baseline": {"median": 3.57, "p95": 6.86} if kind == "latency" else {"rate": 0.0, "events": 0, "trials": 160},
        "canary": {"median": 3.77, "p95": 5.94} if kind == "latency" else {"rate": 0.02, "events": 3, "trials": 150},
        "ratio": 1.05,
        "ci": [0.986, 1.119],
        "confidence": 0.982,
        "p_value": 0.032,
        "alpha": 0.009,
    }
    return base | fields


def judge(decision: str, *looks: dict[str, Any]) -> CheckResult:
    return CheckResult("canary.judge", "passed", "blocking", "s", evidence={"decision": decision, "looks": list(looks), "reasons": []})


def look(n: int, decision: str, *metrics: dict[str, Any]) -> dict[str, Any]:
    return {"look": n, "max_looks": 4, "decision": decision, "score": 60.0, "max_score": 100.0, "metrics": list(metrics)}


def test_the_deciding_look_is_a_table_row_per_metric() -> None:
    blocks = canary_blocks(
        [judge("promote", look(1, "continue"), look(2, "promote", metric("http_latency", "latency"), metric("http_errors", "rate")))]
    )
    text = "\n".join(blocks)
    assert "### Canary" in text
    assert "Decision **promote** at look 2 of 4: score 60.0, max score 100.0." in text
    assert "Looks (decision, score): 1: continue (60), 2: promote (60)." in text
    rows = [line for line in text.splitlines() if line.startswith("| http_")]
    assert rows == [
        "| http_latency * | 160/150 | 3.6/6.9 | 3.8/5.9 | 1.050 | 0.986-1.119 (98.2%) | 0.032 | 0.009 | ✅ passed |",
        "| http_errors * | 160/150 | 0.00% (0/160) | 2.00% (3/150) | 1.050 | 0.986-1.119 (98.2%) | 0.032 | 0.009 | ✅ passed |",
    ]


def test_missing_and_non_finite_figures_are_shown_as_such() -> None:
    nodata = metric("sync_latency", "latency", state="nodata", ratio=None, ci=None, p_value=None, baseline={}, canary={})
    infinite = metric("m", "latency", state="failed", ratio="inf", ci=["inf", "inf"], critical=False)
    text = "\n".join(canary_blocks([judge("hold", look(4, "hold", nodata, infinite))]))
    assert "| sync_latency * | 160/150 | — | — | — | — | — | 0.009 | ⚠️ no data |" in text
    assert "| m | 160/150 | 3.6/6.9 | 3.8/5.9 | inf | inf-inf (98.2%) | 0.032 | 0.009 | ❌ failed |" in text


def test_nothing_without_a_judge_result_or_without_looks() -> None:
    other = CheckResult("health.readiness", "passed", "blocking", "200")
    assert canary_blocks([other]) == []
    assert canary_blocks([judge("hold")]) == []
    assert canary_blocks([CheckResult("canary.judge", "error", "blocking", "no canary section", evidence={"problems": []})]) == []
