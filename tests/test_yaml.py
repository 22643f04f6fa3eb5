"""YAML loading that keeps the line of every key, so configuration errors can name file:line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from releasegate._exceptions import ConfigError, Problem
from releasegate._yaml import LineIndex, dotted, load_yaml, load_yaml_text


def problems_of(text: str) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        load_yaml_text(textwrap.dedent(text), "policy.yaml")
    return info.value.problems


def test_every_key_and_list_item_has_its_line() -> None:
    data, lines = load_yaml_text(
        textwrap.dedent(
            """\
            # a comment
            probe:
              retry:
                timeout_s: 30
            required:
              - health.readiness
              - health.liveness
            """
        ),
        "policy.yaml",
    )

    assert data == {"probe": {"retry": {"timeout_s": 30}}, "required": ["health.readiness", "health.liveness"]}
    assert lines.line(("probe",)) == 2
    assert lines.line(("probe", "retry", "timeout_s")) == 4
    assert lines.line(("required", 0)) == 6
    assert lines.line(("required", 1)) == 7


def test_a_path_without_a_line_falls_back_to_its_nearest_ancestor() -> None:
    # A missing key (pydantic reports its would-be path) is shown at the mapping that lacks it.
    _, lines = load_yaml_text("waivers:\n  - check: health.deep\n    expires: 2026-01-01\n", "policy.yaml")

    assert lines.line(("waivers", 0, "justification")) == 2
    assert lines.line(("nowhere", "at", "all")) == 1
    assert LineIndex({}).line(("anything",)) is None


def test_duplicate_key_is_an_error_at_the_second_occurrence() -> None:
    # PyYAML alone would silently keep the last value: a policy that says two things.
    problems = problems_of(
        """\
        probe:
          timeout_s: 5
          timeout_s: 50
        """
    )

    assert [(p.file, p.line, p.key) for p in problems] == [("policy.yaml", 3, "probe.timeout_s")]
    assert "duplicate key" in problems[0].message
    assert problems[0].fix == "remove one of the two"


def test_every_duplicate_is_listed_at_once() -> None:
    problems = problems_of("a: 1\na: 2\nb:\n  c: 1\n  c: 2\n")

    assert [(p.line, p.key) for p in problems] == [(2, "a"), (5, "b.c")]


def test_syntax_error_names_the_line() -> None:
    problems = problems_of(
        """\
        on_error: hold
        probe:
          timeout_s: [5
        deadline_s: 900
        """
    )

    assert len(problems) == 1
    assert problems[0].line is not None and problems[0].line >= 3
    assert problems[0].message.startswith("YAML syntax error")
    assert problems[0].fix == "fix the YAML syntax at that line"


def test_two_documents_in_one_file_are_a_syntax_error() -> None:
    problems = problems_of("a: 1\n---\nb: 2\n")

    assert problems[0].message.startswith("YAML syntax error")
    assert problems[0].line == 2


def test_a_value_that_only_looks_like_a_date_is_a_problem_not_a_crash() -> None:
    # Regression: PyYAML raises a plain ValueError for month 13, which escaped as a traceback.
    problems = problems_of(
        """\
        waivers:
          - check: health.deep
            expires: 2026-13-01
        """
    )

    assert [(p.line, p.key) for p in problems] == [(3, "waivers[0].expires")]
    assert "month must be in 1..12" in problems[0].message


def test_a_key_that_only_looks_like_a_date_is_a_problem_not_a_crash() -> None:
    problems = problems_of("severity:\n  2026-02-30: info\n")

    assert [(p.line, p.key) for p in problems] == [(2, "severity")]
    assert "invalid key" in problems[0].message


def test_merge_keys_and_complex_keys_are_refused() -> None:
    problems = problems_of(
        """\
        base: &base {timeout_s: 5}
        probe:
          <<: *base
        ? [a, b]
        : 1
        """
    )

    assert [(p.line, p.message) for p in problems] == [
        (3, "merge keys (<<) are not supported"),
        (4, "a key must be a plain value"),
    ]


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_an_empty_document_is_none(text: str) -> None:
    assert load_yaml_text(text, "policy.yaml")[0] is None


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"

    with pytest.raises(ConfigError) as info:
        load_yaml(path)

    assert info.value.problems == [Problem(str(path), None, "", "file not found", "check the path or create the file")]


def test_a_file_that_is_not_utf8_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))

    with pytest.raises(ConfigError) as info:
        load_yaml(path)

    assert info.value.problems[0].message.startswith("cannot read file")


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        ((), ""),
        (("probe",), "probe"),
        (("probe", "retry", "timeout_s"), "probe.retry.timeout_s"),
        (("waivers", 0, "check"), "waivers[0].check"),
    ],
)
def test_dotted(path: tuple[str | int, ...], shown: str) -> None:
    assert dotted(path) == shown


def test_an_alias_bomb_is_a_configuration_error_not_a_memory_blowup(tmp_path: Path) -> None:
    # Given a "billion laughs" file: each level doubles ten times over the previous one
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join(f'*a{i - 1}' for _ in range(10))}]" for i in range(1, 9)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(levels) + "\n")
    # Then loading stops at the value budget with a located problem
    with pytest.raises(ConfigError) as caught:
        load_yaml(path)
    assert "alias expansion" in caught.value.problems[0].message


def test_absurdly_deep_nesting_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError) as caught:
        load_yaml(path)
    assert "nested too deeply" in caught.value.problems[0].message


def test_a_control_character_is_a_configuration_error_not_a_crash() -> None:
    # PyYAML's reader refuses a NUL while the loader is being built, before parsing starts.
    problems = problems_of("name: a\x00b\n")
    assert "special characters are not allowed" in problems[0].message


@pytest.mark.parametrize("text", ["!!python/object/apply:os.system [echo hi]\n", "a: !!set {x, y}\n", "a: !custom [1]\n"])
def test_a_tag_on_a_mapping_or_list_is_refused_not_dropped(text: str) -> None:
    # Mappings and lists are built here, not by PyYAML: their tag would otherwise vanish silently.
    problems = problems_of(text)
    assert "is not supported" in problems[0].message and "tag" in problems[0].message
