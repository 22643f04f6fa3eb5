"""infra.backup.*: the pure judges (fake observations), and the small I/O pieces one at a time
(which file counts, the bounded tool runner, SQLite integrity and drill on real files)."""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from releasegate._exceptions import ProbeError
from releasegate.config import BackupSource, SanityQuery
from releasegate.probes import backup
from releasegate.probes.backup import BackupFile, DrillObservation, IntegrityObservation, NoBackup, QueryResult
from releasegate.results import Finding

NOW = 1_800_000_000.0
SQLITE = BackupSource(name="store", kind="sqlite", path="backups")
POSTGRES = BackupSource(name="pg", kind="postgres", path="dumps/*.dump")
FILE = BackupFile(path=Path("/b/store-1.db"), size_bytes=40960, mtime=NOW - 3600, matched=2)
MESSAGES = SanityQuery(name="messages table", sql="SELECT name FROM sqlite_master WHERE name='messages'", min_rows=1)
COUNT = SanityQuery(name="message count", sql="SELECT count(*) FROM messages", equals="3")


def ticking(step: float) -> Callable[[], float]:
    """A clock that advances ``step`` seconds every time it is read."""
    now = [0.0]

    def clock() -> float:
        now[0] += step
        return now[0]

    return clock


# --------------------------------------------------------------------------- freshness


def test_a_backup_within_the_rpo_is_fresh() -> None:
    finding = backup.judge_freshness(SQLITE, FILE, now=NOW, rpo_hours=24)

    assert finding.outcome == "passed"
    assert finding.observed == "60 min old"
    assert finding.evidence["age_s"] == 3600.0
    assert finding.evidence["file"] == "/b/store-1.db"
    assert finding.evidence["mtime"].endswith("Z")


def test_a_backup_older_than_the_rpo_fails_with_age_and_rpo() -> None:
    stale = BackupFile(path=Path("/b/old.db"), size_bytes=1, mtime=NOW - 72 * 3600, matched=1)

    finding = backup.judge_freshness(SQLITE, stale, now=NOW, rpo_hours=24)

    assert finding.outcome == "failed"
    assert "72.0 h old, older than the RPO of 24 h" in finding.summary
    assert finding.expected == "newest backup at most 24 h old (RPO)"


def test_a_backup_from_the_future_is_clock_skew_not_fresh() -> None:
    future = BackupFile(path=Path("/b/next.db"), size_bytes=1, mtime=NOW + 600, matched=1)

    finding = backup.judge_freshness(SQLITE, future, now=NOW, rpo_hours=24)

    assert finding.outcome == "error"
    assert "in the future" in finding.summary and "clocks" in finding.summary


def test_a_timestamp_a_second_ahead_is_rounding_and_counts_as_new() -> None:
    just = BackupFile(path=Path("/b/now.db"), size_bytes=1, mtime=NOW + 1, matched=1)

    assert backup.judge_freshness(SQLITE, just, now=NOW, rpo_hours=1).outcome == "passed"


@pytest.mark.parametrize(
    "judge",
    [
        lambda found: backup.judge_freshness(SQLITE, found, now=NOW, rpo_hours=24),
        lambda found: backup.judge_integrity(SQLITE, found, None),
        lambda found: backup.judge_drill(SQLITE, found, None, [], rto_s=60),
    ],
    ids=["freshness", "integrity", "restore_drill"],
)
def test_no_backup_fails_every_check_saying_where(judge: Callable[[NoBackup], Finding]) -> None:
    finding = judge(NoBackup("/b/backups", "the folder is empty"))

    assert finding.outcome == "failed"
    assert finding.summary == "store: no backup at /b/backups (the folder is empty)"


# --------------------------------------------------------------------------- integrity


def test_an_intact_backup_passes_integrity_with_its_facts() -> None:
    observation = IntegrityObservation("PRAGMA integrity_check", (), False, 0.01, 60, {"page_count": 10})

    finding = backup.judge_integrity(SQLITE, FILE, observation)

    assert finding.outcome == "passed"
    assert finding.evidence["page_count"] == 10
    assert finding.evidence["method"] == "PRAGMA integrity_check"


def test_integrity_problems_fail_and_the_first_is_in_the_summary() -> None:
    observation = IntegrityObservation("PRAGMA integrity_check", ("Page 5: btree page", "row 3 missing from index"), False, 0.01, 60)

    finding = backup.judge_integrity(SQLITE, FILE, observation)

    assert finding.outcome == "failed"
    assert "damaged: Page 5: btree page (+1 more)" in finding.summary
    assert finding.evidence["problems"] == ["Page 5: btree page", "row 3 missing from index"]


def test_an_integrity_check_out_of_time_cannot_judge() -> None:
    observation = IntegrityObservation("pg_restore", (), True, 60.0, 60)

    finding = backup.judge_integrity(POSTGRES, FILE, observation)

    assert finding.outcome == "error"
    assert "did not finish within 60 s" in finding.summary


# --------------------------------------------------------------------------- restore drill


def drill(**changes: object) -> DrillObservation:
    values: dict[str, object] = {
        "scratch": "scratch",
        "budget_s": 60.0,
        "restore_s": 0.5,
        "queries_s": 0.1,
        "total_s": 0.6,
        "queries": (QueryResult("messages table", MESSAGES.sql, 1, "messages", None, 0.05),),
    }
    values.update(changes)
    return DrillObservation(**values)  # type: ignore[arg-type]


def test_a_drill_that_restores_and_answers_within_the_rto_passes_with_its_timings() -> None:
    finding = backup.judge_drill(SQLITE, FILE, drill(), [MESSAGES], rto_s=60)

    assert finding.outcome == "passed"
    assert finding.summary == "store: restored in 500.0 ms, answered 1 sanity query in 100.0 ms; 600.0 ms of the 60 s RTO"
    assert (finding.evidence["restore_s"], finding.evidence["queries_s"], finding.evidence["total_s"]) == (0.5, 0.1, 0.6)
    assert finding.evidence["rto_s"] == 60


def test_every_failed_sanity_query_is_named() -> None:
    results = (
        QueryResult(MESSAGES.name, MESSAGES.sql, 0, None, None, 0.01),
        QueryResult(COUNT.name, COUNT.sql, 1, "2", None, 0.01),
    )

    finding = backup.judge_drill(SQLITE, FILE, drill(queries=results), [MESSAGES, COUNT], rto_s=60)

    assert finding.outcome == "failed"
    assert "messages table: 0 rows, expected at least 1" in finding.summary
    assert "message count: '2', expected '3'" in finding.summary


def test_a_query_that_errors_fails_the_drill_with_the_database_message() -> None:
    results = (QueryResult(COUNT.name, COUNT.sql, 0, None, "no such table: messages", 0.01),)

    finding = backup.judge_drill(SQLITE, FILE, drill(queries=results), [COUNT], rto_s=60)

    assert finding.outcome == "failed"
    assert "message count: the query failed: no such table: messages" in finding.summary


def test_equals_without_any_row_says_no_row() -> None:
    assert backup.query_problem(QueryResult(COUNT.name, COUNT.sql, 0, None, None, 0.0), COUNT) == "message count: no row, expected '3'"


def test_a_drill_stopped_at_the_rto_fails() -> None:
    stopped = drill(restore_s=None, queries=(), total_s=2.0, budget_s=2.0, stopped_in="restore")

    finding = backup.judge_drill(POSTGRES, FILE, stopped, [MESSAGES], rto_s=2)

    assert finding.outcome == "failed"
    assert "stopped at the RTO of 2 s, during the restore" in finding.summary


def test_a_drill_stopped_by_the_runs_deadline_before_the_rto_cannot_judge() -> None:
    stopped = drill(restore_s=None, queries=(), total_s=5.0, budget_s=5.0, stopped_in="restore")

    finding = backup.judge_drill(POSTGRES, FILE, stopped, [MESSAGES], rto_s=900)

    assert finding.outcome == "error"
    assert "deadline" in finding.summary and "cannot judge" in finding.summary


def test_a_backup_that_does_not_restore_fails_with_the_cause() -> None:
    broken = drill(restore_s=None, queries=(), restore_problem="pg_restore exited 1: could not read from input file: end of file")

    finding = backup.judge_drill(POSTGRES, FILE, broken, [MESSAGES], rto_s=60)

    assert finding.outcome == "failed"
    assert "does not restore: pg_restore exited 1: could not read from input file" in finding.summary


def test_without_sanity_queries_a_restore_with_tables_passes_and_says_so() -> None:
    finding = backup.judge_drill(SQLITE, FILE, drill(queries=(), tables=4), [], rto_s=60)

    assert finding.outcome == "passed"
    assert "holds 4 tables; no sanity query is configured (thresholds.backup.sanity_queries)" in finding.summary


def test_without_sanity_queries_a_restore_without_tables_fails() -> None:
    finding = backup.judge_drill(SQLITE, FILE, drill(queries=(), tables=0), [], rto_s=60)

    assert finding.outcome == "failed"
    assert "the restored database has no table" in finding.summary


def test_a_scratch_database_left_behind_turns_a_pass_into_a_warning() -> None:
    left = drill(cleanup_problem="the scratch database x could not be dropped: timeout")

    finding = backup.judge_drill(POSTGRES, FILE, left, [MESSAGES], rto_s=60)

    assert finding.outcome == "warned"
    assert finding.summary.endswith("the scratch database x could not be dropped: timeout")


# --------------------------------------------------------------------------- which file


def touch(path: Path, age_s: float, content: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    os.utime(path, (time.time() - age_s, time.time() - age_s))
    return path


def test_the_newest_regular_file_of_a_folder_is_the_backup(tmp_path: Path) -> None:
    touch(tmp_path / "backups" / "a.db", 300)
    newest = touch(tmp_path / "backups" / "b.db", 100, b"newest")
    touch(tmp_path / "backups" / "b.db-journal", 1)  # companion files are never the backup
    touch(tmp_path / "backups" / "c.db.tmp", 1)  # still being written
    touch(tmp_path / "backups" / ".hidden", 1)
    (tmp_path / "backups" / "subfolder").mkdir()

    found = backup.locate(SQLITE, tmp_path)

    assert isinstance(found, BackupFile)
    assert (found.path, found.size_bytes, found.matched) == (newest, 6, 2)


def test_a_glob_picks_the_newest_match(tmp_path: Path) -> None:
    touch(tmp_path / "dumps" / "app-1.dump", 200)
    newest = touch(tmp_path / "dumps" / "app-2.dump", 50)
    touch(tmp_path / "dumps" / "notes.txt", 1)

    found = backup.locate(POSTGRES, tmp_path)

    assert isinstance(found, BackupFile) and found.path == newest


def test_brackets_in_the_targets_folder_are_not_a_pattern(tmp_path: Path) -> None:
    base = tmp_path / "team[1]"
    newest = touch(base / "dumps" / "app.dump", 10)

    found = backup.locate(POSTGRES, base)

    assert isinstance(found, BackupFile) and found.path == newest


def test_a_file_path_and_an_absolute_path_are_taken_as_they_are(tmp_path: Path) -> None:
    path = touch(tmp_path / "elsewhere" / "one.db", 10)

    found = backup.locate(BackupSource(name="one", kind="sqlite", path=str(path)), tmp_path / "targets")

    assert isinstance(found, BackupFile) and found.path == path


@pytest.mark.parametrize(
    ("layout", "path", "reason"),
    [
        ({}, "backups", "no such file or folder"),
        ({"backups/": None}, "backups", "the folder is empty"),
        ({"backups/x.db-wal": b""}, "backups", "no regular backup file there"),
        ({"dumps/x.sql": b""}, "dumps/*.dump", "no file matches the pattern"),
    ],
)
def test_nothing_to_judge_is_no_backup_with_the_reason(tmp_path: Path, layout: dict[str, bytes | None], path: str, reason: str) -> None:
    for name, content in layout.items():
        if content is None:
            (tmp_path / name).mkdir(parents=True)
        else:
            touch(tmp_path / name, 1, content)

    found = backup.locate(BackupSource(name="s", kind="sqlite", path=path), tmp_path)

    assert isinstance(found, NoBackup)
    assert found.reason.startswith(reason)
    assert found.where == str(tmp_path / path)


def test_a_backup_that_cannot_be_read_is_an_error_not_a_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    touch(tmp_path / "backups" / "a.db", 1)
    real_open = Path.open

    def refuse(self: Path, *args: object, **kwargs: object) -> object:
        if self.name == "a.db":
            raise PermissionError(13, "Permission denied")
        return real_open(self, *args, **kwargs)  # type: ignore[call-overload]

    # Root reads everything, so the refusal is simulated.
    monkeypatch.setattr(Path, "open", refuse)

    with pytest.raises(ProbeError, match="a.db cannot be read: Permission denied"):
        backup.locate(SQLITE, tmp_path)


def test_a_folder_that_cannot_be_listed_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "backups").mkdir()

    def refuse(self: Path) -> object:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "iterdir", refuse)

    with pytest.raises(ProbeError, match=r"store: cannot look at .*backups: Permission denied"):
        backup.locate(SQLITE, tmp_path)


# --------------------------------------------------------------------------- bounded tools


def test_a_tool_is_stopped_at_its_time_limit_with_its_children() -> None:
    start = time.monotonic()

    script = "import subprocess, time; print(subprocess.Popen(['sleep', '30']).pid, flush=True); time.sleep(30)"

    run = backup.run_tool([sys.executable, "-c", script], timeout_s=0.5)

    assert run.stopped and run.returncode is None
    assert time.monotonic() - start < 5
    child = int(run.stdout.decode().strip())
    assert not alive(child), "the tool's child outlived it"


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper does not count)."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return False
        if state in ("Z", "X"):
            return False
        time.sleep(0.05)
    return True


def test_tool_output_is_bounded_and_records_are_counted_while_streaming() -> None:
    script = "import sys; sys.stdout.write('row\\0' * 200000); sys.stderr.write('noise\\n' * 10000 + 'the cause\\n')"

    run = backup.run_tool([sys.executable, "-c", script], timeout_s=30, record_end=b"\x00")

    assert run.returncode == 0
    assert run.records == 200_000
    assert len(run.stdout) == backup.KEEP_BYTES and len(run.stderr) == backup.KEEP_BYTES
    assert run.error_line == "the cause"


def test_records_can_be_filtered_across_chunk_boundaries() -> None:
    script = "import sys; sys.stdout.write(';\\n; header\\n' + 'x' * 70000 + '\\n' + '1; TABLE t\\n' * 5 + 'last')"

    run = backup.run_tool([sys.executable, "-c", script], timeout_s=30, counts=lambda line: not line.startswith(b";"))

    assert run.records == 7  # the long line, five entries, and the last line without a newline


def test_no_time_left_runs_nothing() -> None:
    run = backup.run_tool(["false"], timeout_s=0)

    assert run.stopped and run.elapsed_s == 0.0


def test_a_missing_tool_in_bin_dir_is_an_error_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ProbeError, match=r"pg_restore is not in restore_server.bin_dir"):
        backup.find_tool("pg_restore", str(tmp_path))


def test_the_password_reaches_the_tools_by_environment_only() -> None:
    env = backup.tool_env("s3cret-pass", connect_timeout_s=5)

    assert env["PGPASSWORD"] == "s3cret-pass"
    assert env["PGCONNECT_TIMEOUT"] == "5"


# --------------------------------------------------------------------------- SQLite, on real files


def sqlite_db(path: Path, rows: int = 3) -> Path:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY, text TEXT)")
    db.execute("CREATE INDEX messages_text ON messages (text)")
    db.executemany("INSERT INTO messages (text) VALUES (?)", [(f"message {i}",) for i in range(rows)])
    db.commit()
    db.close()
    return path


def test_sqlite_integrity_passes_an_intact_file_without_leaving_files_beside_it(tmp_path: Path) -> None:
    path = sqlite_db(tmp_path / "b.db")

    observation = backup.integrity_sqlite(path, budget_s=30)

    assert observation.problems == () and not observation.stopped
    assert observation.facts["tables"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.db"]


def test_sqlite_integrity_finds_a_damaged_page_in_a_file_that_still_opens(tmp_path: Path) -> None:
    path = sqlite_db(tmp_path / "b.db", rows=2000)
    db = sqlite3.connect(path)
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    index_root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'messages_text'").fetchone()[0]
    db.close()
    with path.open("r+b") as handle:  # garbage over the index's root page: the header stays valid
        handle.seek((index_root - 1) * page_size)
        handle.write(b"\x0d" + b"\xff" * (page_size - 1))

    observation = backup.integrity_sqlite(path, budget_s=30)

    assert observation.problems
    assert not observation.stopped


@pytest.mark.parametrize(("content", "problem"), [(b"", "the file is empty"), (b"PGDMP" + b"\0" * 200, "not an SQLite database")])
def test_sqlite_integrity_rejects_what_is_not_a_database(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "b.db"
    path.write_bytes(content)

    observation = backup.integrity_sqlite(path, budget_s=30)

    assert observation.problems[0].startswith(problem)


def test_sqlite_integrity_is_stopped_at_its_budget(tmp_path: Path) -> None:
    path = sqlite_db(tmp_path / "b.db", rows=20000)

    observation = backup.integrity_sqlite(path, budget_s=1, clock=ticking(1.0))

    assert observation.stopped and observation.problems == ()


def test_the_sqlite_drill_restores_a_copy_answers_queries_and_removes_it(tmp_path: Path) -> None:
    path = sqlite_db(tmp_path / "b.db")
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    observation = backup.drill_sqlite(path, [MESSAGES, COUNT], budget_s=30, scratch_root=scratch)

    assert [(r.rows, r.first, r.error) for r in observation.queries] == [(1, "messages", None), (1, "3", None)]
    assert observation.restore_s is not None and observation.total_s >= observation.restore_s
    assert list(scratch.iterdir()) == []  # the scratch copy is gone
    assert backup.judge_drill(SQLITE, FILE, observation, [MESSAGES, COUNT], rto_s=30).outcome == "passed"


def test_the_sqlite_drill_is_stopped_at_the_rto(tmp_path: Path) -> None:
    path = sqlite_db(tmp_path / "b.db", rows=20000)
    slow = SanityQuery(name="slow", sql="SELECT count(*) FROM messages a, messages b", min_rows=1)

    observation = backup.drill_sqlite(path, [slow], budget_s=0.3)

    assert observation.stopped_in == "queries"
    assert observation.total_s < 5
    assert backup.judge_drill(SQLITE, FILE, observation, [slow], rto_s=0.3).outcome == "failed"


def test_the_sqlite_drill_of_a_file_that_is_not_a_database_fails(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    path.write_bytes(b"\xde\xad\xbe\xef" * 1024)

    observation = backup.drill_sqlite(path, [MESSAGES], budget_s=30)

    assert observation.restore_problem is not None and "does not open as an SQLite database" in observation.restore_problem
