"""infra.backup.* against a real PostgreSQL, through the real gate path.

A throw-away cluster (tests/postgres_server.py) with a seeded application database, dumped with
``pg_dump -Fc``; the gate restores it into a scratch database on the same server, runs the
sanity queries and drops the scratch database. The superuser password reaches the tools only
as PGPASSWORD, and must appear in no output. Skipped locally without the PostgreSQL binaries,
failed under RELEASEGATE_REQUIRE_REAL=1.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from postgres_server import RunningPostgres, running_postgres
from releasegate.cli import main

pytestmark = pytest.mark.real

PASSWORD_ENV = "RG_TEST_RESTORE_PASSWORD"
MESSAGES = 20_000
SEED = f"""
CREATE TABLE conversations (id serial PRIMARY KEY, title text NOT NULL, owner text NOT NULL);
CREATE TABLE messages (id serial PRIMARY KEY, conversation_id int NOT NULL REFERENCES conversations, seq int NOT NULL, text text NOT NULL);
CREATE INDEX messages_by_conversation ON messages (conversation_id, seq);
INSERT INTO conversations (title, owner) SELECT 'conversation ' || g, 'user' || (g % 7) FROM generate_series(1, 200) g;
INSERT INTO messages (conversation_id, seq, text) SELECT 1 + g % 200, g, md5(g::text) FROM generate_series(1, {MESSAGES}) g;
INSERT INTO conversations (title, owner) VALUES ('release plan', 'alice');
"""
SANITY = f"""\
      - {{name: messages, sql: "SELECT count(*) FROM messages", equals: "{MESSAGES}"}}
      - {{name: release plan, sql: "SELECT id FROM conversations WHERE title = 'release plan' AND owner = 'alice'", min_rows: 1}}
"""
CHECKS = ("infra.backup.freshness", "infra.backup.integrity", "infra.backup.restore_drill")


@dataclass(frozen=True)
class Seeded:
    server: RunningPostgres
    dump: Path  # pg_dump -Fc of the application database
    databases: frozenset[str]  # what the server holds before any drill


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    with running_postgres() as server:
        server.create_database("app")
        server.psql(SEED, database="app")
        dump = server.dump("app", tmp_path_factory.mktemp("dumps") / "app.dump")
        yield Seeded(server, dump, frozenset(server.databases()))


@pytest.fixture
def password(seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(PASSWORD_ENV, seeded.server.password)
    return seeded.server.password


def place(tmp_path: Path, content: bytes) -> Path:
    folder = tmp_path / "dumps"
    folder.mkdir(exist_ok=True)
    path = folder / "app-1.dump"
    path.write_bytes(content)
    return path


def gate_argv(tmp_path: Path, seeded: Seeded, *, rto_s: float = 120, sanity: str = SANITY, server: str | None = None) -> list[str]:
    """Write a target (one postgres backup source) and a gates file; the pre-deploy backup run's arguments."""
    restore_server = server or (
        f"{{host: 127.0.0.1, port: {seeded.server.port}, user: postgres, password_env: {PASSWORD_ENV}, bin_dir: '{seeded.server.bin_dir}'}}"
    )
    target = tmp_path / "target.yaml"
    target.write_text(
        f"name: pg\nbase_url: https://127.0.0.1:9\nbackups:\n  - name: app\n    kind: postgres\n    path: 'dumps/*.dump'\n"
        f"    restore_server: {restore_server}\n",
        encoding="utf-8",
    )
    gates = tmp_path / "gates.yaml"
    queries = f"    sanity_queries:\n{sanity}" if sanity else "    sanity_queries: []\n"
    gates.write_text(f"thresholds:\n  backup:\n    rpo_hours: 24\n    rto_s: {rto_s}\n{queries}", encoding="utf-8")
    report = tmp_path / "report"
    return [
        "run",
        "--stage",
        "pre-deploy",
        "--only",
        "infra.backup",
        "--target",
        str(target),
        "--gates",
        str(gates),
        "--report-dir",
        str(report),
    ]


def gate(tmp_path: Path, seeded: Seeded, *, rto_s: float = 120, sanity: str = SANITY, server: str | None = None) -> dict[str, Any]:
    code = main(gate_argv(tmp_path, seeded, rto_s=rto_s, sanity=sanity, server=server))
    verdict: dict[str, Any] = json.loads((tmp_path / "report" / "verdict.json").read_text(encoding="utf-8"))
    assert verdict["exit_code"] == code
    return verdict


def row(verdict: dict[str, Any], check: str) -> dict[str, Any]:
    return next(c for c in verdict["checks"] if c["id"] == check)


def assert_secret_kept(tmp_path: Path, secret: str, captured: pytest.CaptureFixture[str]) -> None:
    out, err = captured.readouterr()
    assert secret not in out + err
    for path in (tmp_path / "report").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), f"the password is in {path.name}"


def test_a_healthy_dump_restores_and_reports_its_restore_time(
    tmp_path: Path, seeded: Seeded, password: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a fresh custom-format dump of the application database
    place(tmp_path, seeded.dump.read_bytes())

    # When the backup checks run
    verdict = gate(tmp_path, seeded)

    # Then all three pass; the drill measured its restore and query times against the RTO
    assert verdict["decision"] == "pass", verdict["reasons"]
    assert {c["id"]: c["outcome"] for c in verdict["checks"]} == dict.fromkeys(CHECKS, "passed")
    drill = row(verdict, "infra.backup.restore_drill")
    evidence = drill["evidence"]
    assert 0 < evidence["restore_s"] <= evidence["total_s"] < 120
    assert evidence["queries_s"] > 0 and evidence["rto_s"] == 120
    assert [(q["name"], q["first"]) for q in evidence["queries"]] == [
        ("messages", str(MESSAGES)),
        ("release plan", evidence["queries"][1]["first"]),
    ]
    assert evidence["queries"][1]["rows"] == 1
    assert "restored in" in drill["summary"] and "of the 120 s RTO" in drill["summary"]
    assert evidence["scratch"].startswith("releasegate_drill_")
    integrity = row(verdict, "infra.backup.integrity")["evidence"]
    assert integrity["toc_entries"] >= 5
    # And the scratch database is gone, and the password is nowhere
    assert seeded.server.databases() == seeded.databases
    assert_secret_kept(tmp_path, password, capsys)
    assert all("PGPASSWORD" not in tool["command"] for tool in evidence["tools"])


def test_a_truncated_dump_fails_integrity_and_the_drill(tmp_path: Path, seeded: Seeded, password: str) -> None:
    # Given a dump cut in the middle of its data: the TOC at its start is whole, so --list alone passes it
    data = seeded.dump.read_bytes()
    place(tmp_path, data[: len(data) // 2])

    verdict = gate(tmp_path, seeded)

    integrity = row(verdict, "infra.backup.integrity")
    assert integrity["outcome"] == "failed"
    assert "reading the data" in integrity["summary"]
    assert integrity["evidence"]["toc_entries"] >= 5  # the listing itself succeeded
    drill = row(verdict, "infra.backup.restore_drill")
    assert drill["outcome"] == "failed"
    assert "does not restore: pg_restore exited 1" in drill["summary"]
    assert verdict["decision"] == "rollback"
    assert seeded.server.databases() == seeded.databases


def test_a_sanity_query_that_finds_nothing_fails_the_drill(tmp_path: Path, seeded: Seeded, password: str) -> None:
    place(tmp_path, seeded.dump.read_bytes())
    sanity = "      - {name: bob's conversation, sql: \"SELECT id FROM conversations WHERE owner = 'bob'\", min_rows: 1}\n"

    verdict = gate(tmp_path, seeded, sanity=sanity)

    drill = row(verdict, "infra.backup.restore_drill")
    assert drill["outcome"] == "failed"
    assert "bob's conversation: 0 rows, expected at least 1" in drill["summary"]
    assert row(verdict, "infra.backup.integrity")["outcome"] == "passed"
    assert seeded.server.databases() == seeded.databases


def test_a_restore_slower_than_the_rto_is_stopped_and_fails(tmp_path: Path, seeded: Seeded, password: str) -> None:
    place(tmp_path, seeded.dump.read_bytes())

    verdict = gate(tmp_path, seeded, rto_s=0.05)

    drill = row(verdict, "infra.backup.restore_drill")
    assert drill["outcome"] == "failed"
    assert "stopped at the RTO of 0.05 s, during the restore" in drill["summary"]
    assert drill["evidence"]["total_s"] < 0.05 + 5  # stopped, not waited for
    # And the half-restored scratch database was dropped all the same
    assert seeded.server.databases() == seeded.databases


def test_a_restore_killed_midway_is_stopped_at_the_rto_and_its_database_dropped(tmp_path: Path, seeded: Seeded, password: str) -> None:
    # Given a dump whose restore takes 2 s: a materialized view that pg_restore refreshes at the end
    seeded.server.create_database("slow")
    try:
        seeded.server.psql("CREATE TABLE t (x int); CREATE MATERIALIZED VIEW slow_view AS SELECT pg_sleep(2) IS NULL AS x", database="slow")
        dump = seeded.server.dump("slow", tmp_path / "slow.dump")
    finally:
        seeded.server.drop_database("slow")
    place(tmp_path, dump.read_bytes())

    # When the drill runs with an RTO of 1 s
    verdict = gate(tmp_path, seeded, rto_s=1, sanity="")

    # Then pg_restore was running when the RTO came, was stopped, and the scratch database (with
    # the session pg_restore left behind) was dropped anyway
    drill = row(verdict, "infra.backup.restore_drill")
    assert drill["outcome"] == "failed"
    assert "stopped at the RTO of 1 s, during the restore" in drill["summary"]
    restore = next(tool for tool in drill["evidence"]["tools"] if "pg_restore" in tool["command"])
    assert restore["stopped"] is True and restore["elapsed_s"] > 0.5
    assert drill["evidence"]["total_s"] < 3
    assert seeded.server.databases() == seeded.databases


def test_without_sanity_queries_the_drill_checks_for_tables_and_says_so(tmp_path: Path, seeded: Seeded, password: str) -> None:
    place(tmp_path, seeded.dump.read_bytes())

    verdict = gate(tmp_path, seeded, sanity="")

    drill = row(verdict, "infra.backup.restore_drill")
    assert drill["outcome"] == "passed"
    assert "holds 2 tables; no sanity query is configured" in drill["summary"]


def test_a_dump_of_an_empty_database_fails_the_drill_without_sanity_queries(tmp_path: Path, seeded: Seeded, password: str) -> None:
    seeded.server.create_database("empty")
    try:
        dump = seeded.server.dump("empty", tmp_path / "empty.dump")
    finally:
        seeded.server.drop_database("empty")
    place(tmp_path, dump.read_bytes())

    verdict = gate(tmp_path, seeded, sanity="")

    assert row(verdict, "infra.backup.restore_drill")["outcome"] == "failed"


def test_a_plain_sql_dump_is_not_a_custom_format_backup(tmp_path: Path, seeded: Seeded, password: str) -> None:
    place(tmp_path, b"--\n-- PostgreSQL database dump\n--\nCREATE TABLE t (id int);\n")

    verdict = gate(tmp_path, seeded)

    integrity = row(verdict, "infra.backup.integrity")
    assert integrity["outcome"] == "failed"
    assert "pg_restore --list" in integrity["summary"]


@pytest.mark.parametrize("value", [None, "Zq9x"])  # unset, or too short to be redacted
def test_an_unset_or_short_password_variable_is_a_configuration_error_naming_it(
    tmp_path: Path, seeded: Seeded, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv(PASSWORD_ENV, raising=False)
    else:
        monkeypatch.setenv(PASSWORD_ENV, value)
    place(tmp_path, seeded.dump.read_bytes())

    # Refused when the target loads (exit 3), not found out by the drill halfway through the run
    code = main(gate_argv(tmp_path, seeded))

    out = capsys.readouterr()
    assert code == 3
    assert "backups[0].restore_server.password_env" in out.err and PASSWORD_ENV in out.err
    assert value is None or value not in out.out + out.err
    assert not (tmp_path / "report" / "verdict.json").exists()


def test_a_wrong_password_is_an_error_and_is_not_shown(
    tmp_path: Path, seeded: Seeded, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = "Wq7-" + secrets.token_urlsafe(12)  # random: the redactor also hides 8-character pieces of a secret
    monkeypatch.setenv(PASSWORD_ENV, wrong)
    place(tmp_path, seeded.dump.read_bytes())

    verdict = gate(tmp_path, seeded)

    drill = row(verdict, "infra.backup.restore_drill")
    assert drill["outcome"] == "error"
    assert drill["summary"].startswith("app: cannot create the scratch database") and "password authentication failed" in drill["summary"]
    assert_secret_kept(tmp_path, wrong, capsys)


def test_the_tools_are_found_without_bin_dir(tmp_path: Path, seeded: Seeded, password: str) -> None:
    place(tmp_path, seeded.dump.read_bytes())
    server = f"{{host: 127.0.0.1, port: {seeded.server.port}, user: postgres, password_env: {PASSWORD_ENV}}}"

    verdict = gate(tmp_path, seeded, server=server)

    assert row(verdict, "infra.backup.restore_drill")["outcome"] == "passed", row(verdict, "infra.backup.restore_drill")["summary"]
