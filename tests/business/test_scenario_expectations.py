"""Judging answers and events against scenario expectations: pure, no network."""

from __future__ import annotations

import json
from typing import Any

import pytest

from releasegate.probes.api import ApiAnswer
from releasegate.scenarios.expectations import (
    MAX_MATCHED_CHARS,
    MISSING,
    check_answer,
    check_match,
    matcher_definition_problems,
    matcher_problems,
)
from releasegate.scenarios.model import Expect


def answer(status: int = 200, body: Any = None, *, headers: dict[str, str] | None = None, latency_ms: float = 12.0) -> ApiAnswer:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return ApiAnswer("POST", "https://svc.test/api", status, headers or {}, raw, False, latency_ms)


def test_an_answer_meeting_every_expectation_has_no_problem() -> None:
    expect = Expect.model_validate(
        {
            "status": 201,
            "json": {"$.id": {"type": "string", "matches": "^c-[0-9]+$"}, "$.title": "gate ${run_id}"},
            "headers": {"Location": {"contains": "/conversations/"}},
            "body_contains": "${run_id}",
            "max_ms": 2000,
        }
    )
    got = answer(201, {"id": "c-7", "title": "gate r1"}, headers={"location": "/api/v1/conversations/c-7"})

    assert check_answer(expect, got, {"run_id": "r1"}) == []


def test_every_problem_is_reported_at_once() -> None:
    expect = Expect.model_validate({"status": [200, 201], "json": {"$.id": {"type": "string"}, "$.title": "x"}, "max_ms": 100})

    problems = check_answer(expect, answer(500, {"title": "y"}, latency_ms=250), {})

    assert problems == [
        "status: expected 200 or 201, got 500",
        "latency: 250 ms, over the budget of 100 ms",
        "$.id: missing",
        "$.title: expected 'x', got 'y'",
    ]


def test_without_a_status_any_2xx_is_expected() -> None:
    # Fail closed: an expectation that forgets the status must not accept an error page.
    assert check_answer(Expect(), answer(204, {}), {}) == []
    assert check_answer(Expect(), answer(503, {}), {}) == ["status: expected 2xx, got 503"]


def test_json_expectations_on_a_body_that_is_not_json_say_so() -> None:
    problems = check_answer(Expect.model_validate({"json": {"$.id": "x"}}), answer(200, b"<html>"), {})

    assert len(problems) == 1 and problems[0].startswith("body: not JSON")


def test_header_values_compare_as_text_and_names_case_insensitively() -> None:
    expect = Expect.model_validate({"headers": {"Content-Length": 12, "X-Absent": {"exists": False}}})

    assert check_answer(expect, answer(200, {}, headers={"content-length": "12"}), {}) == []


def test_a_variable_inside_matches_stands_for_its_literal_text() -> None:
    # An id with regex metacharacters must match itself, not a pattern.
    match = {"$.id": {"matches": "^${cid}$"}}

    assert check_match(match, {"id": "a.b+c"}, {"cid": "a.b+c"}) == []
    assert check_match(match, {"id": "aXbbc"}, {"cid": "a.b+c"}) != []


@pytest.mark.parametrize(
    ("expected", "actual", "problem"),
    [
        (1, True, "expected 1, got true"),  # JSON: true is not 1
        ({"equals": None}, 0, "expected null, got 0"),
        ({"type": "integer"}, 1.5, "expected a value of type integer, got number 1.5"),
        ({"min_length": 2}, "a", "length 1, expected at least 2 ('a')"),
        ({"min_length": 1}, 5, "expected a string, array or object of length >= 1, got 5"),
        ({"contains": "bob"}, ["alice"], "does not contain 'bob' (got [\"alice\"])"),
        ({"exists": False}, "here", "expected to be absent, got 'here'"),
        ({"exists": True}, MISSING, "missing"),
        ("x", MISSING, "missing, expected 'x'"),
    ],
)
def test_matchers_say_what_differs(expected: Any, actual: Any, problem: str) -> None:
    assert matcher_problems(expected, actual, "$.v") == [f"$.v: {problem}"]


@pytest.mark.parametrize(
    ("expected", "actual"),
    [(1, 1.0), ({"type": "number"}, 3), ({"equals": {"a": [1]}}, {"a": [1]}), ({"exists": False}, MISSING), ({"matches": "^ok"}, "ok!")],
)
def test_matchers_that_hold(expected: Any, actual: Any) -> None:
    assert matcher_problems(expected, actual, "$.v") == []


def test_matcher_definitions_are_checked_before_any_run() -> None:
    assert matcher_definition_problems("plain") == []
    assert matcher_definition_problems({"matches": "^${id}$"}) == []
    assert "unknown matcher key 'regex'" in matcher_definition_problems({"regex": "x"})[0]
    assert "invalid regular expression" in matcher_definition_problems({"matches": "(unclosed"})[0]
    assert "at least one test" in matcher_definition_problems({})[0]


def test_matches_searches_only_the_first_64_kib_of_a_value() -> None:
    # The value comes from the service under test: bounding it bounds a backtracking pattern's work.
    long = "x" * MAX_MATCHED_CHARS + "needle"
    assert matcher_problems({"matches": "needle"}, long, "$.text") != []
    assert matcher_problems({"matches": "needle"}, "needle" + long, "$.text") == []


def test_a_body_nested_past_the_recursion_limit_is_not_json() -> None:
    deep = answer(200, b"[" * 100_000 + b"]" * 100_000)
    [problem] = check_answer(Expect.model_validate({"json": {"$[0]": 1}}), deep, {})
    assert problem.startswith("body: not JSON ('the JSON is nested too deeply to read')")
