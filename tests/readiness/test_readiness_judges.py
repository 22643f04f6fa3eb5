"""The readiness judges, pure: a version document (or rollback observations) in, one Finding out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from releasegate.config import HealthPaths, Target
from releasegate.probes import readiness
from releasegate.probes.backup import ToolRun
from releasegate.probes.http import HttpObservation
from releasegate.probes.readiness import Hop, Part

HEALTHY = {
    "version": "1.4.0",
    "releaseId": "2026.11.26-1",
    "schemaVersion": 7,
    "databaseSchemaVersion": 7,
    "pendingMigrations": [],
    "clientVersions": ">=1.2.0,<2.0.0",
}


def answer(document: Any = None, *, status: int = 200, body: bytes | None = None, truncated: bool = False) -> HttpObservation:
    raw = body if body is not None else json.dumps(document).encode()
    return HttpObservation(
        url="https://app.test/version",
        status=status,
        reason="OK" if status == 200 else "Error",
        headers={"Content-Type": "application/json"},
        body=raw,
        truncated=truncated,
        latency_ms=3.0,
    )


def with_(**changes: Any) -> dict[str, Any]:
    document = {**HEALTHY, **changes}
    return {k: v for k, v in document.items() if v is not ...}


# --------------------------------------------------------------------------- where the document is


def test_the_version_document_is_where_health_release_id_reads_it() -> None:
    def target(health: HealthPaths | None) -> Target:
        return Target(name="t", base_url="https://app.test", health=health)

    assert readiness.version_url(target(HealthPaths(version="/version", deep="/health"))) == "https://app.test/version"
    assert readiness.version_url(target(HealthPaths(deep="/health"))) == "https://app.test/health"
    assert readiness.version_url(target(HealthPaths(liveness="/healthz"))) is None
    assert readiness.version_url(target(None)) is None


# --------------------------------------------------------------------------- migrations


def test_migrations_pass_when_app_and_database_agree_and_nothing_is_pending() -> None:
    finding = readiness.judge_migrations(answer(HEALTHY), expected_schema_version=None)
    assert finding.outcome == "passed", finding.summary
    assert finding.observed == {"schemaVersion": "7", "databaseSchemaVersion": "7", "pendingMigrations": []}


def test_a_database_behind_with_a_pending_migration_fails_naming_both() -> None:
    document = with_(databaseSchemaVersion=6, pendingMigrations=["0007_tool_run_results"])
    finding = readiness.judge_migrations(answer(document), expected_schema_version=None)
    assert finding.outcome == "failed"
    assert finding.summary == "the app expects schema 7 but the database is at 6; 1 pending migration: 0007_tool_run_results"


def test_pending_migrations_alone_fail_and_a_long_list_is_cut() -> None:
    pending = [f"{n:04d}_step" for n in range(8, 20)]
    finding = readiness.judge_migrations(answer(with_(pendingMigrations=pending)), expected_schema_version=None)
    assert finding.outcome == "failed"
    assert finding.summary == "12 pending migrations: 0008_step, 0009_step, 0010_step, 0011_step, 0012_step and 7 more"
    assert finding.evidence["schema"]["pending_count"] == 12


def test_the_expected_schema_version_must_match_too() -> None:
    assert readiness.judge_migrations(answer(HEALTHY), expected_schema_version=7).outcome == "passed"
    finding = readiness.judge_migrations(answer(HEALTHY), expected_schema_version=8)
    assert finding.outcome == "failed"
    assert finding.summary == "this release expects schema 8, but the app is 7 and the database is 7"


def test_schema_versions_may_be_identifiers_and_007_is_7() -> None:
    document = with_(schemaVersion="ae1027a6acf", databaseSchemaVersion="ae1027a6acf")
    assert readiness.judge_migrations(answer(document), expected_schema_version=None).outcome == "passed"
    assert readiness.judge_migrations(answer(with_(schemaVersion="007")), expected_schema_version=7).outcome == "passed"
    # pending entries may be objects
    finding = readiness.judge_migrations(answer(with_(pendingMigrations=[{"name": "0008_x"}])), expected_schema_version=None)
    assert finding.summary.endswith("1 pending migration: 0008_x")


@pytest.mark.parametrize("field", ["schemaVersion", "databaseSchemaVersion", "pendingMigrations"])
def test_a_document_without_a_schema_field_cannot_be_judged_and_names_it(field: str) -> None:
    finding = readiness.judge_migrations(answer(with_(**{field: ...})), expected_schema_version=None)
    assert finding.outcome == "error"
    assert finding.summary.startswith(f"the version document does not publish {field}: the target must publish")


@pytest.mark.parametrize(
    ("changes", "cause"),
    [
        ({"databaseSchemaVersion": None}, "databaseSchemaVersion is null"),
        ({"pendingMigrations": None}, "pendingMigrations is null, expected a list"),
        ({"schemaVersion": True}, "schemaVersion is a bool"),
        ({"schemaVersion": 7.5}, "schemaVersion is a float"),
        ({"schemaVersion": " "}, "schemaVersion is empty"),
        ({"pendingMigrations": "0008_x"}, "pendingMigrations is a str, expected a list"),
    ],
)
def test_unreadable_schema_fields_are_errors_never_passes(changes: dict[str, Any], cause: str) -> None:
    finding = readiness.judge_migrations(answer(with_(**changes)), expected_schema_version=None)
    assert finding.outcome == "error" and finding.summary.startswith(cause), finding.summary


@pytest.mark.parametrize(
    ("observation", "cause"),
    [
        (answer(HEALTHY, status=503), "cannot read the version document: HTTP 503"),
        (answer(body=b"<html>"), "body is not valid JSON"),
        (answer([1, 2]), "the version document is not a JSON object"),
        (answer(HEALTHY, truncated=True), "the version document is larger than"),
    ],
)
def test_a_version_document_that_cannot_be_read_is_an_error(observation: HttpObservation, cause: str) -> None:
    for finding in (
        readiness.judge_migrations(observation, expected_schema_version=None),
        readiness.judge_client_compat(observation, oldest_client_version="1.2.0"),
    ):
        assert finding.outcome == "error" and finding.summary.startswith(cause), finding.summary


# --------------------------------------------------------------------------- client compatibility


@pytest.mark.parametrize(
    ("spec", "version", "inside"),
    [
        (">=1.2.0,<2.0.0", "1.2.0", True),
        (">=1.2.0,<2.0.0", "1.2", True),  # 1.2 == 1.2.0
        (">=1.2.0,<2.0.0", "1.1.9", False),
        (">=1.2.0,<2.0.0", "2", False),
        (">=1.5.0,<2.0.0", "1.2.0", False),
        (" >= 1.2 , != 1.3.1 ", "1.3.1", False),
        (">=1.2,!=1.3.1", "1.3.2", True),
        ("==1.4.*", "1.4.9", True),
        ("==1.4.*", "1.5.0", False),
        ("!=1.4.*", "1.4.0", False),
        ("~=1.4.2", "1.4.9", True),
        ("~=1.4.2", "1.4.1", False),
        ("~=1.4.2", "1.5.0", False),
        ("~=1.4", "1.9", True),
        ("~=1.4", "2.0", False),
        (">1.2", "1.2.0", False),
        ("<=1.2", "1.2.0", True),
        ("==1.2", "1.2.0", True),
    ],
)
def test_version_ranges_follow_pep_440_for_release_numbers(spec: str, version: str, inside: bool) -> None:
    clauses = readiness.parse_specifier(spec)
    assert all(clause.admits(readiness.parse_version(version)) for clause in clauses) is inside


@pytest.mark.parametrize(
    "spec",
    ["", "1.2.0", ">=1.2.0,", ">=1.2.0rc1", ">=1.2.0+local", "===1.2.0", ">=1.*", "~=1", "~=1.2.*", ">=v1.2", "^1.2.0", ">=1.2.0 <2"],
)
def test_anything_else_is_refused_not_guessed(spec: str) -> None:
    with pytest.raises(ValueError):
        readiness.parse_specifier(spec)


def test_client_compat_passes_inside_the_range() -> None:
    finding = readiness.judge_client_compat(answer(HEALTHY), oldest_client_version="1.2.0")
    assert finding.outcome == "passed"
    assert finding.summary == "the oldest client in use, 1.2.0, is inside >=1.2.0,<2.0.0"


def test_client_compat_fails_outside_naming_the_clause() -> None:
    finding = readiness.judge_client_compat(answer(with_(clientVersions=">=1.5.0,<2.0.0")), oldest_client_version="1.2.0")
    assert finding.outcome == "failed"
    assert finding.summary == "the oldest client in use, 1.2.0, is outside the supported range >=1.5.0,<2.0.0 (fails >=1.5.0)"
    assert finding.evidence["violated"] == [">=1.5.0"]


@pytest.mark.parametrize(
    ("changes", "cause"),
    [
        ({"clientVersions": ...}, "the version document does not publish clientVersions"),
        ({"clientVersions": [">=1.2"]}, "clientVersions is a list"),
        ({"clientVersions": "1.2 - 2.0"}, "clientVersions '1.2 - 2.0' is not a version range the gate can read"),
    ],
)
def test_client_compat_cannot_judge_a_missing_or_unreadable_range(changes: dict[str, Any], cause: str) -> None:
    finding = readiness.judge_client_compat(answer(with_(**changes)), oldest_client_version="1.2.0")
    assert finding.outcome == "error" and finding.summary.startswith(cause), finding.summary


def test_client_compat_without_a_policy_is_an_error_saying_what_to_set() -> None:
    finding = readiness.unconfigured_client_compat()
    assert finding.outcome == "error"
    assert finding.summary.startswith("not configured: set thresholds.readiness.oldest_client_version in gates.yaml")


# --------------------------------------------------------------------------- rollback


def run(returncode: int | None, *, stdout: bytes = b"", stderr: bytes = b"", elapsed_s: float = 0.5) -> ToolRun:
    return ToolRun(("helm", "rollback", "api", "--dry-run"), returncode, elapsed_s, stdout, stderr, 0)


def test_a_dry_run_that_exits_0_is_ready() -> None:
    part = readiness.judge_command(run(0, stdout=b"Rollback was a success!"), timeout_s=60, limit_s=60)
    assert (part.outcome, part.summary) == ("passed", "verify_command exited 0 in 0.5 s")
    assert part.evidence["stdout"] == "Rollback was a success!" and part.evidence["command"] == "helm rollback api --dry-run"


def test_a_dry_run_that_exits_non_zero_fails_with_its_last_line() -> None:
    part = readiness.judge_command(run(1, stderr=b"Error: release: not found\n\n"), timeout_s=60, limit_s=60)
    assert (part.outcome, part.summary) == ("failed", "verify_command exited 1: Error: release: not found")


def test_a_dry_run_stopped_at_its_timeout_fails_but_one_cut_by_the_deadline_could_not_judge() -> None:
    assert readiness.judge_command(run(None, elapsed_s=60), timeout_s=60, limit_s=60).outcome == "failed"
    cut = readiness.judge_command(run(None, elapsed_s=3), timeout_s=60, limit_s=3)
    assert cut.outcome == "error" and "by the run's deadline" in cut.summary


def hop(status: int, *, location: str | None = None, token_sent: bool = True, method: str = "HEAD") -> Hop:
    return Hop(method, "https://app.test/releases/r0/manifest", status, 4.0, token_sent, location)


@pytest.mark.parametrize(
    ("hops", "outcome", "start"),
    [
        ([hop(200)], "passed", "the previous artifact answers HTTP 200"),
        ([hop(302, location="https://blobs.test/x", token_sent=True), hop(200, token_sent=False)], "passed", "the previous artifact"),
        ([hop(404)], "failed", "the previous artifact is not available: HTTP 404"),
        ([hop(410, method="GET")], "failed", "the previous artifact is not available: HTTP 410 (GET"),
        ([hop(503)], "failed", "the previous artifact is not available: HTTP 503"),
        ([hop(403, token_sent=False)], "error", "previous_artifact_url answered HTTP 403 without credentials"),
        ([hop(401)], "error", "previous_artifact_url answered HTTP 401 even with the target's token"),
        ([hop(429)], "error", "previous_artifact_url kept answering 429"),
        ([hop(302, location="/a")] * 6, "error", "previous_artifact_url redirects more than the 5 times"),
        ([hop(302, location="ftp://x/a")], "error", "previous_artifact_url redirects to ftp://x/a, which is not an http(s) URL"),
        ([hop(302)], "error", "previous_artifact_url redirects without a Location"),
        ([], "error", "previous_artifact_url: no request was made"),
    ],
)
def test_the_previous_artifact_must_answer_2xx(hops: list[Hop], outcome: str, start: str) -> None:
    part = readiness.judge_artifact(hops)
    assert part.outcome == outcome and part.summary.startswith(start), part.summary


def part(name: str, outcome: str) -> Part:
    return Part(name, outcome, f"{name} {outcome}", {"x": 1})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        (("passed", "passed"), "passed"),
        (("passed", "failed"), "failed"),
        (("failed", "error"), "failed"),  # a known failure is not hidden by the other's error
        (("passed", "error"), "error"),
    ],
)
def test_both_proofs_configured_both_must_hold(outcomes: tuple[str, str], expected: str) -> None:
    parts = [part("verify_command", outcomes[0]), part("previous_artifact_url", outcomes[1])]
    finding = readiness.judge_rollback(parts)
    assert finding.outcome == expected
    assert finding.observed == {"verify_command": outcomes[0], "previous_artifact_url": outcomes[1]}
    assert finding.evidence["verify_command"] == {"outcome": outcomes[0], "summary": f"verify_command {outcomes[0]}", "x": 1}


def test_one_proof_alone_decides() -> None:
    assert readiness.judge_rollback([part("previous_artifact_url", "passed")]).outcome == "passed"
    assert readiness.judge_rollback([part("verify_command", "failed")]).outcome == "failed"
    assert readiness.judge_rollback([]).outcome == "error"
