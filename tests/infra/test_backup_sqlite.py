"""infra.backup.* on SQLite backups of the reference store, through the real gate path.

The backups are what ``releasegate demo`` writes (reference.backups.write_demo_backup), taken
from a live reference store (WAL mode, uncheckpointed writes), healthy and with each backup
fault; the gate runs ``--only infra.backup`` against a target file in tmp_path.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from releasegate.cli import main
from releasegate.reference.backups import STALE_AGE_S, write_demo_backup
from releasegate.reference.store import Store

CHECKS = ("infra.backup.freshness", "infra.backup.integrity", "infra.backup.restore_drill")
GATES = """\
thresholds:
  backup:
    rpo_hours: 24
    rto_s: 60
    sanity_queries:
      - {name: messages table, sql: "SELECT name FROM sqlite_master WHERE type='table' AND name='messages'", min_rows: 1}
      - {name: one conversation, sql: "SELECT count(*) FROM conversations", equals: "1"}
"""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A live reference store with a conversation and two messages, still open (WAL, not checkpointed)."""
    live = Store(tmp_path / "data" / "service.db")
    live.open()
    conversation = live.create_conversation("release plan", "alice")
    live.add_message(conversation.id, 1, "alice", "first")
    live.add_message(conversation.id, 2, "alice", "second")
    try:
        yield live
    finally:
        live.close()


def gate(tmp_path: Path, backups: str, gates: str = GATES) -> dict[str, Any]:
    target = tmp_path / "target.yaml"
    target.write_text(f"name: backups\nbase_url: https://127.0.0.1:9\n{backups}", encoding="utf-8")
    gates_path = tmp_path / "gates.yaml"
    gates_path.write_text(gates, encoding="utf-8")
    report = tmp_path / "report"
    argv = ["run", "--stage", "pre-deploy", "--only", "infra.backup", "--target", str(target), "--gates", str(gates_path)]
    code = main([*argv, "--report-dir", str(report)])
    verdict: dict[str, Any] = json.loads((report / "verdict.json").read_text(encoding="utf-8"))
    assert verdict["exit_code"] == code
    return verdict


def outcomes(verdict: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["outcome"] for c in verdict["checks"]}


def test_a_healthy_demo_backup_is_fresh_intact_and_restores(tmp_path: Path, store: Store) -> None:
    # Given a fresh online backup of the live store
    write_demo_backup(store.path, tmp_path / "backups", frozenset())

    # When the backup checks run
    verdict = gate(tmp_path, "backups: [{name: store, kind: sqlite, path: backups}]")

    # Then all three pass, and the drill answered the sanity queries from the restored copy
    assert verdict["decision"] == "pass", verdict["reasons"]
    assert outcomes(verdict) == dict.fromkeys(CHECKS, "passed")
    drill = next(c for c in verdict["checks"] if c["id"] == "infra.backup.restore_drill")
    assert [(q["name"], q["rows"], q["first"]) for q in drill["evidence"]["queries"]] == [
        ("messages table", 1, "messages"),
        ("one conversation", 1, "1"),
    ]
    assert drill["evidence"]["restore_s"] is not None and drill["evidence"]["rto_s"] == 60
    assert drill["evidence"]["subject"] == "store"


@pytest.mark.parametrize(
    ("fault", "broken"),
    [
        ("backup-stale", {"infra.backup.freshness"}),
        # A file that is no longer a database cannot be restored either.
        ("backup-corrupt", {"infra.backup.integrity", "infra.backup.restore_drill"}),
        ("backup-empty", {"infra.backup.restore_drill"}),
    ],
)
def test_each_backup_fault_breaks_its_check(tmp_path: Path, store: Store, fault: str, broken: set[str]) -> None:
    write_demo_backup(store.path, tmp_path / "backups", frozenset({fault}))

    verdict = gate(tmp_path, "backups: [{name: store, kind: sqlite, path: backups}]")

    assert verdict["decision"] == "rollback"
    assert outcomes(verdict) == {check: "failed" if check in broken else "passed" for check in CHECKS}


def test_the_empty_backup_fails_the_drill_even_without_sanity_queries(tmp_path: Path, store: Store) -> None:
    write_demo_backup(store.path, tmp_path / "backups", frozenset({"backup-empty"}))

    verdict = gate(tmp_path, "backups: [{name: store, kind: sqlite, path: backups}]", gates="{}\n")

    drill = next(c for c in verdict["checks"] if c["id"] == "infra.backup.restore_drill")
    assert drill["outcome"] == "failed"
    assert "no table" in drill["summary"] and "no sanity query is configured" in drill["summary"]


def test_without_sanity_queries_a_healthy_drill_passes_and_says_what_it_checked(tmp_path: Path, store: Store) -> None:
    write_demo_backup(store.path, tmp_path / "backups", frozenset())

    verdict = gate(tmp_path, "backups: [{name: store, kind: sqlite, path: backups}]", gates="{}\n")

    drill = next(c for c in verdict["checks"] if c["id"] == "infra.backup.restore_drill")
    assert drill["outcome"] == "passed"
    assert "holds 5 tables; no sanity query is configured" in drill["summary"]


def test_each_source_is_judged_on_its_own(tmp_path: Path, store: Store) -> None:
    write_demo_backup(store.path, tmp_path / "fresh", frozenset())
    write_demo_backup(store.path, tmp_path / "old", frozenset({"backup-stale"}))

    verdict = gate(
        tmp_path,
        "backups:\n"
        "  - {name: fresh, kind: sqlite, path: fresh}\n"
        "  - {name: old, kind: sqlite, path: 'old/*.db'}\n"
        "  - {name: gone, kind: sqlite, path: nowhere}\n",
    )

    freshness = {c["evidence"]["subject"]: (c["outcome"], c["summary"]) for c in verdict["checks"] if c["id"] == "infra.backup.freshness"}
    assert freshness["fresh"][0] == "passed"
    assert freshness["old"][0] == "failed" and "72.0 h old" in freshness["old"][1]
    assert freshness["gone"] == ("failed", f"gone: no backup at {tmp_path / 'nowhere'} (no such file or folder)")


def test_a_target_without_backups_skips_the_checks_naming_the_key(tmp_path: Path) -> None:
    verdict = gate(tmp_path, "")

    assert {(c["id"], c["outcome"], c["summary"]) for c in verdict["checks"]} == {
        (check, "skipped", "the target names no backups (key: backups)") for check in CHECKS
    }
    assert verdict["decision"] == "hold"  # nothing was judged: never pass


def test_a_postgres_source_without_restore_server_is_an_error_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "dumps").mkdir()
    (tmp_path / "dumps" / "app.dump").write_bytes(b"PGDMP not really")

    verdict = gate(tmp_path, "backups: [{name: store, kind: sqlite, path: nowhere}, {name: app, kind: postgres, path: dumps}]")

    drill = next(c for c in verdict["checks"] if c["id"] == "infra.backup.restore_drill" and c["evidence"]["subject"] == "app")
    assert drill["outcome"] == "error"
    assert "backups[1].restore_server is not set" in drill["summary"]


# --------------------------------------------------------------------------- write_demo_backup itself


def test_the_demo_backup_is_one_consistent_file_with_the_live_data(tmp_path: Path, store: Store) -> None:
    path = write_demo_backup(store.path, tmp_path / "backups", frozenset())

    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no -wal/-shm beside it
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 2
    finally:
        db.close()
    assert path.name.startswith("service-") and path.suffix == ".db"


def test_the_stale_backup_is_three_days_old_by_name_and_mtime(tmp_path: Path, store: Store) -> None:
    now = 1_800_000_000.0

    path = write_demo_backup(store.path, tmp_path / "backups", frozenset({"backup-stale"}), wall=lambda: now)

    assert path.stat().st_mtime == now - STALE_AGE_S
    assert path.name == "service-20270112T080000Z.db"  # 2027-01-15T08:00:00Z minus three days


def test_two_backups_in_one_second_get_two_names(tmp_path: Path, store: Store) -> None:
    first = write_demo_backup(store.path, tmp_path / "backups", frozenset(), wall=lambda: 1_800_000_000.0)
    second = write_demo_backup(store.path, tmp_path / "backups", frozenset(), wall=lambda: 1_800_000_000.0)

    assert first != second and first.exists() and second.exists()
