"""The report folder of one run: unique by default, never holding a previous run's verdict.

A reused folder that still held yesterday's ``verdict.json`` saying "promote" would mislead
anything that reads the file instead of the exit code (a webhook, Argo's Web provider), so
the artifacts of a previous run are removed before a new run starts.
"""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

from releasegate._exceptions import ConfigError, Problem

ARTIFACTS = ("verdict.json", "summary.md", "junit.xml", "allure-results", "security.sarif", "internal-error.txt")


def default_for(stage: str, started: datetime) -> Path:
    return Path("reports") / f"{stage}-{started:%Y%m%dT%H%M%SZ}"


def prepare(explicit: Path | None, stage: str, started: datetime) -> Path:
    """Create (or clear) the report folder and prove it is writable; ConfigError if it is not.

    Without ``explicit``, two runs started in the same second get different folders
    (``-2``, ``-3``, ... suffixes, taken with an exclusive mkdir).
    """
    try:
        if explicit is not None:
            folder = explicit.resolve()
            folder.mkdir(parents=True, exist_ok=True)
            for name in ARTIFACTS:
                stale = folder / name
                if stale.is_dir():
                    shutil.rmtree(stale)
                elif stale.exists():
                    stale.unlink()
        else:
            base = default_for(stage, started).resolve()
            base.parent.mkdir(parents=True, exist_ok=True)
            folder = base
            for attempt in range(2, 1000):
                try:
                    folder.mkdir()
                    break
                except FileExistsError:
                    folder = base.with_name(f"{base.name}-{attempt}")
        probe = folder / ".releasegate-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        shown = str(explicit if explicit is not None else default_for(stage, started))
        raise ConfigError(
            [
                Problem(
                    shown,
                    None,
                    "--report-dir",
                    f"cannot write reports there ({exc.strerror or exc})",
                    "name a writable folder with --report-dir",
                )
            ]
        ) from None
    return folder
