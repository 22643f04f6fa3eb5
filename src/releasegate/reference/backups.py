"""Backups of the reference store, for the infra.backup checks of ``releasegate demo``.

:func:`write_demo_backup` takes an SQLite online backup (the sqlite3 backup API: consistent
while the service keeps writing, WAL included) of the store into a folder, as one
self-contained file (rollback journal, not WAL, so no ``-wal`` file goes with it), named by
its time. The backup faults change what lands there:

- ``backup-stale``: the file's mtime (and name) three days back: older than any sane RPO.
- ``backup-corrupt``: the 100-byte SQLite header is overwritten, so the file is no longer a
  database at all (what a truncated upload or a bit-flipped first page looks like to SQLite);
  the integrity check fails, and so does the drill, which cannot open it.
- ``backup-empty``: a valid SQLite database with none of the application's tables (a backup
  job pointed at the wrong, empty database): intact and fresh, but the drill finds nothing.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

STALE_AGE_S = 3 * 24 * 3600
HEADER_BYTES = 100


def write_demo_backup(db_path: Path, folder: Path, faults: frozenset[str], *, wall: Callable[[], float] = time.time) -> Path:
    """Back up the store at ``db_path`` into ``folder`` (created if missing); the backup file's path."""
    folder.mkdir(parents=True, exist_ok=True)
    taken = wall() - (STALE_AGE_S if "backup-stale" in faults else 0)
    path = _free_name(folder, taken)
    if "backup-empty" in faults:
        _empty_database(path)
    else:
        _online_backup(db_path, path)
    if "backup-corrupt" in faults:
        with path.open("r+b") as handle:
            handle.write(b"\xde\xad\xbe\xef" * (HEADER_BYTES // 4))
    os.utime(path, (taken, taken))
    return path


def _free_name(folder: Path, taken: float) -> Path:
    stamp = datetime.fromtimestamp(taken, UTC).strftime("%Y%m%dT%H%M%SZ")
    path = folder / f"service-{stamp}.db"
    index = 1
    while path.exists():
        path = folder / f"service-{stamp}-{index}.db"
        index += 1
    return path


def _online_backup(db_path: Path, path: Path) -> None:
    # Read-only source: the backup must never change the service's database.
    source = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    target = sqlite3.connect(path)
    try:
        source.backup(target)
        # The copy carries the source's WAL flag; a backup is one file, so switch it back.
        target.execute("PRAGMA journal_mode=DELETE")
    finally:
        target.close()
        source.close()


def _empty_database(path: Path) -> None:
    db = sqlite3.connect(path)
    try:
        # A header and a schema page, no tables: any write of the header makes it a real database file.
        db.execute("PRAGMA user_version = 1")
        db.commit()
    finally:
        db.close()
