"""Backup family: infra.backup.freshness, .integrity and .restore_drill for the target's ``backups``.

Which file: the newest (mtime) regular file matching a source's ``path`` (a file, a folder =
the files directly in it, or a glob), relative to the target file. Companion and in-flight
files (``-journal``, ``-wal``, ``-shm``, ``.tmp``, ``.part``, ``.partial``, dot files) are never
the backup. Nothing found is a failure; a folder that cannot be listed or a file that cannot be
read is an error (:class:`~releasegate.ProbeError`).

- **freshness**: the newest file's age (wall clock minus mtime) against the RPO. A file dated
  in the future (clock skew between the backup host and this one) cannot be aged: error.
- **integrity**: SQLite: the header, then ``PRAGMA integrity_check`` on a read-only, immutable
  connection (``file:...?mode=ro&immutable=1``: no lock, no ``-wal``/``-shm`` left beside the
  backup), aborted by a progress handler at the time budget. PostgreSQL custom dumps:
  ``pg_restore --list`` must exit 0 with a TOC, and ``pg_restore --file=/dev/null`` must read
  every data block: the TOC sits at the start of the file, so ``--list`` alone passes a dump
  truncated anywhere after it (measured: even at 1 % of its size).
- **restore_drill**: SQLite: copy to a scratch folder, open, run the sanity queries.
  PostgreSQL: ``CREATE DATABASE`` a unique scratch name on the ``restore_server``, ``pg_restore
  --no-owner --no-privileges`` into it, the sanity queries through ``psql -At -v ON_ERROR_STOP=1``,
  and ``DROP DATABASE ... WITH (FORCE)`` afterwards, always (failure, timeout, error). Without
  sanity queries the drill still restores and requires at least one table. Timed against the
  RTO and stopped there.

Every external command is bounded (time: its process group is killed; output: the head of
stdout and the tail of stderr are kept, rows are counted while streaming). The restore server's
password goes to the tools as PGPASSWORD in their environment, never in argv; the tools are
run with ``--no-password`` so that none of them can ever wait at a prompt.

``locate``, ``integrity_*`` and ``drill_*`` do the I/O and return plain observations; the
``judge_*`` functions are pure: observation in, one :class:`~releasegate.results.Finding` out.
"""

from __future__ import annotations

import glob
import os
import re
import secrets
import shutil
import signal
import sqlite3
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

from releasegate._exceptions import ProbeError
from releasegate.config import BackupSource, PostgresServer, SanityQuery
from releasegate.results import Finding

Kind = Literal["sqlite", "postgres"]
Clock = Callable[[], float]

# Never the backup itself: SQLite companions and files still being written.
SKIPPED_SUFFIXES = ("-journal", "-wal", "-shm", ".tmp", ".part", ".partial")
# Filesystem timestamps may be coarse (2 s on FAT, 1 s on some network mounts): beyond this a
# backup "from the future" is clock skew, not rounding.
FUTURE_TOLERANCE_S = 5.0
SQLITE_MAGIC = b"SQLite format 3\x00"
PGDUMP_MAGIC = b"PGDMP"
# integrity_check reports at most this many problems (it stops looking after that many).
INTEGRITY_MAX_ERRORS = 20
# Progress handler: called every this many SQLite VM instructions to check the time budget.
PROGRESS_STEPS = 10_000
# Rows counted for a min_rows query on SQLite (fetched in batches; the time budget bounds it too).
SQLITE_ROW_CAP = 1_000_000
COPY_CHUNK_BYTES = 1 << 20
# Kept of each tool's output: the head of stdout, the tail of stderr (where the error is).
KEEP_BYTES = 16_384
EVIDENCE_CHARS = 2_000
# psql output framing for sanity queries: records end with NUL, fields are split by US.
_RECORD_END = b"\x00"
_FIELD_SEP = "\x1f"
# How long a killed tool's pipes may stay open before reading stops.
_PIPE_GRACE_S = 2.0
# CREATE/DROP of the scratch database, at least this long whatever the probe timeout.
MIN_ADMIN_TIMEOUT_S = 10.0


# --------------------------------------------------------------------------- which file

_MAGIC = re.compile(r"[*?[]")


@dataclass(frozen=True)
class BackupFile:
    """The newest backup of a source, as found on disk."""

    path: Path
    size_bytes: int
    mtime: float  # epoch seconds
    matched: int  # candidate files the source's path matched

    def evidence(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "size_bytes": self.size_bytes,
            "mtime": _iso(self.mtime),
            "files_matched": self.matched,
        }


@dataclass(frozen=True)
class NoBackup:
    """Nothing matched: where was looked, and why nothing counts."""

    where: str
    reason: str


Located = BackupFile | NoBackup


def resolve_path(source: BackupSource, base_dir: Path) -> Path:
    """The source's ``path`` against the target file's folder (an absolute path stays as it is)."""
    return base_dir / os.path.expanduser(source.path)


def locate(source: BackupSource, base_dir: Path) -> Located:
    """The newest regular file matching the source's path; ProbeError when it cannot be read."""
    where = resolve_path(source, base_dir)
    shown = str(where)
    try:
        names = _matches(source, base_dir, where)
    except OSError as exc:
        raise ProbeError(f"{source.name}: cannot look at {shown}: {exc.strerror or exc}") from None
    if isinstance(names, NoBackup):
        return names
    candidates: list[tuple[float, str, Path, int]] = []
    for path in names:
        if path.name.startswith(".") or path.name.endswith(SKIPPED_SUFFIXES):
            continue
        try:
            info = path.stat()
        except FileNotFoundError:
            continue  # gone between the listing and now (rotation)
        except OSError as exc:
            raise ProbeError(f"{source.name}: cannot stat {path}: {exc.strerror or exc}") from None
        if stat.S_ISREG(info.st_mode):
            candidates.append((info.st_mtime, path.name, path, info.st_size))
    if not candidates:
        return NoBackup(shown, "no regular backup file there (companion, temporary and hidden files do not count)")
    mtime, _, newest, size = max(candidates)
    try:
        with newest.open("rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise ProbeError(f"{source.name}: the newest backup {newest} cannot be read: {exc.strerror or exc}") from None
    return BackupFile(path=newest, size_bytes=size, mtime=mtime, matched=len(candidates))


def _matches(source: BackupSource, base_dir: Path, where: Path) -> list[Path] | NoBackup:
    """What the source's path names: a glob's matches, a folder's entries, or the file itself."""
    shown = str(where)
    if _MAGIC.search(source.path):
        # Only the source's own pattern is a pattern: brackets in the target's folder are literal.
        pattern = os.path.expanduser(source.path)
        if not os.path.isabs(pattern):
            pattern = os.path.join(glob.escape(str(base_dir)), pattern)
        names = [Path(p) for p in glob.glob(pattern, recursive=True)]
        return names or NoBackup(shown, "no file matches the pattern")
    if where.is_dir():
        names = list(where.iterdir())
        return names or NoBackup(shown, "the folder is empty")
    if where.exists() or where.is_symlink():
        return [where]
    return NoBackup(shown, "no such file or folder")


def _not_found(source: BackupSource, missing: NoBackup, expected: str) -> Finding:
    return Finding(
        "failed",
        f"{source.name}: no backup at {missing.where} ({missing.reason})",
        observed="no backup",
        expected=expected,
        evidence={"source": source.name, "kind": source.kind, "path": missing.where, "reason": missing.reason},
    )


# --------------------------------------------------------------------------- freshness


def judge_freshness(source: BackupSource, found: Located, *, now: float, rpo_hours: float) -> Finding:
    """The newest backup's age against the RPO (``now``: wall-clock epoch seconds)."""
    expected = f"newest backup at most {_number(rpo_hours)} h old (RPO)"
    if isinstance(found, NoBackup):
        return _not_found(source, found, expected)
    age_s = now - found.mtime
    evidence = {"source": source.name, "kind": source.kind, **found.evidence(), "age_s": round(age_s, 1), "rpo_hours": rpo_hours}
    if age_s < -FUTURE_TOLERANCE_S:
        return Finding(
            "error",
            f"{source.name}: the newest backup {found.path.name} is dated {_iso(found.mtime)}, {_duration(-age_s)} in the future: "
            "the clocks of the backup host and this machine disagree, so its age cannot be told",
            observed=f"{_duration(-age_s)} in the future",
            expected=expected,
            evidence=evidence,
        )
    age_s = max(age_s, 0.0)
    observed = f"{_duration(age_s)} old"
    if age_s <= rpo_hours * 3600:
        return Finding(
            "passed", f"{source.name}: the newest backup is {observed} (RPO {_number(rpo_hours)} h)", observed, expected, evidence
        )
    return Finding(
        "failed",
        f"{source.name}: the newest backup {found.path.name} is {observed}, older than the RPO of {_number(rpo_hours)} h",
        observed,
        expected,
        evidence,
    )


# --------------------------------------------------------------------------- bounded tools


@dataclass(frozen=True)
class ToolRun:
    """One external command: exit status (None: stopped at its time limit) and bounded output."""

    command: tuple[str, ...]  # argv as run; never holds a secret (those go by environment)
    returncode: int | None
    elapsed_s: float
    stdout: bytes  # the first KEEP_BYTES
    stderr: bytes  # the last KEEP_BYTES
    records: int  # records in the whole stdout (see run_tool's ``record_end`` and ``counts``)

    @property
    def stopped(self) -> bool:
        return self.returncode is None

    @property
    def error_line(self) -> str:
        """The last meaningful line of stderr (the tools print the cause last)."""
        for line in reversed(self.stderr.decode("utf-8", "replace").splitlines()):
            if line.strip():
                return line.strip()[:300]
        return "stopped at its time limit" if self.stopped else f"exit status {self.returncode}"

    def evidence(self) -> dict[str, Any]:
        return {
            "command": " ".join(self.command),
            "exit_status": self.returncode,
            "stopped": self.stopped,
            "elapsed_s": round(self.elapsed_s, 4),
            "stdout": _excerpt(self.stdout.decode("utf-8", "replace")),
            "stderr": _excerpt(self.stderr.decode("utf-8", "replace"), tail=True),
        }


class _Drain(threading.Thread):
    """Reads a pipe to its end, keeping a bounded part and counting records as they pass."""

    def __init__(self, pipe: IO[bytes], *, keep_tail: bool, record_end: bytes, counts: Callable[[bytes], bool] | None) -> None:
        super().__init__(daemon=True)
        self._pipe = pipe
        self._keep_tail = keep_tail
        self._record_end = record_end
        self._counts = counts
        self._partial = b""
        self.kept = b""
        self.records = 0

    def run(self) -> None:
        try:
            while chunk := os.read(self._pipe.fileno(), 65_536):
                self._keep(chunk)
                self._count(chunk)
        except (OSError, ValueError):
            pass
        if self._partial:
            self._count_record(self._partial)

    def _keep(self, chunk: bytes) -> None:
        if self._keep_tail:
            self.kept = (self.kept + chunk)[-KEEP_BYTES:]
        elif len(self.kept) < KEEP_BYTES:
            self.kept += chunk[: KEEP_BYTES - len(self.kept)]

    def _count(self, chunk: bytes) -> None:
        if self._counts is None:
            self.records += chunk.count(self._record_end)
            return
        *complete, self._partial = (self._partial + chunk).split(self._record_end)
        self._partial = self._partial[-KEEP_BYTES:]  # a record longer than that is only counted
        for record in complete:
            self._count_record(record)

    def _count_record(self, record: bytes) -> None:
        if self._counts is None or self._counts(record):
            self.records += 1


def run_tool(
    command: Sequence[str],
    *,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    record_end: bytes = b"\n",
    counts: Callable[[bytes], bool] | None = None,
    clock: Clock = time.monotonic,
) -> ToolRun:
    """Run ``command`` for at most ``timeout_s`` (then its process group is killed).

    Records of stdout end with ``record_end``; ``counts`` (if given) picks which ones count.
    """
    start = clock()
    if timeout_s <= 0:
        return ToolRun(tuple(command), None, 0.0, b"", b"not started: no time left", 0)
    try:
        process = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env) if env is not None else None,
            start_new_session=True,  # its own process group: killed whole at the time limit
        )
    except OSError as exc:
        raise ProbeError(f"cannot run {command[0]}: {exc.strerror or exc}") from None
    assert process.stdout is not None and process.stderr is not None
    out = _Drain(process.stdout, keep_tail=False, record_end=record_end, counts=counts)
    err = _Drain(process.stderr, keep_tail=True, record_end=b"\n", counts=None)
    out.start()
    err.start()
    returncode: int | None
    try:
        returncode = process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        returncode = None
    finally:
        if process.poll() is None:  # interrupted (KeyboardInterrupt): never leave it behind
            _kill_group(process)
    for drain in (out, err):
        drain.join(_PIPE_GRACE_S)
    for pipe in (process.stdout, process.stderr):
        pipe.close()
    return ToolRun(tuple(command), returncode, clock() - start, out.kept, err.kept, out.records)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()
    try:
        process.wait(timeout=_PIPE_GRACE_S)
    except subprocess.TimeoutExpired:
        pass


# --------------------------------------------------------------------------- PostgreSQL tools


def find_tool(name: str, bin_dir: str | None = None) -> str:
    """``name`` (pg_restore, psql) from ``bin_dir``, PATH or /usr/lib/postgresql/*/bin (newest first)."""
    if bin_dir:
        path = Path(bin_dir) / name
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
        raise ProbeError(f"{name} is not in restore_server.bin_dir ({bin_dir})")
    found = shutil.which(name)
    if found:
        return found
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: _version_key(Path(p).parent.name), reverse=True)
    for folder in folders:
        path = Path(folder) / name
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    raise ProbeError(
        f"{name} was not found on PATH nor in /usr/lib/postgresql/*/bin: install the PostgreSQL client "
        "(Debian: postgresql-client) or set restore_server.bin_dir"
    )


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def tool_env(password: str | None, *, connect_timeout_s: float) -> dict[str, str]:
    """The client tools' environment: the password as PGPASSWORD (never argv), a connect timeout."""
    env = dict(os.environ)
    if password is not None:
        env["PGPASSWORD"] = password
    env["PGCONNECT_TIMEOUT"] = str(max(2, int(connect_timeout_s + 0.999)))
    env["PGAPPNAME"] = "releasegate-restore-drill"
    return env


def _connection(server: PostgresServer, database: str) -> list[str]:
    return ["--host", server.host, "--port", str(server.port), "--username", server.user, "--no-password", "--dbname", database]


def _toc_entry(line: bytes) -> bool:
    text = line.strip()
    return bool(text) and not text.startswith(b";")


# --------------------------------------------------------------------------- integrity


@dataclass(frozen=True)
class IntegrityObservation:
    """What the integrity check saw. ``problems`` empty and not ``stopped``: intact."""

    method: str
    problems: tuple[str, ...]  # why the file is not intact (empty: it is)
    stopped: bool  # the time budget ran out before the check finished
    elapsed_s: float
    budget_s: float
    facts: dict[str, Any] = field(default_factory=dict)  # page count, TOC entries, ...
    tools: tuple[ToolRun, ...] = ()


def integrity_sqlite(path: Path, *, budget_s: float, clock: Clock = time.monotonic) -> IntegrityObservation:
    """Header, then PRAGMA integrity_check on a read-only immutable connection, aborted at ``budget_s``."""
    method = f"PRAGMA integrity_check({INTEGRITY_MAX_ERRORS}) (read-only)"
    start = clock()
    header = _header(path, len(SQLITE_MAGIC))
    if not header:
        return IntegrityObservation(method, ("the file is empty (0 bytes)",), False, clock() - start, budget_s)
    if header != SQLITE_MAGIC:
        problem = "not an SQLite database: the file does not start with the SQLite header ('SQLite format 3')"
        return IntegrityObservation(method, (problem,), False, clock() - start, budget_s, {"header_hex": header.hex()})
    deadline = start + budget_s
    stopped = False

    def over_budget() -> int:
        nonlocal stopped
        stopped = clock() > deadline
        return 1 if stopped else 0

    facts: dict[str, Any] = {}
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True, timeout=1.0)
    except sqlite3.Error as exc:
        raise ProbeError(f"cannot open {path} read-only: {exc}") from None
    try:
        db.set_progress_handler(over_budget, PROGRESS_STEPS)
        try:
            rows = [str(row[0]) for row in db.execute(f"PRAGMA integrity_check({INTEGRITY_MAX_ERRORS})")]
            facts = {
                "page_size": db.execute("PRAGMA page_size").fetchone()[0],
                "page_count": db.execute("PRAGMA page_count").fetchone()[0],
                "tables": db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").fetchone()[0],
            }
        except sqlite3.DatabaseError as exc:
            if stopped:
                return IntegrityObservation(method, (), True, clock() - start, budget_s)
            return IntegrityObservation(method, (f"{exc}",), False, clock() - start, budget_s)
    finally:
        db.close()
    problems = () if rows == ["ok"] else tuple(rows)
    return IntegrityObservation(method, problems, False, clock() - start, budget_s, facts)


def integrity_postgres(path: Path, *, bin_dir: str | None, budget_s: float, clock: Clock = time.monotonic) -> IntegrityObservation:
    """``pg_restore --list`` (a TOC, exit 0), then ``pg_restore --file=/dev/null`` (every data block readable)."""
    method = "pg_restore --list, then a full read (pg_restore --file=/dev/null)"
    start = clock()
    header = _header(path, len(PGDUMP_MAGIC))
    if not header:
        return IntegrityObservation(method, ("the file is empty (0 bytes)",), False, 0.0, budget_s)
    pg_restore = find_tool("pg_restore", bin_dir)
    listing = run_tool([pg_restore, "--list", str(path)], timeout_s=budget_s, record_end=b"\n", counts=_toc_entry, clock=clock)
    facts: dict[str, Any] = {"toc_entries": listing.records, "pg_restore": pg_restore}
    if listing.stopped:
        return IntegrityObservation(method, (), True, clock() - start, budget_s, facts, (listing,))
    if listing.returncode != 0:
        return IntegrityObservation(
            method, (f"pg_restore --list: {listing.error_line}",), False, clock() - start, budget_s, facts, (listing,)
        )
    if listing.records == 0:
        return IntegrityObservation(
            method, ("pg_restore --list shows no TOC entry: the dump is empty",), False, clock() - start, budget_s, facts, (listing,)
        )
    remaining = budget_s - (clock() - start)
    reading = run_tool([pg_restore, "--file", os.devnull, str(path)], timeout_s=remaining, clock=clock)
    tools = (listing, reading)
    if reading.stopped:
        return IntegrityObservation(method, (), True, clock() - start, budget_s, facts, tools)
    if reading.returncode != 0:
        return IntegrityObservation(method, (f"reading the data: {reading.error_line}",), False, clock() - start, budget_s, facts, tools)
    return IntegrityObservation(method, (), False, clock() - start, budget_s, facts, tools)


def _header(path: Path, size: int) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(size)
    except OSError as exc:
        raise ProbeError(f"cannot read {path}: {exc.strerror or exc}") from None


def judge_integrity(source: BackupSource, found: Located, observation: IntegrityObservation | None) -> Finding:
    expected = "the newest backup is intact"
    if isinstance(found, NoBackup) or observation is None:
        return _not_found(source, found, expected) if isinstance(found, NoBackup) else _internal(source)
    evidence: dict[str, Any] = {
        "source": source.name,
        "kind": source.kind,
        **found.evidence(),
        "method": observation.method,
        "elapsed_s": round(observation.elapsed_s, 4),
        "budget_s": round(observation.budget_s, 3),
        **observation.facts,
    }
    if observation.tools:
        evidence["tools"] = [run.evidence() for run in observation.tools]
    if observation.problems:
        evidence["problems"] = [_excerpt(p, chars=300) for p in observation.problems]
        first = observation.problems[0]
        more = f" (+{len(observation.problems) - 1} more)" if len(observation.problems) > 1 else ""
        return Finding(
            "failed",
            f"{source.name}: the newest backup {found.path.name} is damaged: {_excerpt(first, chars=200)}{more}",
            "damaged",
            expected,
            evidence,
        )
    if observation.stopped:
        return Finding(
            "error",
            f"{source.name}: the integrity check of {found.path.name} did not finish within "
            f"{_number(observation.budget_s)} s: cannot judge",
            "unfinished",
            expected,
            evidence,
        )
    return Finding(
        "passed", f"{source.name}: the newest backup {found.path.name} is intact ({_size(found.size_bytes)})", "intact", expected, evidence
    )


def _internal(source: BackupSource) -> Finding:
    return Finding("error", f"{source.name}: no observation was made (a bug in the check)")


# --------------------------------------------------------------------------- restore drill


@dataclass(frozen=True)
class QueryResult:
    """One sanity query on the restored copy."""

    name: str
    sql: str
    rows: int  # rows returned (SQLite: counted up to SQLITE_ROW_CAP)
    first: str | None  # first column of the first row, as text; None without a row
    error: str | None
    elapsed_s: float


@dataclass(frozen=True)
class DrillObservation:
    """What the restore drill did and how long each part took."""

    scratch: str  # the scratch database (PostgreSQL) or file (SQLite)
    budget_s: float
    restore_s: float | None  # None: the restore never finished
    queries_s: float
    total_s: float
    stopped_in: Literal["restore", "queries"] | None = None
    restore_problem: str | None = None  # the backup did not restore (the cause)
    queries: tuple[QueryResult, ...] = ()
    tables: int | None = None  # user tables in the restored copy (counted when no sanity query is configured)
    cleanup_problem: str | None = None  # the scratch database or file could not be removed
    tools: tuple[ToolRun, ...] = ()


def drill_sqlite(
    path: Path, queries: Sequence[SanityQuery], *, budget_s: float, scratch_root: Path | None = None, clock: Clock = time.monotonic
) -> DrillObservation:
    """Copy ``path`` to a scratch folder, open it and answer ``queries``; stopped at ``budget_s``."""
    start = clock()
    deadline = start + budget_s
    folder = Path(tempfile.mkdtemp(prefix="releasegate-drill-", dir=scratch_root))
    scratch = folder / "restored.db"
    stopped: Literal["restore", "queries"] | None = None
    restore_s: float | None = None
    results: list[QueryResult] = []
    tables: int | None = None
    problem: str | None = None
    queries_start = start
    try:
        if not _copy(path, scratch, deadline, clock):
            stopped = "restore"
        else:
            db = sqlite3.connect(scratch, timeout=1.0, isolation_level=None)
            try:
                interrupted = [False]

                def over_budget() -> int:
                    interrupted[0] = clock() > deadline
                    return 1 if interrupted[0] else 0

                db.set_progress_handler(over_budget, PROGRESS_STEPS)
                try:
                    db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # "open it": reads the header and schema
                    restore_s = clock() - start
                except sqlite3.DatabaseError as exc:
                    if interrupted[0]:
                        stopped = "restore"
                    else:
                        problem = f"the copy does not open as an SQLite database: {exc}"
                if stopped is None and problem is None:
                    queries_start = clock()
                    if queries:
                        for query in queries:
                            result = _sqlite_query(db, query, clock)
                            if interrupted[0]:
                                stopped = "queries"
                                break
                            results.append(result)
                    else:
                        tables = _sqlite_tables(db)
                        if tables is None and interrupted[0]:
                            stopped = "queries"
            finally:
                db.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    end = clock()
    cleanup = f"the scratch folder {folder} could not be removed" if folder.exists() else None
    return DrillObservation(
        scratch=str(scratch),
        budget_s=budget_s,
        restore_s=restore_s,
        queries_s=end - queries_start if restore_s is not None else 0.0,
        total_s=end - start,
        stopped_in=stopped,
        restore_problem=problem,
        queries=tuple(results),
        tables=tables,
        cleanup_problem=cleanup,
    )


def _copy(source: Path, target: Path, deadline: float, clock: Clock) -> bool:
    """Copy in chunks; False when the deadline came first."""
    try:
        with source.open("rb") as src, target.open("wb") as dst:
            while chunk := src.read(COPY_CHUNK_BYTES):
                dst.write(chunk)
                if clock() > deadline:
                    return False
    except OSError as exc:
        raise ProbeError(f"cannot copy {source} to the scratch folder: {exc.strerror or exc}") from None
    return clock() <= deadline


def _sqlite_query(db: sqlite3.Connection, query: SanityQuery, clock: Clock) -> QueryResult:
    start = clock()
    rows = 0
    first: str | None = None
    try:
        cursor = db.execute(query.sql)
        # equals needs the first row only; min_rows is counted (bounded) for the evidence.
        limit = 1 if query.min_rows is None else SQLITE_ROW_CAP
        while rows < limit and (batch := cursor.fetchmany(min(1000, limit - rows))):
            if first is None:
                first = _text(batch[0][0]) if batch[0] else ""
            rows += len(batch)
    except sqlite3.Error as exc:
        return QueryResult(query.name, query.sql, rows, first, str(exc), clock() - start)
    return QueryResult(query.name, query.sql, rows, first, None, clock() - start)


def _sqlite_tables(db: sqlite3.Connection) -> int | None:
    try:
        row = db.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").fetchone()
    except sqlite3.Error:
        return None
    return int(row[0])


def _text(value: Any) -> str:
    """A SQLite value as text, the way psql -At prints it (NULL: empty)."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    return str(value)


def scratch_name(clock: Clock = time.time) -> str:
    """A database name no one else uses: releasegate_drill_<epoch>_<8 hex>."""
    return f"releasegate_drill_{int(clock())}_{secrets.token_hex(4)}"


def drill_postgres(
    path: Path,
    server: PostgresServer,
    queries: Sequence[SanityQuery],
    *,
    password: str | None,
    budget_s: float,
    admin_timeout_s: float,
    name: str | None = None,
    clock: Clock = time.monotonic,
) -> DrillObservation:
    """CREATE DATABASE, pg_restore, sanity queries within ``budget_s``; DROP DATABASE always.

    ProbeError when the drill cannot even start (tools missing, scratch database refused):
    that says nothing about the backup.
    """
    pg_restore = find_tool("pg_restore", server.bin_dir)
    psql = find_tool("psql", server.bin_dir)
    env = tool_env(password, connect_timeout_s=admin_timeout_s)
    name = name or scratch_name()
    admin_timeout_s = max(admin_timeout_s, MIN_ADMIN_TIMEOUT_S)
    start = clock()
    create = _psql(psql, server, server.maintenance_db, f'CREATE DATABASE "{name}"', env, admin_timeout_s, clock)
    if create.returncode != 0:
        # Nothing was created if CREATE failed; a CREATE stopped mid-way may have been, so drop anyway.
        dropped = _drop(psql, server, name, env, admin_timeout_s, clock) if create.stopped else None
        where = f"{server.user}@{server.host}:{server.port}/{server.maintenance_db}"
        cause = "no answer in time" if create.stopped else create.error_line
        leftover = f"; {dropped.error_line}" if dropped is not None and dropped.returncode != 0 else ""
        raise ProbeError(f"cannot create the scratch database {name} on {where}: {cause}{leftover}")
    tools: list[ToolRun] = [create]
    stopped: Literal["restore", "queries"] | None = None
    problem: str | None = None
    restore_s: float | None = None
    results: list[QueryResult] = []
    tables: int | None = None
    queries_start = clock()
    try:
        restore = run_tool(
            [pg_restore, "--no-owner", "--no-privileges", *_connection(server, name), str(path)],
            timeout_s=budget_s - (clock() - start),
            env=env,
            clock=clock,
        )
        tools.append(restore)
        if restore.stopped:
            stopped = "restore"
        elif restore.returncode != 0:
            problem = f"pg_restore exited {restore.returncode}: {restore.error_line}"
        else:
            restore_s = clock() - start
            queries_start = clock()
            for query in queries:
                run = _psql(psql, server, name, query.sql, env, budget_s - (clock() - start), clock, framed=True)
                if run.stopped:
                    stopped = "queries"
                    break
                results.append(_pg_query(query, run))
            if not queries and stopped is None:
                run = _psql(psql, server, name, _PG_TABLES, env, budget_s - (clock() - start), clock, framed=True)
                if run.stopped:
                    stopped = "queries"
                elif run.returncode == 0:
                    tables = int(_first_field(run.stdout) or 0)
                else:
                    problem = f"counting the restored tables failed: {run.error_line}"
        end = clock()
    finally:
        drop = _drop(psql, server, name, env, admin_timeout_s, clock)
    tools.append(drop)
    cleanup = None if drop.returncode == 0 else f"the scratch database {name} could not be dropped: {drop.error_line}"
    return DrillObservation(
        scratch=name,
        budget_s=budget_s,
        restore_s=restore_s,
        queries_s=end - queries_start if restore_s is not None else 0.0,
        total_s=end - start,
        stopped_in=stopped,
        restore_problem=problem,
        queries=tuple(results),
        tables=tables,
        cleanup_problem=cleanup,
        tools=tuple(tools),
    )


_PG_TABLES = "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"


def _psql(
    psql: str,
    server: PostgresServer,
    database: str,
    sql: str,
    env: Mapping[str, str],
    timeout_s: float,
    clock: Clock,
    *,
    framed: bool = False,
) -> ToolRun:
    framing = ["--record-separator-zero", "--field-separator", _FIELD_SEP] if framed else []
    command = [psql, "--no-psqlrc", "-At", *framing, "-v", "ON_ERROR_STOP=1", *_connection(server, database), "-c", sql]
    return run_tool(command, timeout_s=timeout_s, env=env, record_end=_RECORD_END if framed else b"\n", clock=clock)


def _drop(psql: str, server: PostgresServer, name: str, env: Mapping[str, str], timeout_s: float, clock: Clock) -> ToolRun:
    # WITH (FORCE) (PostgreSQL 13+) ends the sessions a stopped pg_restore or psql left behind.
    return _psql(psql, server, server.maintenance_db, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', env, timeout_s, clock)


def _first_field(stdout: bytes) -> str | None:
    if not stdout:
        return None
    record = stdout.split(_RECORD_END, 1)[0].decode("utf-8", "replace")
    return record.split(_FIELD_SEP, 1)[0]


def _pg_query(query: SanityQuery, run: ToolRun) -> QueryResult:
    if run.returncode != 0:
        return QueryResult(query.name, query.sql, 0, None, run.error_line, run.elapsed_s)
    return QueryResult(query.name, query.sql, run.records, _first_field(run.stdout), None, run.elapsed_s)


def query_problem(result: QueryResult, query: SanityQuery) -> str | None:
    """Why a sanity query's answer is not what the policy asks for, or None."""
    if result.error is not None:
        return f"{query.name}: the query failed: {_excerpt(result.error, chars=200)}"
    if query.min_rows is not None and result.rows < query.min_rows:
        return f"{query.name}: {result.rows} rows, expected at least {query.min_rows}"
    if query.equals is not None and result.first != query.equals:
        got = "no row" if result.first is None else repr(_excerpt(result.first, chars=80))
        return f"{query.name}: {got}, expected {query.equals!r}"
    return None


def judge_drill(
    source: BackupSource,
    found: Located,
    observation: DrillObservation | None,
    queries: Sequence[SanityQuery],
    *,
    rto_s: float,
) -> Finding:
    """Restored, answered every sanity query, within the RTO: passed. Stopped by the run's deadline before the RTO: error."""
    expected = f"restores and answers the sanity queries within the RTO of {_number(rto_s)} s"
    if isinstance(found, NoBackup) or observation is None:
        return _not_found(source, found, expected) if isinstance(found, NoBackup) else _internal(source)
    o = observation
    timings = {"restore_s": _round(o.restore_s), "queries_s": _round(o.queries_s), "total_s": _round(o.total_s), "rto_s": rto_s}
    evidence: dict[str, Any] = {
        "source": source.name,
        "kind": source.kind,
        **found.evidence(),
        "scratch": o.scratch,
        **timings,
        "budget_s": round(o.budget_s, 3),
        "queries": [
            {
                "name": r.name,
                "sql": _excerpt(r.sql, chars=300),
                "rows": r.rows,
                "first": _excerpt(r.first, chars=200) if r.first else r.first,
                "error": r.error,
                "elapsed_s": round(r.elapsed_s, 4),
            }
            for r in o.queries
        ],
    }
    if o.tables is not None:
        evidence["tables"] = o.tables
    if o.tools:
        evidence["tools"] = [run.evidence() for run in o.tools]
    if o.cleanup_problem:
        evidence["cleanup_problem"] = o.cleanup_problem
    cleanup = f"; {o.cleanup_problem}" if o.cleanup_problem else ""
    observed = _seconds(o.total_s)
    if o.stopped_in is not None:
        if o.budget_s < rto_s:
            return Finding(
                "error",
                f"{source.name}: the run's deadline left {_seconds(o.budget_s)} of the {_number(rto_s)} s RTO and the drill "
                f"was stopped during the {o.stopped_in}: cannot judge{cleanup}",
                f"stopped after {observed}",
                expected,
                evidence,
            )
        return Finding(
            "failed",
            f"{source.name}: the restore drill of {found.path.name} was stopped at the RTO of {_number(rto_s)} s, during the "
            f"{o.stopped_in}{cleanup}",
            f"over {_number(rto_s)} s",
            expected,
            evidence,
        )
    if o.restore_problem is not None:
        return Finding(
            "failed",
            f"{source.name}: the newest backup {found.path.name} does not restore: {_excerpt(o.restore_problem, chars=300)}{cleanup}",
            "restore failed",
            expected,
            evidence,
        )
    problems = [p for r, q in zip(o.queries, queries, strict=False) if (p := query_problem(r, q))]
    if not queries and (o.tables or 0) < 1:
        problems.append("the restored database has no table (and no sanity query is configured: thresholds.backup.sanity_queries)")
    restored = f"restored in {_seconds(o.restore_s or 0.0)}"
    if problems:
        shown = "; ".join(problems[:3]) + (f"; +{len(problems) - 3} more" if len(problems) > 3 else "")
        return Finding("failed", f"{source.name}: {restored}, but {shown}{cleanup}", f"{len(problems)} sanity problems", expected, evidence)
    if o.total_s > rto_s:  # finished, but the clock says it took longer than allowed
        return Finding(
            "failed",
            f"{source.name}: {restored}, {observed} in all: over the RTO of {_number(rto_s)} s{cleanup}",
            observed,
            expected,
            evidence,
        )
    if queries:
        answered = f"answered {len(queries)} sanity quer{'y' if len(queries) == 1 else 'ies'} in {_seconds(o.queries_s)}"
    else:
        answered = f"holds {o.tables} tables; no sanity query is configured (thresholds.backup.sanity_queries), so only that was checked"
    summary = f"{source.name}: {restored}, {answered}; {observed} of the {_number(rto_s)} s RTO{cleanup}"
    return Finding("warned" if o.cleanup_problem else "passed", summary, observed, expected, evidence)


# --------------------------------------------------------------------------- small helpers


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _number(value: float) -> str:
    return f"{value:g}"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _seconds(value: float) -> str:
    """A duration for a summary line: milliseconds below a second."""
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"


def _excerpt(text: str, *, chars: int = EVIDENCE_CHARS, tail: bool = False) -> str:
    text = text.strip()
    if len(text) <= chars:
        return text
    return "…" + text[-chars:] if tail else text[:chars] + "…"
