"""What the readiness checks read from the reference: schema state, client range, release artifacts."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ref_support import make_settings, running

from releasegate.reference.settings import DEFAULT_RELEASE, PREVIOUS_RELEASE, WRONG_RELEASE
from releasegate.reference.store import MIGRATIONS

CURRENT = f"/releases/{DEFAULT_RELEASE}/manifest"
PREVIOUS = f"/releases/{PREVIOUS_RELEASE}/manifest"


def test_the_database_records_every_migration_of_the_app(tmp_path: Path) -> None:
    with running(make_settings(tmp_path)) as client:
        version = client.get("/version").json()
    assert version["schemaVersion"] == version["databaseSchemaVersion"] == len(MIGRATIONS) == 7
    assert version["pendingMigrations"] == []
    # The record is in the database file itself (what a backup carries)
    with sqlite3.connect(tmp_path / "service.db") as db:
        rows = db.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
    assert rows == list(enumerate(MIGRATIONS, start=1))


def test_fault_schema_mismatch_leaves_the_database_one_migration_behind(tmp_path: Path) -> None:
    with running(make_settings(tmp_path, "schema-mismatch")) as client:
        version = client.get("/version").json()
    assert (version["schemaVersion"], version["databaseSchemaVersion"]) == (7, 6)
    assert version["pendingMigrations"] == ["0007_tool_run_results"]


def test_a_restart_without_the_fault_finds_the_database_migrated_again(tmp_path: Path) -> None:
    with running(make_settings(tmp_path, "schema-mismatch")) as client:
        assert client.get("/version").json()["databaseSchemaVersion"] == 6
    with running(make_settings(tmp_path)) as client:
        assert client.get("/version").json()["databaseSchemaVersion"] == 7


def test_fault_db_down_publishes_no_database_schema(tmp_path: Path) -> None:
    with running(make_settings(tmp_path, "db-down")) as client:
        answer = client.get("/version")
    # /version still answers (it is the service's identity), but cannot say what the database holds
    assert answer.status_code == 200
    assert answer.json()["databaseSchemaVersion"] is None and answer.json()["pendingMigrations"] is None


def test_fault_unsupported_client_narrows_the_client_range(tmp_path: Path) -> None:
    with running(make_settings(tmp_path)) as client:
        assert client.get("/version").json()["clientVersions"] == ">=1.2.0,<2.0.0"
    with running(make_settings(tmp_path, "unsupported-client")) as client:
        assert client.get("/version").json()["clientVersions"] == ">=1.5.0,<2.0.0"


def test_the_current_and_the_previous_release_artifacts_answer(tmp_path: Path) -> None:
    with running(make_settings(tmp_path)) as client:
        current, previous = client.get(CURRENT), client.get(PREVIOUS)
        head = client.head(PREVIOUS)
        other = client.get("/releases/2020.01.01-1/manifest")
    assert current.status_code == previous.status_code == head.status_code == 200
    assert current.json()["releaseId"] == DEFAULT_RELEASE and previous.json()["releaseId"] == PREVIOUS_RELEASE
    assert current.json()["digest"].startswith("sha256:") and current.json()["digest"] != previous.json()["digest"]
    assert head.content == b""
    assert other.status_code == 404


def test_fault_no_previous_artifact_removes_only_the_previous_release(tmp_path: Path) -> None:
    with running(make_settings(tmp_path, "no-previous-artifact")) as client:
        assert client.get(CURRENT).status_code == 200
        assert client.get(PREVIOUS).status_code == 404
        assert client.head(PREVIOUS).status_code == 404


def test_wrong_release_serves_the_previous_release(tmp_path: Path) -> None:
    assert WRONG_RELEASE == PREVIOUS_RELEASE
    with running(make_settings(tmp_path, "wrong-release")) as client:
        assert client.get("/version").json()["releaseId"] == PREVIOUS_RELEASE
        # A rollback target is still there: the previous artifact answers
        assert client.get(PREVIOUS).status_code == 200


def test_release_artifacts_are_not_rate_limited(tmp_path: Path) -> None:
    # Given a per-IP budget far smaller than the requests sent
    with running(make_settings(tmp_path)) as client:
        statuses = {client.head(PREVIOUS).status_code for _ in range(50)}
    assert statuses == {200}
