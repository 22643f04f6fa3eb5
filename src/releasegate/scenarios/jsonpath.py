"""The small subset of JSONPath scenarios use to point into a JSON document.

``$`` is the whole document; ``.name`` a key (letters, digits, ``_``, ``-``, ``:``, ``@``);
``["any key"]`` or ``['any key']`` a key with dots, spaces or quotes (backslash escapes the
quote); ``[0]`` a list item, ``[-1]`` the last one. No wildcards, filters or recursion: a path
names exactly one value, so an expectation on it means one thing.

    resolve({"a": [{"b": 1}]}, "$.a[0].b")  -> 1
    resolve({"x.y": 2}, '$["x.y"]')          -> 2
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

_NAME = re.compile(r"\.([A-Za-z0-9_\-:@]+)")
_INDEX = re.compile(r"\[(-?\d+)\]")
_QUOTED = re.compile(r"""\[(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')\]""")
_ESCAPE = re.compile(r"\\(.)")

Part = str | int


class PathNotFound(LookupError):
    """The document has no value at the path (a key is absent, an index out of range, or a
    step goes into something that is not an object or list)."""

    def __init__(self, path: str, at: str) -> None:
        super().__init__(f"{path}: nothing at {at}")
        self.path = path
        self.at = at


class InvalidPath(ValueError):
    """Not a path this module understands; see :func:`validate_path`."""


def resolve(document: Any, path: str) -> Any:
    """The value at ``path``; PathNotFound when absent, InvalidPath when ``path`` is malformed."""
    current = document
    walked = "$"
    for part in parse(path):
        if isinstance(part, int):
            walked += f"[{part}]"
            if not isinstance(current, list) or not -len(current) <= part < len(current):
                raise PathNotFound(path, walked)
            current = current[part]
        else:
            walked += f".{part}" if _NAME.fullmatch("." + part) else f"[{part!r}]"
            if not isinstance(current, dict) or part not in current:
                raise PathNotFound(path, walked)
            current = current[part]
    return current


def validate_path(path: str) -> str | None:
    """What is wrong with ``path`` (for a configuration problem), or None when it is valid."""
    try:
        parse(path)
    except InvalidPath as exc:
        return str(exc)
    return None


def parse(path: str) -> tuple[Part, ...]:
    """``path`` as keys (str) and indexes (int); InvalidPath when malformed."""
    return _parse(path)


@lru_cache(maxsize=1024)
def _parse(path: str) -> tuple[Part, ...]:
    if not isinstance(path, str) or not path.startswith("$"):
        raise InvalidPath(f'JSON path {path!r} must start with $ (e.g. $.id, $.items[0].name, $["key.with.dots"])')
    parts: list[Part] = []
    position = 1
    while position < len(path):
        for pattern in (_NAME, _INDEX, _QUOTED):
            match = pattern.match(path, position)
            if match is None:
                continue
            if pattern is _INDEX:
                parts.append(int(match.group(1)))
            elif pattern is _QUOTED:
                raw = match.group(1) if match.group(1) is not None else match.group(2)
                parts.append(_ESCAPE.sub(r"\1", raw))
            else:
                parts.append(match.group(1))
            position = match.end()
            break
        else:
            shown = path[position : position + 20]
            raise InvalidPath(
                f"JSON path {path!r}: cannot read '{shown}' at character {position + 1}; "
                'write .name, [0] or ["key"] (no wildcards or filters)'
            )
    return tuple(parts)
