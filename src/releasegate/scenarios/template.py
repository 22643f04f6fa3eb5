"""``${name}`` variables in scenario values: one small, strict template language.

- ``${name}`` is replaced by the variable's value inside any string of a value (mapping keys,
  values and list items, recursively); ``$$`` is a literal ``$``; any other ``$`` stays as
  written, so regular expressions (``^[0-9a-f]+$``) and JSON paths (``$.id``) need no escaping.
- A string that is exactly ``${name}`` becomes the variable's value with its type (a number
  stays a number in a JSON body); inside a longer string a value is written as text (strings
  as they are, anything else as JSON: ``true``, ``null``, ``42``, ``["a"]``).
- An undefined variable raises :class:`UndefinedVariable`; ``${`` not followed by a name and
  ``}`` raises :class:`TemplateSyntaxError`. The loader finds both before a run starts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# $$ (escaped dollar) | ${name} | ${ anything else (malformed)
_TOKEN = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\{")
_WHOLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class UndefinedVariable(KeyError):
    """A ``${name}`` whose variable is not defined at that point."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"undefined variable ${{{self.name}}}"


class TemplateSyntaxError(ValueError):
    """``${`` that does not open a variable reference (``${}``, ``${a b}``, a missing ``}``)."""


def render(value: Any, variables: Mapping[str, Any]) -> Any:
    """``value`` with every ``${name}`` replaced from ``variables`` (see the module docstring)."""
    return _walk(value, lambda text: render_text(text, variables), lambda key: render_text(key, variables, as_text=to_text))


def render_text(text: str, variables: Mapping[str, Any], *, as_text: Callable[[Any], str] | None = None) -> Any:
    """One string rendered; exactly ``${name}`` keeps the value's type unless ``as_text`` is given.

    ``as_text`` turns each value into the text inserted (e.g. ``re.escape`` for a regex).
    """
    whole = _WHOLE.fullmatch(text)
    if whole is not None and as_text is None:
        return _lookup(whole.group(1), variables)
    convert = as_text or to_text

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "$$":
            return "$"
        name = match.group(1)
        if name is None:
            raise TemplateSyntaxError(_malformed(text, match.start()))
        return convert(_lookup(name, variables))

    return _TOKEN.sub(replace, text)


def variables_in(value: Any) -> set[str]:
    """Names of every variable ``value`` refers to; TemplateSyntaxError for a malformed ``${``."""
    names: set[str] = set()

    def collect(text: str) -> str:
        for match in _TOKEN.finditer(text):
            if match.group(0) == "$$":
                continue
            if match.group(1) is None:
                raise TemplateSyntaxError(_malformed(text, match.start()))
            names.add(match.group(1))
        return text

    _walk(value, collect, collect)
    return names


def to_text(value: Any) -> str:
    """How a value reads inside a longer string: strings as they are, the rest as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _lookup(name: str, variables: Mapping[str, Any]) -> Any:
    try:
        return variables[name]
    except KeyError:
        raise UndefinedVariable(name) from None


def _walk(value: Any, on_text: Callable[[str], Any], on_key: Callable[[str], Any]) -> Any:
    # Keys are always rendered as text: a mapping key must stay hashable.
    if isinstance(value, str):
        return on_text(value)
    if isinstance(value, Mapping):
        return {(on_key(key) if isinstance(key, str) else key): _walk(item, on_text, on_key) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_walk(item, on_text, on_key) for item in value]
    return value


def _malformed(text: str, at: int) -> str:
    shown = text[at : at + 30]
    return f"'{shown}' is not a variable reference: write ${{name}} (letters, digits, _) or $$ for a literal $"
