"""The decision in the Allure results: environment.properties and executor.json beside the tests.

Allure shows one test per check; without these two files its report never says what the gate
decided. First the adapter on a verdict document, then the plugin end to end with pytester.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from releasegate.report.allure import record_decision

pytest_plugins = ["pytester"]

VERDICT: dict[str, Any] = {
    "stage": "post-deploy",
    "target": "shop",
    "decision": "rollback",
    "exit_code": 1,
    "checks": [
        {"id": "health.liveness", "outcome": "passed"},
        {"id": "health.readiness", "outcome": "failed"},
        {"id": "health.deep", "outcome": "failed"},
        {"id": "slo.latency", "outcome": "error"},
    ],
}


def properties(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines())


def test_the_decision_and_the_failing_ids_become_environment_entries(tmp_path: Path) -> None:
    record_decision(tmp_path, VERDICT)

    assert properties(tmp_path / "environment.properties") == {
        "decision": "ROLLBACK (exit 1)",
        "stage": "post-deploy",
        "target": "shop",
        "failed": "health.readiness, health.deep",
        "inconclusive": "slo.latency",
    }
    executor = json.loads((tmp_path / "executor.json").read_text(encoding="utf-8"))
    assert executor["name"] == "releasegate"
    assert executor["buildName"] == "post-deploy on shop: ROLLBACK"


def test_a_passing_run_says_none_and_other_environment_keys_survive(tmp_path: Path) -> None:
    # Given an environment.properties someone else wrote, and an old decision of ours in it
    (tmp_path / "environment.properties").write_text("browser=chromium\ndecision=PROMOTE (exit 0)\n", encoding="utf-8")
    verdict = {**VERDICT, "decision": "promote", "exit_code": 0, "checks": [{"id": "health.liveness", "outcome": "passed"}]}

    record_decision(tmp_path, verdict)

    entries = properties(tmp_path / "environment.properties")
    assert entries["browser"] == "chromium"
    assert (entries["decision"], entries["failed"], entries["inconclusive"]) == ("PROMOTE (exit 0)", "none", "none")


def test_one_line_per_entry_whatever_the_target_is_called(tmp_path: Path) -> None:
    record_decision(tmp_path, {**VERDICT, "target": "shop\nfailed=none \\ eu"})

    entries = properties(tmp_path / "environment.properties")
    assert entries["target"] == "shop failed=none \\\\ eu"
    assert entries["failed"] == "health.readiness, health.deep"


def test_no_results_folder_no_files(tmp_path: Path) -> None:
    record_decision(None, VERDICT)
    record_decision(tmp_path / "missing", VERDICT)

    assert not (tmp_path / "missing").exists()


def test_a_gate_run_writes_its_decision_into_its_allure_results(pytester: pytest.Pytester) -> None:
    # Given a mini suite with one failing blocking check
    pytester.makepyfile(
        test_suite=textwrap.dedent(
            """
            import pytest
            from releasegate.results import Finding

            @pytest.mark.check("health.liveness")
            def test_live(check):
                check.conclude(Finding("passed", "alive", observed="HTTP 200", expected="HTTP 2xx"))

            @pytest.mark.check("health.readiness")
            def test_ready(check):
                check.conclude(Finding("failed", "not ready", observed="HTTP 503", expected="HTTP 2xx"))

            @pytest.mark.check("health.deep")
            def test_deep(check):
                check.conclude(Finding("error", "no answer", observed="timeout", expected="a health document"))
            """
        )
    )
    (pytester.path / "target.yaml").write_text("name: mini\nbase_url: http://127.0.0.1:9\n", encoding="utf-8")
    (pytester.path / "gates.yaml").write_text("probe: {timeout_s: 1, retry: {timeout_s: 0}}\n", encoding="utf-8")
    report_dir = pytester.path / "report"

    # When the gate runs it
    result = pytester.runpytest(
        *("--stage", "post-deploy", "--target", "target.yaml", "--gates", "gates.yaml", "--report-dir", str(report_dir)),
        *("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:anyio"),
    )

    # Then its Allure results say what it decided, as verdict.json does
    assert result.ret == 1, result.stdout.str()
    entries = properties(report_dir / "allure-results" / "environment.properties")
    assert (entries["decision"], entries["failed"], entries["inconclusive"]) == ("ROLLBACK (exit 1)", "health.readiness", "health.deep")
    # and each check's status is Allure's word for it: a failed check "failed", one that could not judge "broken".
    statuses = {}
    for path in (report_dir / "allure-results").glob("*-result.json"):
        test = json.loads(path.read_text(encoding="utf-8"))
        statuses[test["name"]] = test["status"]
    assert statuses == {"test_live": "passed", "test_ready": "failed", "test_deep": "broken"}, statuses
