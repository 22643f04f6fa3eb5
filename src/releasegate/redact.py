"""Secret redaction for every output: terminal, evidence, reports and files written by others.

Secrets are the values of the environment variables the target names (``auth.token_env``);
they are registered once per run and replaced by ``[redacted:NAME]`` wherever they appear.
"""

from __future__ import annotations

import html
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

# Shorter values would redact ordinary words; such a token is a configuration smell anyway.
MIN_SECRET_LENGTH = 6


class Redactor:
    def __init__(self, secrets: Iterable[tuple[str, str]] = ()) -> None:
        self._secrets: list[tuple[str, str]] = []
        for name, value in secrets:
            self.add(name, value)

    def add(self, name: str, value: str | None) -> None:
        if not value or len(value) < MIN_SECRET_LENGTH:
            return
        # Files written by other tools hold the secret escaped (JSON, XML/HTML), so those
        # spellings are secrets too.
        for spelling in (value, json.dumps(value)[1:-1], html.escape(value), html.escape(value, quote=False)):
            if all(spelling != v for _, v in self._secrets):
                self._secrets.append((name, spelling))
        # Longest first, so a secret that contains another is replaced whole.
        self._secrets.sort(key=lambda item: len(item[1]), reverse=True)

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def text(self, value: str) -> str:
        for name, secret in self._secrets:
            if secret in value:
                value = value.replace(secret, f"[redacted:{name}]")
        return value

    def data(self, value: Any) -> Any:
        """Redact every string inside JSON-like data (dict keys included)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.data(k): self.data(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.data(v) for v in value]
        return value

    def scrub_tree(self, root: Path) -> list[Path]:
        """Rewrite every file under ``root`` that contains a secret; returns the files changed.

        Files written by other tools (JUnit by pytest, Allure results by allure-pytest) may
        carry captured output; this is the last line of defence before anything is uploaded.
        """
        changed: list[Path] = []
        if not self._secrets or not root.exists():
            return changed
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            data = path.read_bytes()
            new = data
            for name, secret in self._secrets:
                new = new.replace(secret.encode(), f"[redacted:{name}]".encode())
            if new != data:
                path.write_bytes(new)
                changed.append(path)
        return changed


class RedactingStream(io.TextIOBase):
    """A text stream that redacts line by line before passing text on.

    Whole lines are buffered so a secret split across two ``write`` calls is still caught.
    """

    def __init__(self, inner: TextIO, redactor: Redactor) -> None:
        self._inner = inner
        self._redactor = redactor
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        if "\n" in self._pending:
            complete, self._pending = self._pending.rsplit("\n", 1)
            self._inner.write(self._redactor.text(complete + "\n"))
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._inner.write(self._redactor.text(self._pending))
            self._pending = ""
        self._inner.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self._inner.isatty()

    def fileno(self) -> int:
        return self._inner.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._inner, "encoding", "utf-8")
