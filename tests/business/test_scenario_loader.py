"""Scenario files are validated strictly at start-up: every mistake a ConfigError naming file:line.

Each test writes a small scenario folder, loads it, and looks at the problems: which file,
which line, which key, and that the message says what is wrong.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from releasegate._exceptions import ConfigError, Problem
from releasegate.config import load_target
from releasegate.scenarios import load_scenarios
from releasegate.scenarios.loader import load_folder

SHIPPED = Path(__file__).resolve().parents[2] / "scenarios"

CREATE = """\
steps:
  - name: create
    http: {method: POST, url: /api/v1/conversations, json: {title: "t ${run_id}"}}
    expect: {status: 201}
    save: {conversation_id: "$.id"}
"""


def write(folder: Path, relative: str, text: str) -> Path:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(folder: Path) -> list[Problem]:
    with pytest.raises(ConfigError) as caught:
        load_folder(folder)
    return caught.value.problems


def only_problem(folder: Path) -> Problem:
    problems = problems_of(folder)
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


def test_the_shipped_scenarios_load_clean() -> None:
    suite = load_folder(SHIPPED)

    assert sorted(suite.workflows) == ["collaboration", "conversation", "tool_run"]
    assert {"shared_conversation", "post_marker", "ask_assistant"} <= set(suite.drivers)
    assert suite.drivers["post_marker"].scenario.outputs == ["conversation_id", "message_id"]


def test_an_unknown_key_names_its_line_and_suggests_the_right_one(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "flow.yaml",
        """\
        steps:
          - name: me
            http: {url: /api/v1/me}
            expect:
              status: 200
              max_msec: 100
        """,
    )

    problem = only_problem(tmp_path)

    assert (problem.file, problem.line, problem.key) == (str(path), 6, "steps[0].expect.max_msec")
    assert problem.message == "unknown key" and "max_ms" in problem.fix


def test_an_undefined_variable_names_file_line_and_the_nearest_defined_one(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "flow.yaml",
        CREATE
        + """\
  - name: post
    http:
      method: POST
      url: /api/v1/conversations/${conversation}/messages
      json: {text: hi}
""",
    )

    problem = only_problem(tmp_path)

    assert f"{problem.file}:{problem.line}" == f"{path}:9"
    assert problem.key == "steps[1].http.url"
    assert problem.message == "undefined variable ${conversation}"
    assert "did you mean ${conversation_id}?" in problem.fix


def test_a_variable_saved_later_is_not_defined_earlier(tmp_path: Path) -> None:
    write(
        tmp_path,
        "flow.yaml",
        """\
        steps:
          - name: too early
            http: {url: "/api/v1/conversations/${conversation_id}"}
          - name: create
            http: {method: POST, url: /api/v1/conversations, json: {title: t}}
            save: {conversation_id: "$.id"}
        """,
    )

    problem = only_problem(tmp_path)

    assert (problem.line, problem.message) == (3, "undefined variable ${conversation_id}")


def test_a_connection_must_be_opened_before_it_is_used(tmp_path: Path) -> None:
    write(
        tmp_path,
        "flow.yaml",
        """\
        steps:
          - name: open
            ws_connect: {connection: alice, url: "${ws_url}"}
          - name: wait on a typo
            ws_expect: {connection: alcie, match: {"$.type": typing}}
          - name: close
            ws_close: {connection: alice}
          - name: send after close
            ws_send: {connection: alice, text: hi}
        """,
    )

    problems = problems_of(tmp_path)

    assert [(p.line, p.key) for p in problems] == [(5, "steps[1].ws_expect.connection"), (9, "steps[3].ws_send.connection")]
    assert "connection 'alcie' is not open here (open: alice)" in problems[0].message


def test_bad_regexes_paths_and_matchers_are_found_before_running(tmp_path: Path) -> None:
    write(
        tmp_path,
        "flow.yaml",
        """\
        steps:
          - name: me
            http: {url: /api/v1/me}
            expect:
              json:
                "$.username": {matches: "(unclosed"}
                "$..deep": 1
                "$.ok": {regex: x}
            save: {user: "username"}
        """,
    )

    problems = problems_of(tmp_path)

    by_line = {p.line: p.message for p in problems}
    assert "invalid regular expression" in by_line[6]
    assert "'$..deep'" in by_line[7]
    assert "unknown matcher key 'regex'" in by_line[8]
    assert "must start with $" in by_line[9]


def test_a_driver_must_declare_outputs_and_save_each_of_them(tmp_path: Path) -> None:
    write(tmp_path, "drivers/no_outputs.yaml", CREATE)
    path = write(tmp_path, "drivers/unsaved.yaml", "outputs: [conversation_id, message_id]\n" + CREATE)

    problems = problems_of(tmp_path)

    messages = {(Path(p.file).name, p.key): p.message for p in problems}
    assert "must declare its outputs" in messages[("no_outputs.yaml", "outputs")]
    assert messages[("unsaved.yaml", "outputs[1]")] == "output 'message_id' is saved by no step"
    assert any(p.file == str(path) and p.line == 1 for p in problems)


def test_names_become_check_ids_so_they_must_be_lower_case_and_unique(tmp_path: Path) -> None:
    write(tmp_path, "Check-Out.yaml", CREATE)
    write(tmp_path, "a.yaml", "name: same\n" + CREATE)
    write(tmp_path, "b.yaml", "name: same\n" + CREATE)

    problems = problems_of(tmp_path)

    assert len(problems) == 2
    assert "'Check-Out' (its file name) must be lower-case" in problems[0].message and "check_out" in problems[0].fix
    assert (Path(problems[1].file).name, problems[1].line) == ("b.yaml", 1) and "already used" in problems[1].message


def test_a_workflow_input_needs_a_default_and_budgets_must_fit_the_step_timeout(tmp_path: Path) -> None:
    write(
        tmp_path,
        "flow.yaml",
        """\
        inputs: {prompt: null}
        steps:
          - name: open
            ws_connect: {connection: c, url: "${ws_url}"}
          - name: wait
            ws_expect: {connection: c, match: {"$.text": "${prompt}"}, within_ms: 20000}
            timeout_ms: 5000
        """,
    )

    problems = problems_of(tmp_path)

    assert [(p.line, p.key) for p in problems] == [(1, "inputs.prompt"), (6, "steps[1].ws_expect.within_ms")]


def test_a_golden_set_must_fit_its_driver(tmp_path: Path) -> None:
    write(tmp_path, "drivers/ask.yaml", "inputs: {prompt: null}\noutputs: [reply]\n" + CREATE.replace("conversation_id", "reply"))
    golden = write(
        tmp_path,
        "golden/set.yaml",
        """\
        driver: ask
        input: question
        output: reply
        cases: [{name: one, prompt: p, checks: [{min_length: 1}]}]
        """,
    )
    write(tmp_path, "golden/other.yaml", "driver: nope\ncases: [{name: one, prompt: p, checks: [{min_length: 1}]}]\n")

    problems = problems_of(tmp_path)

    assert [(Path(p.file).name, p.line, p.key) for p in problems] == [("other.yaml", 1, "driver"), ("set.yaml", 2, "input")]
    assert problems[1].file == str(golden)


def test_the_target_must_name_existing_drivers_for_sync_and_consistency(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RG_TEST_TOKEN", "tok-123456789")
    write(tmp_path, "scenarios/drivers/shared.yaml", "outputs: [conversation_id]\n" + CREATE)
    target = write(
        tmp_path,
        "target.yaml",
        """\
        name: t
        base_url: https://127.0.0.1:9
        auth: {token_env: RG_TEST_TOKEN}
        scenarios: scenarios
        sync:
          setup: shraed
          actions: {edit: {type: edit}}
        consistency:
          write: shared
          reads:
            - {url: "/c/${conversation_id}/m/${message_id}"}
        """,
    )

    with pytest.raises(ConfigError) as caught:
        load_scenarios(load_target(target))

    problems = [(p.line, p.key, p.message) for p in caught.value.problems]
    assert problems[0][:2] == (6, "sync.setup") and "no driver 'shraed'" in problems[0][2]
    assert "did you mean 'shared'" in caught.value.problems[0].fix
    assert (9, "consistency.write") == problems[1][:2] and "must declare the input 'marker'" in problems[1][2]
    assert problems[2][:2] == (11, "consistency.reads[0].url") and "${message_id}" in problems[2][2]


def test_sync_without_a_scenarios_folder_is_a_configuration_error(tmp_path: Path) -> None:
    target = write(
        tmp_path,
        "target.yaml",
        """\
        name: t
        base_url: https://127.0.0.1:9
        sync: {setup: shared_conversation, actions: {edit: {type: edit}}}
        """,
    )

    with pytest.raises(ConfigError) as caught:
        load_scenarios(load_target(target))

    assert [(p.line, p.key) for p in caught.value.problems] == [(3, "sync.setup")]
    assert "no scenarios folder" in caught.value.problems[0].message


def test_http_path_is_another_spelling_of_url(tmp_path: Path) -> None:
    write(tmp_path, "flow.yaml", "steps:\n  - name: me\n    http: {method: GET, path: /api/v1/me}\n")

    suite = load_folder(tmp_path)

    step = suite.workflows["flow"].scenario.steps[0]
    assert step.http is not None and step.http.url == "/api/v1/me"
    assert os.fspath(suite.folder) == os.fspath(tmp_path)


def test_a_consistency_read_must_look_for_the_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given reads whose expectations would hold on the first poll whether or not the write shows
    monkeypatch.setenv("RG_TEST_TOKEN", "tok-123456789")
    write(tmp_path, "scenarios/drivers/post.yaml", "inputs: {marker: null}\noutputs: [conversation_id]\n" + CREATE)
    target = write(
        tmp_path,
        "target.yaml",
        """\
        name: t
        base_url: https://127.0.0.1:9
        auth: {token_env: RG_TEST_TOKEN}
        scenarios: scenarios
        consistency:
          write: post
          reads:
            - {url: "/c/${conversation_id}/m"}
            - {url: "/c/${conversation_id}/m", expect: {status: 200}}
            - url: "/c/${conversation_id}/m"
              expect: {json: {"$.last.conversation": "${conversation_id}"}}
            - url: "/c/${conversation_id}"
              expect: {status: 200, json: {"$.title": {contains: "t"}}}
        """,
    )

    with pytest.raises(ConfigError) as caught:
        load_scenarios(load_target(target))

    # Then the default (body contains ${marker}) and a read naming an output are fine; the others are named
    problems = [(p.line, p.key) for p in caught.value.problems]
    assert problems == [(9, "consistency.reads[1].expect"), (13, "consistency.reads[3].expect")]
    assert "does not look for the write: it names none of ${conversation_id}, ${marker}" in caught.value.problems[0].message


def test_golden_regexes_and_schemas_are_checked_when_the_folder_loads(tmp_path: Path) -> None:
    write(tmp_path, "drivers/ask.yaml", "inputs: {prompt: null}\noutputs: [reply]\n" + CREATE.replace("conversation_id", "reply"))
    golden = write(
        tmp_path,
        "golden/set.yaml",
        """\
        driver: ask
        cases:
          - name: one
            prompt: p
            checks:
              - regex: 'fine'
              - not_regex: '(unclosed'
              - json_schema: {type: no-such-type}
        """,
    )

    problems = problems_of(tmp_path)

    assert [(p.file, p.line, p.key) for p in problems] == [
        (str(golden), 7, "cases[0].checks[1].not_regex"),
        (str(golden), 8, "cases[0].checks[2].json_schema"),
    ]
    assert "'(unclosed' is not a valid regular expression" in problems[0].message
    assert "not a valid JSON schema" in problems[1].message
