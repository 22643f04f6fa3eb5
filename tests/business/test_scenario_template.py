"""Scenario variables: ``${name}`` rendering, its escapes and its static analysis."""

from __future__ import annotations

import pytest

from releasegate.scenarios.template import TemplateSyntaxError, UndefinedVariable, render, variables_in


def test_a_whole_value_variable_keeps_its_type_inside_nested_data() -> None:
    value = {"title": "gate ${run_id}", "count": "${n}", "items": ["${flag}", "n=${n}"]}

    rendered = render(value, {"run_id": "ab12", "n": 3, "flag": True})

    assert rendered == {"title": "gate ab12", "count": 3, "items": [True, "n=3"]}


def test_values_inside_longer_text_are_written_as_json() -> None:
    assert render("${a}|${b}|${c}|${d}", {"a": "x", "b": None, "c": False, "d": ["q"]}) == 'x|null|false|["q"]'


def test_dollar_dollar_is_a_literal_dollar_and_a_lone_dollar_stays() -> None:
    # Regular expressions and JSON paths need no escaping; $$ exists for a literal "${".
    assert render("^[0-9a-f]+$", {}) == "^[0-9a-f]+$"
    assert render("$.id", {}) == "$.id"
    assert render("costs $${price}", {"price": 1}) == "costs ${price}"


def test_mapping_keys_are_rendered_as_text() -> None:
    assert render({"$.${field}": 1}, {"field": 42}) == {"$.42": 1}


def test_an_undefined_variable_is_a_key_error_naming_it() -> None:
    with pytest.raises(UndefinedVariable) as caught:
        render({"a": ["${missing}"]}, {"other": 1})

    assert isinstance(caught.value, KeyError)
    assert caught.value.name == "missing"
    assert str(caught.value) == "undefined variable ${missing}"


@pytest.mark.parametrize("text", ["${}", "${a b}", "${unclosed", "x ${1abc}"])
def test_a_malformed_reference_is_a_syntax_error(text: str) -> None:
    with pytest.raises(TemplateSyntaxError):
        render(text, {"a": 1})
    with pytest.raises(TemplateSyntaxError):
        variables_in(text)


def test_variables_in_finds_every_reference_but_not_escaped_ones() -> None:
    value = {"url": "/c/${cid}/m", "json": {"${key}": ["${a}", "$${not_a_variable}", 3]}}

    assert variables_in(value) == {"cid", "key", "a"}
