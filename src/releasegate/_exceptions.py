"""The one exception tree of releasegate.

    ReleasegateError
    ├── ConfigError        bad target file, gates.yaml, waiver or flag  -> exit 3
    ├── ProbeError         a probe could not measure                   -> check outcome "error"
    │   └── ProbeTimeout   ... because it ran out of time
    └── InternalError      a bug in releasegate itself                  -> exit 4

A :class:`ConfigError` holds every :class:`Problem` found, so ``releasegate validate`` can list
them all at once; each problem names file, line, key and what to write instead.
"""

from __future__ import annotations

from dataclasses import dataclass


class ReleasegateError(Exception):
    """Base of every error releasegate raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One configuration problem, located and with a fix."""

    file: str
    line: int | None
    key: str
    message: str
    fix: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        key = f" key '{self.key}'" if self.key else ""
        return f"{where}:{key} {self.message}. Fix: {self.fix}"


class ConfigError(ReleasegateError):
    def __init__(self, problems: list[Problem]) -> None:
        if not problems:
            raise ValueError("ConfigError needs at least one problem")
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class ProbeError(ReleasegateError):
    """A probe could not measure: refused, reset, TLS failure, malformed or oversized answer."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        self.url = url
        super().__init__(message)


class ProbeTimeout(ProbeError):
    """A probe did not finish within its timeout."""


class InternalError(ReleasegateError):
    """Something releasegate did not expect; a bug to report."""
