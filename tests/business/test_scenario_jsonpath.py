"""The JSON path subset of scenarios: one path names exactly one value."""

from __future__ import annotations

import pytest

from releasegate.scenarios.jsonpath import InvalidPath, PathNotFound, resolve, validate_path

DOCUMENT = {
    "id": "c1",
    "data": {"messages": [{"text": "hi"}, {"text": "bye"}]},
    "key.with.dots": 1,
    "db:responseTime": [{"status": "pass"}],
    "it's": True,
    "nothing": None,
}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("$", DOCUMENT),
        ("$.id", "c1"),
        ("$.data.messages[0].text", "hi"),
        ("$.data.messages[-1].text", "bye"),
        ('$["key.with.dots"]', 1),
        ("$['it\\'s']", True),
        ("$.db:responseTime[0].status", "pass"),
        ("$.nothing", None),
    ],
)
def test_resolve_finds_the_value(path: str, value: object) -> None:
    assert resolve(DOCUMENT, path) == value


@pytest.mark.parametrize("path", ["$.missing", "$.data.messages[2]", "$.id.length", "$.data[0]", "$.nothing.x"])
def test_an_absent_value_is_path_not_found_saying_where(path: str) -> None:
    with pytest.raises(PathNotFound) as caught:
        resolve(DOCUMENT, path)

    assert caught.value.path == path


@pytest.mark.parametrize("path", ["id", "$..id", "$.a[*]", "$.a[?(@.x)]", "$.", "$[1", "$ .a"])
def test_paths_outside_the_subset_are_invalid_with_a_reason(path: str) -> None:
    problem = validate_path(path)

    assert problem is not None and path in problem
    with pytest.raises(InvalidPath):
        resolve(DOCUMENT, path)


def test_a_valid_path_has_no_problem() -> None:
    assert validate_path('$.data.messages[0]["text"]') is None
