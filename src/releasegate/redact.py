"""Secret redaction for every output: terminal, evidence, reports and files written by others.

Secrets are the values of the environment variables the target names (``auth.token_env``);
they are registered once per run and replaced by ``[redacted:NAME]`` wherever they appear.

Output is often cut before it reaches us (a 2 KiB body excerpt, a 300-character summary,
pytest shortening a long value in the middle), which can leave a *piece* of a secret. So
besides whole secrets, any run of :data:`FRAGMENT_LENGTH` or more characters copied from a
secret is redacted too.
"""

from __future__ import annotations

import html
import io
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

# Shorter values would redact ordinary words; such a token is a configuration smell anyway.
MIN_SECRET_LENGTH = 6
# Pieces of a secret this long are redacted as well; for a random token, 8 characters are far
# too specific to occur in ordinary text, and fewer leak too little to matter.
FRAGMENT_LENGTH = 8

# user:password@ written into a URL or host spec (ssh://deploy:pw@app1, https://u:p@prom:9090).
_USERINFO_PASSWORD = re.compile(r"(?P<user>(?:^|(?<=[\s'\"\[(,=/]))[^\s:/@'\"\[\](),=]+):[^\s@/'\"]+@")


def mask_userinfo_passwords(text: str) -> str:
    """``text`` with every password written into a URL's user info (``user:password@host``) shown as ``***``."""
    return _USERINFO_PASSWORD.sub(lambda m: f"{m['user']}:***@", text)


class Redactor:
    def __init__(self, secrets: Iterable[tuple[str, str]] = ()) -> None:
        self._secrets: list[tuple[str, str]] = []
        self._fragments: list[tuple[str, re.Pattern[str], tuple[str, ...]]] = []
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
        self._fragments = [
            (name, _fragment_pattern(secret), _windows(secret)) for name, secret in self._secrets if len(secret) > FRAGMENT_LENGTH
        ]

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def text(self, value: str) -> str:
        for name, secret in self._secrets:
            if secret in value:
                value = value.replace(secret, f"[redacted:{name}]")
        for name, pattern, windows in self._fragments:
            # A plain substring test first: the alternation regex is ~10x slower over the
            # megabytes of a load report, and almost every text holds no fragment at all.
            if any(window in value for window in windows):
                value = pattern.sub(f"[redacted:{name}]", value)
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
            # surrogateescape keeps bytes that are not UTF-8 exactly as they were.
            new = self.text(data.decode("utf-8", errors="surrogateescape")).encode("utf-8", errors="surrogateescape")
            if new != data:
                path.write_bytes(new)
                changed.append(path)
        return changed


def _windows(secret: str) -> tuple[str, ...]:
    """Every run of FRAGMENT_LENGTH characters of ``secret``."""
    return tuple(sorted({secret[i : i + FRAGMENT_LENGTH] for i in range(len(secret) - FRAGMENT_LENGTH + 1)}))


def _fragment_pattern(secret: str) -> re.Pattern[str]:
    """Matches any run of FRAGMENT_LENGTH or more characters copied from ``secret``.

    Every window of FRAGMENT_LENGTH characters is an alternative; the match then extends over
    as many following characters of the secret as are present (a lazy-free greedy tail).
    """
    windows = _windows(secret)
    tail = "[" + re.escape("".join(sorted(set(secret)))) + "]*"
    return re.compile("(?:" + "|".join(re.escape(w) for w in windows) + ")" + tail)


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
            self._emit(complete + "\n")
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._emit(self._pending)
            self._pending = ""
        try:
            self._inner.flush()
        except (BrokenPipeError, ValueError):
            pass

    def _emit(self, text: str) -> None:
        # A reader that went away (`releasegate run | head`) must not turn the decision into a
        # crash: the exit code is the contract, the terminal is a courtesy.
        try:
            self._inner.write(self._redactor.text(text))
        except (BrokenPipeError, ValueError):
            pass

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self._inner.isatty()

    def fileno(self) -> int:
        return self._inner.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._inner, "encoding", "utf-8")
