"""Judging answers and events against scenario expectations: pure functions, no I/O.

Every function returns the list of problems it found, each a short human-readable line
(``$.status: expected 'finished', got 'queued'``); an empty list means the expectation holds.
All problems are collected, so a report shows everything that was wrong at once.

An expected value is either a plain value (it must be equal) or a mapping, read as a
:class:`~releasegate.scenarios.model.Matcher` (``{matches: ..., type: ..., min_length: ...}``).
Variables (``${name}``) in expected values are rendered first; inside ``matches`` a variable
stands for its literal text (it is regex-escaped), so an id with a ``.`` or ``+`` still matches.
A ``matches`` expression searches the first :data:`MAX_MATCHED_CHARS` characters of the value:
the value comes from the deployment under test, and a backtracking pattern on megabytes of it
could hold the gate for minutes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from releasegate.probes.api import ApiAnswer
from releasegate.scenarios import jsonpath
from releasegate.scenarios.model import Expect, Matcher
from releasegate.scenarios.template import render, render_text, to_text

MAX_SHOWN = 120  # characters of an actual value quoted in a problem
MAX_MATCHED_CHARS = 64 * 1024  # characters of a value a `matches` regular expression searches


class _Missing:
    """The value at a path that does not resolve (told apart from JSON null)."""

    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()


def check_answer(expect: Expect, answer: ApiAnswer, variables: Mapping[str, Any]) -> list[str]:
    """What about an HTTP answer does not meet ``expect`` (after rendering its variables).

    Without ``status`` any 2xx is expected: an expectation never accepts an error answer by omission.
    """
    problems: list[str] = []
    if expect.status is None:
        # Fail closed: an expectation that names no status still refuses an error answer.
        if not 200 <= answer.status <= 299:
            problems.append(f"status: expected 2xx, got {answer.status}")
    else:
        allowed = expect.status if isinstance(expect.status, list) else [expect.status]
        if answer.status not in allowed:
            wanted = " or ".join(str(code) for code in allowed)
            problems.append(f"status: expected {wanted}, got {answer.status}")
    if expect.max_ms is not None and answer.latency_ms > expect.max_ms:
        problems.append(f"latency: {answer.latency_ms:.0f} ms, over the budget of {expect.max_ms:g} ms")
    for name, expected in expect.headers.items():
        actual = answer.headers.get(str(name).lower(), MISSING)
        wanted = _render_expected(expected, variables)
        if not isinstance(wanted, Mapping) and wanted is not None:
            wanted = to_text(wanted)  # header values are text: `content-length: 12` means "12"
        problems += matcher_problems(wanted, actual, f"header {name}")
    if expect.body_contains is not None:
        needle = to_text(render(expect.body_contains, variables))
        if needle not in answer.text():
            problems.append(f"body: does not contain {_short(needle)}")
    if expect.json_:
        try:
            document = answer.json()
        except (ValueError, RecursionError) as exc:
            problems.append(f"body: not JSON ({_short(str(exc))}), so {', '.join(expect.json_)} cannot be checked")
        else:
            problems += check_match(expect.json_, document, variables)
    return problems


def check_match(match: Mapping[str, Any], event: Any, variables: Mapping[str, Any]) -> list[str]:
    """What about a JSON document (an event, a body) does not meet ``match`` (path -> expected)."""
    problems: list[str] = []
    for raw_path, expected in match.items():
        path = to_text(render(raw_path, variables))
        try:
            actual = jsonpath.resolve(event, path)
        except jsonpath.PathNotFound:
            actual = MISSING
        except jsonpath.InvalidPath as exc:
            problems.append(str(exc))
            continue
        problems += matcher_problems(_render_expected(expected, variables), actual, path)
    return problems


def matches_event(match: Mapping[str, Any], event: Any, variables: Mapping[str, Any]) -> bool:
    """Whether an event meets ``match``: the filter of a ws_expect step."""
    return not check_match(match, event, variables)


def matcher_problems(value_or_matcher: Any, actual: Any, where: str) -> list[str]:
    """Problems of ``actual`` (or :data:`MISSING`) against a plain value (equals) or a matcher mapping.

    ``value_or_matcher`` must already be rendered (no ``${...}`` left to fill in).
    """
    if not isinstance(value_or_matcher, Mapping):
        if actual is MISSING:
            return [f"{where}: missing, expected {_short(value_or_matcher)}"]
        if not _equal(actual, value_or_matcher):
            return [f"{where}: expected {_short(value_or_matcher)}, got {_short(actual)}"]
        return []
    try:
        matcher = Matcher.model_validate(dict(value_or_matcher))
    except ValidationError as exc:
        return [f"{where}: invalid matcher {_short(dict(value_or_matcher))} ({_first_error(exc)})"]
    given = matcher.model_fields_set
    if matcher.exists is False:
        return [] if actual is MISSING else [f"{where}: expected to be absent, got {_short(actual)}"]
    if actual is MISSING:
        return [f"{where}: missing"]
    problems: list[str] = []
    if "equals" in given and not _equal(actual, matcher.equals):
        problems.append(f"{where}: expected {_short(matcher.equals)}, got {_short(actual)}")
    if matcher.type is not None and json_type(actual) != matcher.type and not (matcher.type == "number" and json_type(actual) == "integer"):
        problems.append(f"{where}: expected a value of type {matcher.type}, got {json_type(actual)} {_short(actual)}")
    if matcher.min_length is not None:
        if not isinstance(actual, (str, list, dict)):
            problems.append(f"{where}: expected a string, array or object of length >= {matcher.min_length}, got {_short(actual)}")
        elif len(actual) < matcher.min_length:
            problems.append(f"{where}: length {len(actual)}, expected at least {matcher.min_length} ({_short(actual)})")
    if matcher.contains is not None and matcher.contains not in to_text(actual):
        problems.append(f"{where}: does not contain {_short(matcher.contains)} (got {_short(actual)})")
    if matcher.matches is not None:
        try:
            found = re.search(matcher.matches, to_text(actual)[:MAX_MATCHED_CHARS]) is not None
        except re.error as exc:
            problems.append(f"{where}: invalid regular expression {_short(matcher.matches)} ({exc})")
        else:
            if not found:
                problems.append(f"{where}: does not match /{matcher.matches}/ (got {_short(actual)})")
    return problems


def matcher_definition_problems(value_or_matcher: Any) -> list[str]:
    """For the loader: what is wrong with an expected value as written (before any variable is known)."""
    if not isinstance(value_or_matcher, Mapping):
        return []
    try:
        matcher = Matcher.model_validate(dict(value_or_matcher))
    except ValidationError as exc:
        return [_first_error(exc)]
    if not matcher.model_fields_set:
        return ["a matcher needs at least one test (equals, matches, contains, exists, type, min_length)"]
    if matcher.matches is not None:
        try:
            # Variables stand for literal text at run time; any letter tells whether the rest compiles.
            re.compile(str(render_text(matcher.matches, _Anything(), as_text=lambda _: "x")))
        except re.error as exc:
            return [f"invalid regular expression {matcher.matches!r}: {exc}"]
    return []


def json_type(value: Any) -> str:
    """The JSON type name of a parsed value (integer for whole numbers, as JSON Schema says)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _render_expected(expected: Any, variables: Mapping[str, Any]) -> Any:
    if not isinstance(expected, Mapping):
        return render(expected, variables)
    rendered = {}
    for key, value in expected.items():
        if key == "matches" and isinstance(value, str):
            rendered[key] = render_text(value, variables, as_text=lambda v: re.escape(to_text(v)))
        else:
            rendered[key] = render(value, variables)
    return rendered


def _equal(actual: Any, expected: Any) -> bool:
    # JSON equality: true is not 1, and 1 equals 1.0.
    if isinstance(actual, bool) or isinstance(expected, bool):
        return isinstance(actual, bool) and isinstance(expected, bool) and actual == expected
    if isinstance(actual, list) and isinstance(expected, list):
        return len(actual) == len(expected) and all(_equal(a, e) for a, e in zip(actual, expected, strict=True))
    if isinstance(actual, dict) and isinstance(expected, dict):
        return actual.keys() == expected.keys() and all(_equal(actual[k], expected[k]) for k in actual)
    return bool(actual == expected)


def _short(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    loc = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"unknown matcher key '{loc}' (allowed: {', '.join(Matcher.model_fields)})"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{loc}: {message}" if loc else message


class _Anything(dict[str, Any]):
    """Every variable is defined (for a syntax check of a template whose values are unknown)."""

    def __missing__(self, key: str) -> Any:
        return "x"
