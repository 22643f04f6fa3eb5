"""The assistant "model": deterministic, rule-based code suggestions.

A real model backend would be slow and non-deterministic; the gate needs neither to be proven, only
a reply that is recognisably good (healthy) or recognisably degraded (fault ``bad-model``: an
empty suggestion). Same input, same reply, so a golden-prompt check can compare exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SORT = """\
Sort with the built-in, which is stable and returns a new list:

```python
ordered = sorted(items, key=lambda item: item.name)
```"""

_TEST = """\
Here is a pytest skeleton to start from:

```python
import pytest


def test_behaviour():
    # Given
    value = build()
    # When
    result = act(value)
    # Then
    assert result == expected
```"""

_ASYNC = """\
Run independent awaits concurrently instead of one after another:

```python
results = await asyncio.gather(*(fetch(url) for url in urls))
```"""

_FILE = """\
Open files with a context manager so they are closed on every path:

```python
with open(path, encoding="utf-8") as handle:
    text = handle.read()
```"""

_DEFAULT = """\
Consider extracting the repeated logic into a small, named function:

```python
def normalise(value: str) -> str:
    return value.strip().lower()
```"""

# First matching rule wins; keywords are matched as whole words, case-insensitively.
RULES: tuple[tuple[str, str], ...] = (
    (r"\bsort(ed|ing)?\b", _SORT),
    (r"\btests?\b|\bpytest\b", _TEST),
    (r"\basync\b|\bawait\b|\bconcurren", _ASYNC),
    (r"\bfiles?\b|\bopen\b", _FILE),
)


@dataclass(frozen=True)
class Assistant:
    """The model backend of one service instance."""

    degraded: bool = False  # fault bad-model

    def suggest(self, prompt: str) -> str:
        if self.degraded:
            return ""
        for pattern, reply in RULES:
            if re.search(pattern, prompt, re.IGNORECASE):
                return reply
        return _DEFAULT
