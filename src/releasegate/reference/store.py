"""The reference service's SQLite store: conversations, participants, messages and tool runs.

Plain sqlite3 on the event loop's thread: the database is a small local file and each statement
takes microseconds, so a thread hop per query would cost more than it saves. WAL keeps readers
(health probes) from waiting on writers.

Fault ``db-down`` makes every statement raise :class:`StoreUnavailable`, as if the file had gone;
the file itself is left alone so that a later start without the fault finds its data again.
Fault ``stale-read`` is applied by callers through ``as_of`` (reads see the state of some seconds ago).
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Clock = Callable[[], float]

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY, title TEXT NOT NULL, owner TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS participants (
    conversation_id TEXT NOT NULL, username TEXT NOT NULL, added_at REAL NOT NULL,
    PRIMARY KEY (conversation_id, username));
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY, conversation_id TEXT NOT NULL, seq INTEGER NOT NULL, author TEXT NOT NULL,
    text TEXT NOT NULL, created_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages (conversation_id, seq);
CREATE TABLE IF NOT EXISTS tool_runs (
    id TEXT PRIMARY KEY, conversation_id TEXT NOT NULL, tool TEXT NOT NULL, code TEXT NOT NULL,
    requested_by TEXT NOT NULL, status TEXT NOT NULL, result TEXT, created_at REAL NOT NULL,
    started_at REAL, finished_at REAL);
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL);
"""

# The application's migrations, in order: migration N brings the schema to version N. Which of
# them the database has applied is recorded in schema_migrations; /version compares the two.
MIGRATIONS = (
    "0001_initial",
    "0002_participants",
    "0003_message_seq",
    "0004_tool_runs",
    "0005_tool_run_timing",
    "0006_messages_by_conversation_index",
    "0007_tool_run_results",
)


def migration_name(version: int) -> str:
    """The name of the migration that brings the schema to ``version``."""
    return MIGRATIONS[version - 1] if 0 < version <= len(MIGRATIONS) else f"{version:04d}_schema_{version}"


class StoreUnavailable(RuntimeError):
    """The database cannot be reached; the API answers 503 and readiness fails."""


def iso(ts: float | None) -> str | None:
    """Epoch seconds as an RFC 3339 UTC timestamp with milliseconds (what the API shows)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Conversation:
    id: str
    title: str
    owner: str
    participants: tuple[str, ...]
    created_at: float
    message_count: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "owner": self.owner,
            "participants": list(self.participants),
            "created_at": iso(self.created_at),
            "message_count": self.message_count,
        }


@dataclass(frozen=True)
class Message:
    id: str
    conversation_id: str
    seq: int
    author: str
    text: str
    created_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "conversation_id": self.conversation_id,
            "seq": self.seq,
            "author": self.author,
            "text": self.text,
            "created_at": iso(self.created_at),
        }


@dataclass(frozen=True)
class ToolRun:
    id: str
    conversation_id: str
    tool: str
    code: str
    requested_by: str
    status: str  # queued | running | finished
    result: dict[str, Any] | None
    created_at: float
    started_at: float | None
    finished_at: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.id,
            "conversation_id": self.conversation_id,
            "tool": self.tool,
            "status": self.status,
            "requested_by": self.requested_by,
            "result": self.result,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
        }


class Store:
    """All persistence of one service instance. Open with :meth:`open`, close with :meth:`close`."""

    def __init__(self, path: Path, *, down: bool = False, wall: Clock = time.time) -> None:
        self.path = path
        self._down = down
        self._wall = wall
        self._db: sqlite3.Connection | None = None

    def open(self, *, schema_version: int = len(MIGRATIONS)) -> None:
        """Open (creating) the database, its schema recorded as migrated up to ``schema_version``.

        The reference has one schema whatever the version; the record is what the migration
        check reads (fault schema-mismatch opens it one version behind the app).
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread=False: the test client and uvicorn may run the lifespan and the
        # requests on different threads of one event loop owner; access stays serialised on it.
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        with db:
            db.execute("BEGIN")
            db.execute("DELETE FROM schema_migrations WHERE version > ?", (schema_version,))
            db.executemany(
                "INSERT OR IGNORE INTO schema_migrations VALUES (?, ?, ?)",
                [(n, migration_name(n), self._wall()) for n in range(1, schema_version + 1)],
            )
        self._db = db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _conn(self) -> sqlite3.Connection:
        if self._down:
            raise StoreUnavailable(f"unable to open database file {self.path}")
        if self._db is None:
            raise StoreUnavailable("the store is not open")
        return self._db

    # --- health ---------------------------------------------------------------------------

    def ping(self) -> None:
        """``SELECT 1``: raises StoreUnavailable when the database does not answer."""
        try:
            self._conn().execute("SELECT 1").fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(str(exc)) from exc

    def applied_migrations(self) -> dict[int, str]:
        """Version -> name of every migration the database has applied."""
        try:
            return {int(v): str(n) for v, n in self._conn().execute("SELECT version, name FROM schema_migrations")}
        except sqlite3.Error as exc:
            raise StoreUnavailable(str(exc)) from exc

    # --- conversations --------------------------------------------------------------------

    def create_conversation(self, title: str, owner: str) -> Conversation:
        db, now = self._conn(), self._wall()
        cid = uuid.uuid4().hex
        with db:
            db.execute("BEGIN")
            db.execute("INSERT INTO conversations VALUES (?, ?, ?, ?)", (cid, title, owner, now))
            db.execute("INSERT INTO participants VALUES (?, ?, ?)", (cid, owner, now))
        return Conversation(cid, title, owner, (owner,), now, 0)

    def get_conversation(self, cid: str, *, as_of: float | None = None) -> Conversation | None:
        """The conversation; ``as_of`` limits the message count to what existed then (stale reads)."""
        db = self._conn()
        row = db.execute("SELECT id, title, owner, created_at FROM conversations WHERE id = ?", (cid,)).fetchone()
        if row is None:
            return None
        names = tuple(r[0] for r in db.execute("SELECT username FROM participants WHERE conversation_id = ? ORDER BY added_at", (cid,)))
        cutoff = float("inf") if as_of is None else as_of
        (count,) = db.execute("SELECT COUNT(*) FROM messages WHERE conversation_id = ? AND created_at <= ?", (cid, cutoff)).fetchone()
        return Conversation(row[0], row[1], row[2], names, row[3], int(count))

    def conversations_of(self, username: str) -> list[Conversation]:
        db = self._conn()
        ids = [r[0] for r in db.execute("SELECT conversation_id FROM participants WHERE username = ? ORDER BY added_at", (username,))]
        return [c for c in (self.get_conversation(i) for i in ids) if c is not None]

    def participants(self, cid: str) -> frozenset[str] | None:
        """The participants, or None when the conversation does not exist."""
        db = self._conn()
        if db.execute("SELECT 1 FROM conversations WHERE id = ?", (cid,)).fetchone() is None:
            return None
        return frozenset(r[0] for r in db.execute("SELECT username FROM participants WHERE conversation_id = ?", (cid,)))

    def add_participant(self, cid: str, username: str) -> None:
        self._conn().execute("INSERT OR IGNORE INTO participants VALUES (?, ?, ?)", (cid, username, self._wall()))

    # --- messages -------------------------------------------------------------------------

    def max_seq(self, cid: str) -> int:
        (seq,) = self._conn().execute("SELECT COALESCE(MAX(seq), 0) FROM messages WHERE conversation_id = ?", (cid,)).fetchone()
        return int(seq)

    def add_message(self, cid: str, seq: int, author: str, text: str) -> Message:
        message = Message(uuid.uuid4().hex, cid, seq, author, text, self._wall())
        self._conn().execute(
            "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?)",
            (message.id, cid, seq, author, text, message.created_at),
        )
        return message

    def messages(self, cid: str, *, as_of: float | None = None) -> list[Message]:
        cutoff = float("inf") if as_of is None else as_of
        rows = self._conn().execute(
            "SELECT id, conversation_id, seq, author, text, created_at FROM messages"
            " WHERE conversation_id = ? AND created_at <= ? ORDER BY seq",
            (cid, cutoff),
        )
        return [Message(*row) for row in rows]

    # --- tool runs ------------------------------------------------------------------------

    def create_tool_run(self, cid: str, tool: str, code: str, requested_by: str) -> ToolRun:
        run = ToolRun(uuid.uuid4().hex, cid, tool, code, requested_by, "queued", None, self._wall(), None, None)
        self._conn().execute(
            "INSERT INTO tool_runs VALUES (?, ?, ?, ?, ?, ?, NULL, ?, NULL, NULL)",
            (run.id, cid, tool, code, requested_by, run.status, run.created_at),
        )
        return run

    def get_tool_run(self, run_id: str) -> ToolRun | None:
        row = (
            self._conn()
            .execute(
                "SELECT id, conversation_id, tool, code, requested_by, status, result, created_at, started_at, finished_at"
                " FROM tool_runs WHERE id = ?",
                (run_id,),
            )
            .fetchone()
        )
        if row is None:
            return None
        result = json.loads(row[6]) if row[6] is not None else None
        return ToolRun(row[0], row[1], row[2], row[3], row[4], row[5], result, row[7], row[8], row[9])

    def start_tool_run(self, run_id: str) -> None:
        self._conn().execute("UPDATE tool_runs SET status = 'running', started_at = ? WHERE id = ?", (self._wall(), run_id))

    def finish_tool_run(self, run_id: str, result: dict[str, Any]) -> ToolRun:
        self._conn().execute(
            "UPDATE tool_runs SET status = 'finished', result = ?, finished_at = ? WHERE id = ?",
            (json.dumps(result), self._wall(), run_id),
        )
        run = self.get_tool_run(run_id)
        assert run is not None, run_id
        return run

    def queued_tool_runs(self) -> list[str]:
        """Runs left queued or running by a previous process: the worker picks them up again at start."""
        rows = self._conn().execute("SELECT id FROM tool_runs WHERE status != 'finished' ORDER BY created_at")
        return [r[0] for r in rows]
