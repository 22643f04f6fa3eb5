"""The pytest plugin end to end: mini gate suites run with ``pytester`` (style.md #10).

No network: the mini suites conclude with made-up findings, raise or skip. Each run asserts
the exit code (the contract), and where it matters verdict.json, junit.xml, allure-results/
and summary.md in the report dir.
"""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from releasegate import registry
from releasegate.registry import CheckSpec

pytest_plugins = ["pytester"]

FAST_GATES = "probe: {timeout_s: 1, retry: {timeout_s: 0}}\n"
HEADER = """\
import time
import pytest
from releasegate.results import Finding
"""
# Third-party plugins the mini suites do not need; hypothesis's alone re-imports its whole
# package in every in-process run (pytester restores sys.modules after each).
QUIET_PLUGINS = ("-p", "no:hypothesispytest", "-p", "no:anyio")
VERDICT_CHECK_KEYS = {"id", "outcome", "severity", "summary", "observed", "expected", "evidence", "duration_s"}


@dataclass
class GateResult:
    ret: int
    stdout: str
    stderr: str
    report_dir: Path

    @property
    def verdict(self) -> dict[str, Any]:
        return json.loads((self.report_dir / "verdict.json").read_text(encoding="utf-8"))

    def outcomes(self) -> dict[str, str]:
        return {c["id"]: c["outcome"] for c in self.verdict["checks"]}


@pytest.fixture
def gate(pytester: pytest.Pytester):  # type: ignore[no-untyped-def]
    """Write a mini suite and run it through the gate in-process; returns a GateResult."""

    def run(suite: str, *extra: str, gates: str | None = FAST_GATES, target: str | None = None, stage: str = "post-deploy") -> GateResult:
        pytester.makepyfile(test_suite=HEADER + textwrap.dedent(suite))
        target_file = pytester.path / "target.yaml"
        target_file.write_text(target or "name: mini\nbase_url: http://127.0.0.1:9\n", encoding="utf-8")
        report_dir = pytester.path / "report"
        args = [
            "--stage",
            stage,
            "--target",
            str(target_file),
            "--report-dir",
            str(report_dir),
            "-p",
            "no:cacheprovider",
            *QUIET_PLUGINS,
        ]
        if gates is not None:
            gates_file = pytester.path / "gates.yaml"
            gates_file.write_text(gates, encoding="utf-8")
            args += ["--gates", str(gates_file)]
        result = pytester.runpytest(*args, *extra)
        return GateResult(int(result.ret), result.stdout.str(), result.stderr.str(), report_dir)

    return run


ALL_PASS = """
@pytest.mark.check("health.liveness")
def test_live(check):
    check.conclude(Finding("passed", "alive", observed="HTTP 200", expected="HTTP 2xx", evidence={"status": 200}))

@pytest.mark.check("health.readiness")
def test_ready(check):
    check.conclude(Finding("passed", "ready", observed="HTTP 200", expected="HTTP 2xx", evidence={"status": 200}))
"""


# --------------------------------------------------------------------------- exit codes and verdict


def test_all_passing_promotes_with_exit_0_and_writes_every_report(gate) -> None:  # type: ignore[no-untyped-def]
    result = gate(ALL_PASS)

    assert result.ret == 0, result.stdout
    verdict = result.verdict
    assert verdict["schema"] == "releasegate.verdict/v1"
    assert verdict["stage"] == "post-deploy"
    assert verdict["target"] == "mini"
    assert verdict["decision"] == "promote"
    assert verdict["exit_code"] == 0
    assert verdict["reasons"] and all(isinstance(r, str) for r in verdict["reasons"])
    assert verdict["started_at"].endswith("Z") and verdict["finished_at"].endswith("Z")
    assert [c["id"] for c in verdict["checks"]] == ["health.liveness", "health.readiness"]
    for row in verdict["checks"]:
        assert set(row) == VERDICT_CHECK_KEYS
        assert row["outcome"] == "passed"
        assert row["severity"] == "blocking"
        assert row["observed"] == "HTTP 200" and row["expected"] == "HTTP 2xx"
        assert row["evidence"] == {"status": 200}
        assert row["duration_s"] >= 0
    assert "PASS   health.liveness" in result.stdout
    assert "releasegate post-deploy on mini: PROMOTE" in result.stdout
    assert (result.report_dir / "summary.md").read_text(encoding="utf-8").startswith("## ✅ releasegate: **PROMOTE**")


def test_junit_carries_releasegate_properties_for_every_check(gate) -> None:  # type: ignore[no-untyped-def]
    result = gate(ALL_PASS)

    tree = ET.parse(result.report_dir / "junit.xml")
    cases = tree.getroot().findall(".//testcase")
    assert len(cases) == 2
    for case in cases:
        props = {p.get("name"): p.get("value") for p in case.findall("./properties/property")}
        assert {"releasegate.check_id", "releasegate.outcome", "releasegate.severity", "releasegate.summary"} <= set(props)
        assert {"releasegate.observed", "releasegate.expected", "releasegate.evidence"} <= set(props)
        assert props["releasegate.outcome"] == "passed"
        assert json.loads(props["releasegate.evidence"] or "null") == {"status": 200}
    assert sorted(str(p) for case in cases for p in [case.find("./properties/property[@name='releasegate.check_id']").get("value")]) == [  # type: ignore[union-attr]
        "health.liveness",
        "health.readiness",
    ]


def test_allure_results_are_labelled_and_carry_json_evidence(gate) -> None:  # type: ignore[no-untyped-def]
    result = gate(ALL_PASS, gates=FAST_GATES + "severity: {health.readiness: warning}\n")

    allure_dir = result.report_dir / "allure-results"
    results = [json.loads(p.read_text(encoding="utf-8")) for p in allure_dir.glob("*-result.json")]
    assert len(results) == 2
    by_story = {}
    for item in results:
        labels = {(label["name"], label["value"]) for label in item["labels"]}
        assert ("epic", "post-deploy") in labels
        assert ("feature", "health") in labels
        story = next(value for name, value in labels if name == "story")
        by_story[story] = labels
        [attachment] = item["attachments"]
        assert attachment["type"] == "application/json"
        evidence = json.loads((allure_dir / attachment["source"]).read_text(encoding="utf-8"))
        assert evidence["outcome"] == "passed" and evidence["evidence"] == {"status": 200}
    assert ("severity", "critical") in by_story["health.liveness"]
    # The severity label follows gates.yaml, not only the registry default.
    assert ("severity", "normal") in by_story["health.readiness"]


def test_blocking_failure_rolls_back_with_exit_1(gate) -> None:  # type: ignore[no-untyped-def]
    result = gate(
        """
        @pytest.mark.check("health.liveness")
        def test_live(check):
            check.conclude(Finding("passed", "alive"))

        @pytest.mark.check("health.readiness")
        def test_ready(check):
            check.conclude(Finding("failed", "answered HTTP 503", observed="HTTP 503", expected="HTTP 2xx"))

        @pytest.mark.check("health.deep")
        def test_deep():
            assert 1 == 2, "component db says fail"
        """
    )

    assert result.ret == 1, result.stdout
    verdict = result.verdict
    assert verdict["decision"] == "rollback" and verdict["exit_code"] == 1
    assert result.outcomes() == {"health.liveness": "passed", "health.readiness": "failed", "health.deep": "failed"}
    assert any(r.startswith("health.readiness failed: answered HTTP 503") for r in verdict["reasons"])
    assert any(r.startswith("health.deep failed: component db says fail") for r in verdict["reasons"])
    ready = next(c for c in verdict["checks"] if c["id"] == "health.readiness")
    assert ready["observed"] == "HTTP 503" and ready["expected"] == "HTTP 2xx"
    assert "FAIL   health.readiness" in result.stdout
    assert (result.report_dir / "summary.md").read_text(encoding="utf-8").startswith("## ❌ releasegate: **ROLLBACK**")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param('raise RuntimeError("probe blew up")', id="unexpected-exception"),
        pytest.param('check.conclude(Finding("error", "no answer within 1 s"))', id="error-finding"),
        pytest.param('from releasegate import ProbeError\n    raise ProbeError("connection refused")', id="probe-error"),
    ],
)
def test_blocking_error_holds_with_exit_2(gate, body: str) -> None:  # type: ignore[no-untyped-def]
    result = gate(
        f"""
@pytest.mark.check("health.liveness")
def test_live(check):
    check.conclude(Finding("passed", "alive"))

@pytest.mark.check("health.readiness")
def test_ready(check):
    {body}
"""
    )

    assert result.ret == 2, result.stdout
    assert result.verdict["decision"] == "hold" and result.verdict["exit_code"] == 2
    assert result.outcomes() == {"health.liveness": "passed", "health.readiness": "error"}
    assert any("health.readiness could not be judged (error)" in r for r in result.verdict["reasons"])


def test_error_in_fixture_setup_is_an_error_not_a_failure(gate) -> None:  # type: ignore[no-untyped-def]
    result = gate(
        """
        @pytest.fixture
        def broken():
            raise AssertionError("fixture could not prepare")

        @pytest.mark.check("health.liveness")
        def test_live(check, broken):
            check.conclude(Finding("passed", "alive"))
        """
    )

    assert result.ret == 2, result.stdout
    assert result.outcomes() == {"health.liveness": "error"}


def test_everything_skipped_holds_with_exit_2(gate) -> None:  # type: ignore[no-untyped-def]
    result = gate(
        """
        @pytest.mark.check("health.liveness")
        def test_live(check):
            pytest.skip("the target names no health.liveness path")
        """
    )

    assert result.ret == 2, result.stdout
    assert result.verdict["decision"] == "hold"
    assert result.outcomes() == {"health.liveness": "skipped"}
    assert result.verdict["checks"][0]["summary"] == "the target names no health.liveness path"
    assert any("skipped" in r for r in result.verdict["reasons"])


def test_no_tests_holds_with_exit_2(gate) -> None:  # type: ignore[no-untyped-def]
    result = gate("# no checks at all\n")

    assert result.ret == 2, result.stdout
    assert result.verdict["decision"] == "hold"
    assert result.verdict["checks"] == []
    assert any("no checks ran" in r for r in result.verdict["reasons"])


def test_warned_finding_is_reported_and_promotes(gate) -> None:  # type: ignore[no-untyped-def]
    result = gate(
        """
        @pytest.mark.check("health.deep")
        def test_deep(check):
            check.conclude(Finding("warned", "degraded: cache (warn)"))
        """
    )

    assert result.ret == 0, result.stdout
    assert result.outcomes() == {"health.deep": "warned"}
    assert any("health.deep warned" in n for n in result.verdict["notes"])
    assert "WARN   health.deep" in result.stdout


def test_waiver_turns_a_blocking_failure_into_waived(gate) -> None:  # type: ignore[no-untyped-def]
    gates = FAST_GATES + "waivers:\n  - {check: health.deep, justification: 'cache rebuild, OPS-123', expires: 2999-12-31}\n"
    result = gate(
        """
        @pytest.mark.check("health.deep")
        def test_deep(check):
            check.conclude(Finding("failed", "failing: cache"))
        """,
        gates=gates,
    )

    assert result.ret == 0, result.stdout
    assert result.outcomes() == {"health.deep": "waived"}


# --------------------------------------------------------------------------- configuration errors: exit 3


def test_unknown_check_id_in_a_marker_is_a_config_error(gate) -> None:  # type: ignore[no-untyped-def]
    result = gate(
        """
        @pytest.mark.check("health.liveness")
        def test_live(check):
            check.conclude(Finding("passed", "alive"))

        @pytest.mark.check("health.readyness")
        def test_ready(check):
            check.conclude(Finding("passed", "ready"))
        """
    )

    assert result.ret == 3, result.stdout
    assert "unknown check id 'health.readyness'" in result.stdout
    assert "did you mean 'health.readiness'" in result.stdout
    # Nothing ran: a misconfigured suite must not produce a decision.
    assert not (result.report_dir / "verdict.json").exists()
    assert "PASS" not in result.stdout


@pytest.mark.parametrize(
    "marker",
    [pytest.param("", id="missing"), pytest.param('@pytest.mark.check("health.liveness")\n@pytest.mark.check("health.deep")\n', id="two")],
)
def test_a_gate_test_needs_exactly_one_check_marker(gate, marker: str) -> None:  # type: ignore[no-untyped-def]
    result = gate(f"{marker}def test_unmarked(check):\n    check.conclude(Finding('passed', 'x'))\n")

    assert result.ret == 3, result.stdout
    assert "exactly one @pytest.mark.check" in result.stdout


@pytest.mark.parametrize(
    ("gates", "needle"),
    [
        pytest.param(FAST_GATES + "on_eror: hold\n", "gates.yaml:2: key 'on_eror' unknown key", id="unknown-key"),
        pytest.param(FAST_GATES + "deadline_s: soon\n", "gates.yaml:2: key 'deadline_s'", id="bad-type"),
        pytest.param(FAST_GATES + "severity: {health.nope: warning}\n", "gates.yaml:2: key 'severity.health.nope'", id="unknown-check"),
        pytest.param(FAST_GATES + "waivers:\n  - {check: health.deep}\n", "gates.yaml:3: key 'waivers[0].justification'", id="bad-waiver"),
    ],
)
def test_bad_gates_file_is_a_config_error(gate, gates: str, needle: str) -> None:  # type: ignore[no-untyped-def]
    result = gate(ALL_PASS, gates=gates)

    assert result.ret == 3, result.stdout + result.stderr
    assert needle in result.stdout + result.stderr
    assert not (result.report_dir / "verdict.json").exists()


def test_missing_target_file_is_a_config_error(gate, pytester: pytest.Pytester) -> None:  # type: ignore[no-untyped-def]
    pytester.makepyfile(test_suite=HEADER + ALL_PASS)
    result = pytester.runpytest(
        "--stage", "post-deploy", "--target", str(pytester.path / "nope.yaml"), "-p", "no:cacheprovider", *QUIET_PLUGINS
    )

    assert int(result.ret) == 3
    assert "nope.yaml" in result.stdout.str() + result.stderr.str()


def test_unknown_stage_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=HEADER + ALL_PASS)
    result = pytester.runpytest("--stage", "post-deplyo", "--target", "t.yaml", "-p", "no:cacheprovider", *QUIET_PLUGINS)

    assert int(result.ret) == 3
    assert "post-deploy" in result.stdout.str() + result.stderr.str()


# --------------------------------------------------------------------------- internal error: exit 4


def test_a_check_module_that_fails_to_import_is_an_internal_error(gate, pytester: pytest.Pytester) -> None:  # type: ignore[no-untyped-def]
    pytester.makepyfile(test_broken="import releasegate_no_such_module\n")
    result = gate(ALL_PASS)

    assert result.ret == 4, result.stdout
    verdict = result.verdict
    assert verdict["decision"] == "hold" and verdict["exit_code"] == 4
    assert any("check module failed to load" in r and "test_broken.py" in r for r in verdict["reasons"])


def test_dry_run_does_not_hide_a_broken_check_module(gate, pytester: pytest.Pytester) -> None:  # type: ignore[no-untyped-def]
    pytester.makepyfile(test_broken="raise ImportError('simulated broken check module')\n")
    result = gate(ALL_PASS, "--dry-run")

    assert result.ret == 4, result.stdout
    assert result.verdict["exit_code"] == 4
    assert "exiting 0" not in result.stdout


# --------------------------------------------------------------------------- selection


def test_dry_run_exits_0_and_records_the_would_be_decision(gate) -> None:  # type: ignore[no-untyped-def]
    result = gate(
        """
        @pytest.mark.check("health.readiness")
        def test_ready(check):
            check.conclude(Finding("failed", "answered HTTP 503"))
        """,
        "--dry-run",
    )

    assert result.ret == 0, result.stdout
    verdict = result.verdict
    assert verdict["decision"] == "rollback"
    assert verdict["exit_code"] == 1
    assert verdict["dry_run"] is True
    assert "dry run: would exit 1, exiting 0" in result.stdout
    assert "(dry run: exit 0)" in (result.report_dir / "summary.md").read_text(encoding="utf-8").splitlines()[0]


FOUR_CHECKS = """
@pytest.mark.check("health.liveness")
def test_live(check):
    check.conclude(Finding("passed", "alive"))

@pytest.mark.check("health.readiness")
def test_ready(check):
    check.conclude(Finding("failed", "503"))

@pytest.mark.check("health.deep")
def test_deep(check):
    check.conclude(Finding("passed", "deep ok"))

@pytest.mark.check("health.release_id")
def test_release(check):
    check.conclude(Finding("passed", "right release"))
"""


def test_only_selects_checks_by_id_prefix_and_glob(gate) -> None:  # type: ignore[no-untyped-def]
    result = gate(FOUR_CHECKS, "--only", "health.liveness", "health.d*", "--only", "health.release_id")

    assert result.ret == 0, result.stdout
    assert result.outcomes() == {"health.liveness": "passed", "health.deep": "passed", "health.release_id": "passed"}
    assert "1 deselected" in result.stdout


def test_only_with_a_pattern_that_selects_nothing_is_a_usage_error(gate) -> None:  # type: ignore[no-untyped-def]
    result = gate(FOUR_CHECKS, "--only", "health.live")

    assert result.ret == 3, result.stdout + result.stderr
    assert "did you mean health.liveness" in result.stdout + result.stderr


@pytest.fixture
def pre_deploy_check(monkeypatch: pytest.MonkeyPatch) -> str:
    """A registered check of another stage (the registry holds only post-deploy checks so far)."""
    spec = CheckSpec(
        id="security.fake_pre", stage="pre-deploy", family="security", severity="blocking", description="test only", fault=None
    )
    monkeypatch.setattr(registry, "CHECKS", (*registry.CHECKS, spec))
    monkeypatch.setitem(registry._BY_ID, spec.id, spec)
    return spec.id


def test_a_check_of_another_stage_is_deselected(gate, pre_deploy_check: str) -> None:  # type: ignore[no-untyped-def]
    result = gate(
        ALL_PASS
        + f"""
@pytest.mark.check("{pre_deploy_check}")
def test_pre(check):
    check.conclude(Finding("failed", "would roll back if it ran"))
"""
    )

    assert result.ret == 0, result.stdout
    assert set(result.outcomes()) == {"health.liveness", "health.readiness"}
    assert "1 deselected" in result.stdout


def test_a_stage_with_no_checks_of_its_own_holds(gate) -> None:  # type: ignore[no-untyped-def]
    result = gate(ALL_PASS, "--stage", "pre-deploy")

    assert result.ret == 2, result.stdout
    assert result.verdict["stage"] == "pre-deploy"
    assert result.verdict["checks"] == []
    assert "2 deselected" in result.stdout


def test_deadline_exceeded_makes_the_remaining_checks_error(gate) -> None:  # type: ignore[no-untyped-def]
    result = gate(
        """
        @pytest.mark.check("health.liveness")
        def test_live(check):
            time.sleep(0.3)
            check.conclude(Finding("passed", "alive, slowly"))

        @pytest.mark.check("health.readiness")
        def test_ready(check):
            check.conclude(Finding("passed", "ready"))

        @pytest.mark.check("health.deep")
        def test_deep(check):
            check.conclude(Finding("passed", "deep"))
        """,
        gates="deadline_s: 0.2\nprobe: {timeout_s: 0.1, retry: {timeout_s: 0}}\n",
    )

    assert result.ret == 2, result.stdout
    assert result.outcomes() == {"health.liveness": "passed", "health.readiness": "error", "health.deep": "error"}
    for row in result.verdict["checks"][1:]:
        assert "deadline of 0.2 s passed" in row["summary"]


# --------------------------------------------------------------------------- gate off


def test_without_stage_the_plugin_does_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_plain="""
        import pytest

        def test_one():
            assert True

        @pytest.mark.check("health.liveness")  # the marker is known, so --strict-markers accepts it
        def test_marked():
            assert True

        def test_other_failure():
            assert 1 == 2
        """
    )
    result = pytester.runpytest("--strict-markers", "-p", "no:cacheprovider", *QUIET_PLUGINS)

    result.assert_outcomes(passed=2, failed=1)
    assert int(result.ret) == 1  # plain pytest semantics, not a gate decision
    assert "releasegate verdict" not in result.stdout.str()
    assert "PASS" not in result.stdout.str()
    assert not (pytester.path / "reports").exists()


# --------------------------------------------------------------------------- fail closed


def test_a_check_that_returns_without_a_finding_is_an_error_not_a_pass(gate) -> None:  # type: ignore[no-untyped-def]
    result = gate(
        """
        @pytest.mark.check("health.liveness")
        def test_live(check):
            check.conclude(Finding("passed", "alive"))

        @pytest.mark.check("health.readiness")
        def test_ready(check):
            if False:  # the branch that would have concluded
                check.conclude(Finding("passed", "ready"))
        """
    )

    assert result.ret == 2, result.stdout
    assert result.outcomes() == {"health.liveness": "passed", "health.readiness": "error"}
    assert "without a finding" in result.verdict["checks"][1]["summary"]


def test_checks_deselected_behind_the_gates_back_hold(gate) -> None:  # type: ignore[no-untyped-def]
    # Given a CI job whose PYTEST_ADDOPTS (or -k) deselects the failing readiness check
    result = gate(
        ALL_PASS.replace('"ready"', '"not ready"').replace('Finding("passed", "not ready"', 'Finding("failed", "not ready"'), "-k", "live"
    )
    # Then the gate does not promote on the evidence that is left
    assert result.ret == 2, result.stdout
    assert "produced no result" in result.verdict["reasons"][0] and "test_ready" in result.verdict["reasons"][0]


def test_a_check_that_ends_the_session_early_holds(gate) -> None:  # type: ignore[no-untyped-def]
    result = gate(
        """
        @pytest.mark.check("health.liveness")
        def test_live(check):
            check.conclude(Finding("passed", "alive"))
            pytest.exit("bye", returncode=0)

        @pytest.mark.check("health.readiness")
        def test_ready(check):
            check.conclude(Finding("failed", "not ready"))
        """
    )
    assert result.ret == 2, result.stdout
    assert result.verdict["decision"] == "hold"


def test_a_hanging_check_is_ended_by_the_watchdog_with_a_partial_verdict(pytester: pytest.Pytester) -> None:
    # Given a check that blocks far beyond the run's deadline (a custom probe with no timeout)
    pytester.makepyfile(
        test_suite=HEADER
        + textwrap.dedent(
            """
            @pytest.mark.check("health.liveness")
            def test_live(check):
                check.conclude(Finding("passed", "alive"))

            @pytest.mark.check("health.readiness")
            def test_ready(check):
                time.sleep(120)
            """
        )
    )
    (pytester.path / "target.yaml").write_text("name: mini\nbase_url: http://127.0.0.1:9\n")
    (pytester.path / "gates.yaml").write_text("deadline_s: 1\nprobe: {timeout_s: 0.5, retry: {timeout_s: 0}}\n")
    report_dir = pytester.path / "report"
    # When it runs in its own process (the watchdog ends the process)
    result = pytester.runpytest_subprocess(
        "--stage",
        "post-deploy",
        "--target",
        "target.yaml",
        "--gates",
        "gates.yaml",
        "--report-dir",
        str(report_dir),
        *QUIET_PLUGINS,
        timeout=60,
    )
    # Then it ends soon after the deadline with hold, naming the check that hung
    assert result.ret == 2, result.stdout.str() + result.stderr.str()
    verdict = json.loads((report_dir / "verdict.json").read_text())
    assert verdict["decision"] == "hold"
    assert "deadline of 1 s passed" in verdict["reasons"][0] and "test_ready" in verdict["reasons"][0]
    assert [c["id"] for c in verdict["checks"]] == ["health.liveness"]


def test_a_reused_report_dir_never_shows_the_previous_verdict(gate, pytester: pytest.Pytester) -> None:  # type: ignore[no-untyped-def]
    # Given a report dir that holds an earlier run's promote
    report_dir = pytester.path / "report"
    report_dir.mkdir()
    (report_dir / "verdict.json").write_text('{"decision": "promote"}')
    (report_dir / "allure-results").mkdir()
    (report_dir / "allure-results" / "old-result.json").write_text("{}")
    # When a new run fails
    result = gate(ALL_PASS.replace('Finding("passed", "ready"', 'Finding("failed", "not ready"'))
    # Then only the new run's artifacts are there
    assert result.verdict["decision"] == "rollback"
    assert not (report_dir / "allure-results" / "old-result.json").exists()


def test_only_with_a_pattern_of_another_stage_is_a_usage_error(gate, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    pre = CheckSpec(id="security.hsts", stage="pre-deploy", family="headers", severity="blocking", description="d", fault="no-hsts")
    monkeypatch.setattr(registry, "CHECKS", (*registry.CHECKS, pre))
    monkeypatch.setattr(registry, "_BY_ID", {**registry._BY_ID, pre.id: pre})
    result = gate(ALL_PASS, "--only", "security")
    assert result.ret == 3
    assert "selects only pre-deploy checks" in result.stdout + result.stderr


def test_security_findings_are_written_as_sarif(gate) -> None:  # type: ignore[no-untyped-def]
    result = gate(
        """
        @pytest.mark.check("security.hsts")
        def test_hsts(check):
            check.conclude(Finding("failed", "no Strict-Transport-Security", observed=None, expected="max-age >= 31536000"))

        @pytest.mark.check("security.headers")
        def test_headers(check):
            check.conclude(Finding("passed", "all present"))
        """,
        stage="pre-deploy",
    )
    assert result.ret == 1, result.stdout
    sarif = json.loads((result.report_dir / "security.sarif").read_text())
    assert [r["ruleId"] for r in sarif["runs"][0]["results"]] == ["security.hsts"]


def test_a_stage_without_security_checks_writes_no_sarif(gate) -> None:  # type: ignore[no-untyped-def]
    result = gate(ALL_PASS)
    assert result.ret == 0 and not (result.report_dir / "security.sarif").exists()


def test_measure_turns_a_probe_that_could_not_measure_into_an_error(gate) -> None:  # type: ignore[no-untyped-def]
    result = gate(
        """
        from releasegate._exceptions import ProbeTimeout

        @pytest.mark.check("health.liveness")
        def test_live(check):
            def probe():
                raise ProbeTimeout("no complete answer within 1 s", url="https://x.test/healthz")
            check.measure(probe)
            check.conclude(Finding("passed", "never reached"))
        """
    )
    assert result.ret == 2, result.stdout
    [row] = result.verdict["checks"]
    assert row["outcome"] == "error" and row["evidence"] == {"url": "https://x.test/healthz"}
