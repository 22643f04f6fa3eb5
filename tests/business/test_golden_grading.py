"""business.model_quality's pure parts: grading replies, asking a golden set, judging the pass rate.

Replies here are synthetic strings; ``ask`` is a fake coroutine. The last tests grade the shipped
golden set against the reference assistant itself (no network): healthy 100 %, bad-model 0 %.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from loopback import refused_port
from releasegate._exceptions import ProbeError
from releasegate._yaml import load_yaml
from releasegate.config import Gates, validate_model
from releasegate.probes import golden
from releasegate.probes.http import HttpSettings
from releasegate.reference.assistant import Assistant
from releasegate.scenarios import runner
from releasegate.scenarios.loader import load_folder
from releasegate.scenarios.model import GoldenCase, GoldenCheck, GoldenSet

SHIPPED = Path(__file__).resolve().parents[2] / "scenarios" / "golden" / "python_basics.yaml"


def check(**spec: Any) -> GoldenCheck:
    return GoldenCheck.model_validate(spec)


def graded(reply: str, **spec: Any) -> golden.CheckGrade:
    return golden.grade_check(check(**spec), reply)


def golden_set(*cases: tuple[str, list[dict[str, Any]]]) -> GoldenSet:
    return GoldenSet.model_validate(
        {"driver": "ask_assistant", "cases": [{"name": name, "prompt": f"prompt {name}", "checks": checks} for name, checks in cases]}
    )


def fenced(code: str, tag: str = "python") -> str:
    return f"Here you go:\n\n```{tag}\n{code}\n```\nHope that helps."


# --- extracting code ---------------------------------------------------------------------------


def test_the_first_python_block_is_the_code_even_after_another_language() -> None:
    reply = "```bash\npip install x\n```\nthen\n```python\nx = 1\n```\n```python\ny = 2\n```"
    assert golden.code_block(reply, {"python"}) == "x = 1\n"


def test_an_untagged_block_is_used_when_there_is_no_tagged_one_and_else_the_whole_reply() -> None:
    assert golden.code_block("text\n```\nz = 3\n```", {"python"}) == "z = 3\n"
    assert golden.code_block("z = 3", {"python"}) == "z = 3"


def test_fences_open_anywhere_take_the_first_word_as_tag_and_close_at_the_next_fence() -> None:
    reply = "see ```Python3 {.numberLines}\nx = 1 ```tail\n```\nlast\n```"
    assert list(golden.fenced_blocks(reply)) == [("Python3", "x = 1 "), ("", "last\n")]
    # An opening fence without a line break or without a closing fence is no block
    assert list(golden.fenced_blocks("```python x = 1```")) == []
    assert list(golden.fenced_blocks("```python\nx = 1")) == []


@pytest.mark.parametrize(
    "hostile",
    ["```" + "x" * (1 << 20), "`" * (1 << 20), "```py\n" + "a" * (1 << 20), "```\n```" * 150_000],
    ids=["one-long-fence-line", "only-backticks", "never-closed", "many-empty-blocks"],
)
def test_finding_code_blocks_is_linear_on_a_hostile_megabyte(hostile: str) -> None:
    # A regex with backtracking took seconds on 64 KiB and minutes on 1 MiB of such text. The
    # bound is generous: it guards against quadratic blowup, it does not measure speed.
    started = time.perf_counter()
    golden.code_block(hostile, {"python"})
    assert time.perf_counter() - started < 5


def test_a_reply_over_the_cap_fails_its_case_unread() -> None:
    case = GoldenCase.model_validate(
        {"name": "huge", "prompt": "p", "checks": [{"regex": "x"}, {"python_parses": True}, {"json_schema": {"type": "object"}}]}
    )
    started = time.perf_counter()
    result = golden.grade("set", case, "```" + "x" * (1 << 20))
    assert time.perf_counter() - started < 5
    assert not result.passed and result.reply_chars == (1 << 20) + 3
    assert result.why() == f"reply length: reply too long: {(1 << 20) + 3} characters, more than {golden.MAX_REPLY_CHARS}; not graded"


def test_a_reply_just_under_the_cap_is_graded_in_bounded_time() -> None:
    case = GoldenCase.model_validate(
        {"name": "big", "prompt": "p", "checks": [{"regex": "(a+)+b"}, {"python_parses": True}, {"json_schema": {"type": "object"}}]}
    )
    started = time.perf_counter()
    result = golden.grade("set", case, "`" * (golden.MAX_REPLY_CHARS - 1))
    assert time.perf_counter() - started < 5
    assert not result.passed and len(result.grades) == 3


# --- regex, not_regex, min_length -----------------------------------------------------------------


def test_regex_is_searched_anywhere_in_the_reply() -> None:
    assert graded("use sorted(items)", regex=r"sorted\(").passed


def test_regexes_search_only_the_first_64_kib_of_a_reply() -> None:
    # Documented in golden/README.md: the reply comes from the service under test, the pattern
    # from the golden file; bounding the text bounds a backtracking pattern's work.
    reply = "x" * golden.MAX_MATCHED_CHARS + "eval("
    assert not graded(reply, regex=r"eval\(").passed
    assert graded(reply, not_regex=r"eval\(").passed
    assert graded("eval(" + reply, regex=r"eval\(").passed
    result = graded("use items.sort()", regex=r"sorted\(")
    assert not result.passed and result.reason == "no match in the reply"


def test_not_regex_fails_naming_what_it_found() -> None:
    assert graded("with open(p) as f:", not_regex=r"eval\(").passed
    result = graded("x = eval(user_input)", not_regex=r"eval\(")
    assert not result.passed and "'eval('" in result.reason


def test_a_broken_pattern_is_an_invalid_check_not_a_failing_reply() -> None:
    result = graded("anything", regex="(unclosed")
    assert result.invalid and not result.passed


def test_min_length_does_not_count_surrounding_whitespace() -> None:
    assert graded("x" * 40, min_length=40).passed
    result = graded("   short   \n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n", min_length=40)
    assert not result.passed and "5 characters" in result.reason


# --- Python -------------------------------------------------------------------------------------


def test_python_parses_on_valid_and_invalid_code() -> None:
    assert graded(fenced("ordered = sorted(items)"), python_parses=True).passed
    result = graded(fenced("def broken(:\n    pass"), python_parses=True)
    assert not result.passed and result.reason.startswith("not valid Python")


def test_an_empty_reply_is_not_valid_python_although_ast_accepts_an_empty_module() -> None:
    # Given the fault bad-model's reply
    result = graded("", python_parses=True)
    # Then "the Python parses" does not hold vacuously
    assert not result.passed and result.reason == "the reply holds no code"


def test_python_parses_false_expects_no_python() -> None:
    assert graded("just prose, (not code", python_parses=False).passed
    assert not graded(fenced("x = 1"), python_parses=False).passed


def test_top_level_await_parses_as_in_a_notebook_or_a_coroutine_excerpt() -> None:
    assert graded(fenced("results = await asyncio.gather(*(fetch(u) for u in urls))"), defines="results").passed


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("def normalise(value):\n    return value", "normalise"),
        ("async def fetch(url):\n    return url", "fetch"),
        ("class Parser:\n    pass", "Parser"),
        ("first, *rest = items", "rest"),
        ("total: int = 0", "total"),
        ("import numpy as np", "np"),
        ("import os.path", "os"),
        ("from pathlib import Path", "Path"),
        ("with open(p) as handle:\n    text = handle.read()", "text"),
        ("def test_behaviour():\n    value = 1", "value"),
    ],
)
def test_defines_finds_every_kind_of_binding(code: str, name: str) -> None:
    assert graded(fenced(code), defines=name).passed


def test_defines_fails_naming_what_the_code_defines_instead() -> None:
    result = graded(fenced("def normalize(value):\n    return value"), defines="normalise")
    assert not result.passed
    assert result.reason == "the code does not define normalise (it defines normalize)"


def test_defines_a_name_only_used_is_not_defined() -> None:
    assert not graded(fenced("print(ordered)"), defines="ordered").passed


def test_code_in_a_reply_is_parsed_never_run(tmp_path: Path) -> None:
    # Given a reply whose code would write a file if it were executed
    marker = tmp_path / "ran"
    reply = fenced(f"open({str(marker)!r}, 'w').write('x')\nhandle = 1")
    # When it is graded
    assert graded(reply, defines="handle").passed
    # Then nothing ran
    assert not marker.exists()


# --- JSON schema --------------------------------------------------------------------------------

SCHEMA = {"type": "object", "required": ["name", "tags"], "properties": {"name": {"type": "string"}, "tags": {"type": "array"}}}


def test_json_schema_validates_the_first_json_block() -> None:
    assert graded(fenced('{"name": "x", "tags": []}', tag="json"), json_schema=SCHEMA).passed
    result = graded(fenced('{"name": 3, "tags": []}', tag="json"), json_schema=SCHEMA)
    assert not result.passed and result.reason.startswith("at name:")


def test_json_schema_reads_a_bare_json_reply_and_refuses_prose() -> None:
    assert graded('{"name": "x", "tags": ["a"]}', json_schema=SCHEMA).passed
    result = graded("Sure! The name is x.", json_schema=SCHEMA)
    assert not result.passed and result.reason.startswith("not valid JSON")
    assert graded("", json_schema=SCHEMA).reason == "the reply holds no JSON"


def test_a_broken_schema_is_an_invalid_check() -> None:
    result = graded('{"a": 1}', json_schema={"type": "no-such-type"})
    assert result.invalid and "not a valid JSON schema" in result.reason


def test_a_remote_ref_is_never_fetched() -> None:
    # Given a schema pointing at a document on some host
    schema = {"$ref": "http://127.0.0.1:9/schema.json"}
    # Then the check is invalid (unresolvable), and no request was made (port 9 would refuse anyway)
    result = graded('{"a": 1}', json_schema=schema)
    assert result.invalid and "$ref" in result.reason


def test_golden_problems_are_found_before_any_prompt_is_sent() -> None:
    sets = {"s": golden_set(("bad regex", [{"regex": "(x"}]), ("bad schema", [{"json_schema": {"type": 5}}]), ("fine", [{"regex": "x"}]))}
    problems = golden.golden_problems(sets)
    assert len(problems) == 2
    assert problems[0].startswith("golden set s, case 'bad regex', regex (x: not a valid regular expression")
    assert "case 'bad schema'" in problems[1] and "not a valid JSON schema" in problems[1]


# --- a case -------------------------------------------------------------------------------------


def test_a_case_passes_only_when_every_check_holds() -> None:
    case = GoldenCase.model_validate({"name": "sorting", "prompt": "p", "checks": [{"regex": "sorted"}, {"defines": "ordered"}]})
    good = golden.grade("set", case, fenced("ordered = sorted(items)"))
    half = golden.grade("set", case, fenced("result = sorted(items)"))
    assert good.passed and not half.passed
    assert half.why().startswith("defines ordered: the code does not define ordered")
    assert half.evidence()["failed_checks"] == [{"check": "defines ordered", "reason": half.grades[1].reason}]


def test_the_reply_excerpt_in_evidence_is_bounded() -> None:
    case = GoldenCase.model_validate({"name": "long", "prompt": "p", "checks": [{"min_length": 1}]})
    result = golden.grade("set", case, "x" * 10_000)
    assert len(result.evidence()["reply_excerpt"]) == golden.REPLY_EXCERPT_CHARS
    assert result.evidence()["reply_chars"] == 10_000


# --- asking -------------------------------------------------------------------------------------


def run(sets: dict[str, GoldenSet], ask: golden.Ask, **kwargs: Any) -> golden.GoldenRun:
    return asyncio.run(
        golden.run_cases(sets, ask, case_timeout_s=kwargs.pop("case_timeout_s", 5), budget_s=kwargs.pop("budget_s", 60), **kwargs)
    )


def replies(mapping: dict[str, str | Exception]) -> golden.Ask:
    async def ask(set_name: str, golden_set: GoldenSet, prompt: str) -> str:
        answer = mapping[prompt]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return ask


def test_every_case_is_asked_in_order_and_graded() -> None:
    sets = {"s": golden_set(("a", [{"regex": "yes"}]), ("b", [{"regex": "yes"}]))}
    result = run(sets, replies({"prompt a": "yes", "prompt b": "no"}))
    assert [(r.name, r.passed) for r in result.results] == [("a", True), ("b", False)]
    assert result.pass_rate == 0.5 and result.not_run == 0


def test_a_driver_failure_makes_that_case_unanswered_not_a_failure() -> None:
    sets = {"s": golden_set(("a", [{"regex": "yes"}]), ("b", [{"regex": "yes"}]))}
    result = run(sets, replies({"prompt a": "yes", "prompt b": ProbeError("the reply did not arrive within 3000 ms")}))
    assert result.results[1].error == "no reply: the reply did not arrive within 3000 ms"
    # The rate is over the answered cases; the unanswered one bounds it from both sides.
    assert result.pass_rate == 1.0 and result.samples == 1
    assert result.rate_range() == (0.5, 1.0)


def test_a_case_that_outlives_its_timeout_is_an_error() -> None:
    async def hang(set_name: str, golden_set: GoldenSet, prompt: str) -> str:
        await asyncio.sleep(30)
        return "never"

    sets = {"s": golden_set(("a", [{"regex": "yes"}]))}
    result = run(sets, hang, case_timeout_s=0.05)
    assert result.results[0].error == "no reply within 0.05 s"
    assert result.pass_rate is None


def test_the_number_of_cases_is_capped() -> None:
    sets = {"s": golden_set(*((f"c{i}", [{"regex": "y"}]) for i in range(5)))}
    result = run(sets, replies({f"prompt c{i}": "y" for i in range(5)}), max_cases=3)
    assert result.samples == 3 and result.not_run == 2
    assert result.notes == ("only the first 3 of 5 golden cases were sent (the cap per run)",)


def test_after_three_errors_without_a_reply_the_rest_are_not_sent() -> None:
    asked: list[str] = []

    async def down(set_name: str, golden_set: GoldenSet, prompt: str) -> str:
        asked.append(prompt)
        raise ProbeError("cannot connect")

    sets = {"s": golden_set(*((f"c{i}", [{"regex": "y"}]) for i in range(6)))}
    result = run(sets, down)
    assert len(asked) == 3 and result.not_run == 3
    assert result.pass_rate is None


def test_cases_left_when_the_time_budget_is_spent_are_unanswered_not_a_smaller_sample() -> None:
    now = [0.0]

    async def slow(set_name: str, golden_set: GoldenSet, prompt: str) -> str:
        now[0] += 4.0  # each reply takes 4 s on the injected clock
        return "y"

    sets = {"s": golden_set(*((f"c{i}", [{"regex": "y"}]) for i in range(5)))}
    result = run(sets, slow, budget_s=10, clock=lambda: now[0])
    # Three replies fit into 10 s; the other two were never sent and are unanswered cases
    assert result.samples == 3 and result.passed == 3 and result.not_run == 0 and len(result.errors) == 2
    assert result.results[4].error == "not sent: the time budget of 10 s was spent"
    assert result.notes == ("the time budget of 10 s was spent after 3 cases",)
    assert result.pass_rate == 1.0 and result.rate_range() == (0.6, 1.0)
    # ... which the judge cannot ignore: 60 % or 100 % is the difference between failing and passing
    assert golden.judge(result, min_pass_rate=0.9, max_drop_points=5).outcome == "error"


# --- judging ------------------------------------------------------------------------------------


def golden_run(passed: int, failed: int = 0, errors: int = 0) -> golden.GoldenRun:
    ok = golden.CheckGrade("regex y", True)
    bad = golden.CheckGrade("regex y", False, "no match in the reply")
    results = [golden.CaseResult("s", f"p{i}", (ok,)) for i in range(passed)]
    results += [golden.CaseResult("s", f"f{i}", (bad,)) for i in range(failed)]
    results += [golden.CaseResult("s", f"e{i}", error="no reply: cannot connect") for i in range(errors)]
    return golden.GoldenRun(tuple(results))


def test_a_full_pass_rate_passes_with_the_evidence_keys_the_baseline_reads() -> None:
    finding = golden.judge(golden_run(5), min_pass_rate=0.9, max_drop_points=5)
    assert finding.outcome == "passed"
    assert finding.summary == "pass rate 100 % (5 of 5 golden cases)"
    assert finding.evidence["pass_rate"] == 1.0 and finding.evidence["samples"] == 5


def test_empty_replies_fail_the_rate_and_name_the_failing_cases() -> None:
    finding = golden.judge(golden_run(0, failed=5), min_pass_rate=0.9, max_drop_points=5)
    assert finding.outcome == "failed"
    assert finding.summary == (
        "pass rate 0 % (0 of 5 golden cases) is below the 90 % minimum; "
        "failing: s/f0, s/f1, s/f2, s/f3, s/f4 (first: regex y: no match in the reply)"
    )
    assert finding.evidence["pass_rate"] == 0.0


def test_exactly_the_minimum_passes() -> None:
    assert golden.judge(golden_run(9, failed=1), min_pass_rate=0.9, max_drop_points=5).outcome == "passed"
    assert golden.judge(golden_run(8, failed=2), min_pass_rate=0.9, max_drop_points=5).outcome == "failed"


def test_unanswered_cases_that_could_flip_the_verdict_make_it_inconclusive() -> None:
    # Given 9 passing cases and two without a reply: 100 % if they passed, 81.8 % if they failed
    finding = golden.judge(golden_run(9, errors=2), min_pass_rate=0.9, max_drop_points=5)
    # Then the gate cannot say whether the model is good enough
    assert finding.outcome == "error"
    assert finding.summary.startswith("inconclusive: pass rate 100 % (9 of 9 golden cases; 2 more got no reply)")
    assert "as failures gives 81.82 %, as passes 100 %" in finding.summary
    assert "(first: s/e0: no reply: cannot connect)" in finding.summary
    assert finding.evidence["errors"] == 2 and finding.evidence["samples"] == 9
    assert finding.evidence["pass_rate_range"] == [0.8182, 1.0]


def test_unanswered_cases_that_cannot_flip_the_verdict_are_reported_apart() -> None:
    # 19 of 20 passing: even a second unanswered failure would leave 90.5 %
    passing = golden.judge(golden_run(19, failed=0, errors=1), min_pass_rate=0.9, max_drop_points=5)
    assert passing.outcome == "passed"
    assert passing.summary == "pass rate 100 % (19 of 19 golden cases; 1 more got no reply)"
    assert passing.observed == {"pass_rate": 1.0, "passed": 19, "samples": 19, "unanswered": 1}
    # 2 of 10 passing: even counted as passes the unanswered one leaves 27 %
    failing = golden.judge(golden_run(2, failed=8, errors=1), min_pass_rate=0.9, max_drop_points=5)
    assert failing.outcome == "failed"
    assert failing.summary.startswith("pass rate 20 % (2 of 10 golden cases; 1 more got no reply) is below the 90 % minimum")
    assert "s/e0" not in failing.summary  # listed in the evidence, not counted as a failing case
    assert failing.evidence["errors"] == 1


def test_an_unanswered_case_can_flip_a_baseline_comparison_too() -> None:
    base = golden.BaselineRate("verdict old/verdict.json", 1.0)
    # 19 of 19 answered pass, the minimum is met either way, but 19/20 is exactly 5 points behind and 19/21 is 9.5
    finding = golden.judge(golden_run(19, errors=2), min_pass_rate=0.5, max_drop_points=5, baseline=base)
    assert finding.outcome == "error" and finding.summary.startswith("inconclusive")


def test_no_reply_at_all_is_could_not_measure() -> None:
    finding = golden.judge(golden_run(0, errors=3), min_pass_rate=0.9, max_drop_points=5)
    assert finding.outcome == "error"
    assert "no golden case got a reply (no reply: cannot connect)" in finding.summary
    assert "pass_rate" not in finding.evidence


def test_an_invalid_check_makes_the_check_an_error() -> None:
    broken = golden.CheckGrade("json_schema", False, "the schema has a $ref that cannot be resolved locally", invalid=True)
    run_ = golden.GoldenRun((golden.CaseResult("s", "c", (broken,)),))
    finding = golden.judge(run_, min_pass_rate=0.9, max_drop_points=5)
    assert finding.outcome == "error" and "cannot be judged: s/c: json_schema" in finding.summary


def test_falling_behind_the_baseline_by_more_than_the_allowed_points_fails() -> None:
    # Given a baseline that passed everything and a candidate at 95 % then 90 %
    base = golden.BaselineRate("verdict old/verdict.json", 1.0)
    at_95 = golden.judge(golden_run(19, failed=1), min_pass_rate=0.9, max_drop_points=5, baseline=base)
    at_90 = golden.judge(golden_run(9, failed=1), min_pass_rate=0.9, max_drop_points=5, baseline=base)
    # Then exactly 5 points behind is allowed, 10 is not, though both reach the minimum
    assert at_95.outcome == "passed" and at_95.evidence["drop_points"] == 5.0
    assert at_90.outcome == "failed"
    assert "pass rate 90 % is 10 points behind the baseline's 100 % (at most 5 allowed)" in at_90.summary
    assert at_90.evidence["baseline"] == {"source": "verdict old/verdict.json", "pass_rate": 1.0}


def test_a_baseline_without_a_rate_is_noted_and_the_minimum_alone_judges() -> None:
    base = golden.baseline_from_run("target stable", golden_run(0, errors=2))
    finding = golden.judge(golden_run(5), min_pass_rate=0.9, max_drop_points=5, baseline=base)
    assert finding.outcome == "passed"
    assert "judged against the minimum only" in finding.evidence["baseline"]["note"]


# --- the shipped golden set against the reference assistant ---------------------------------------


def shipped() -> GoldenSet:
    data, lines = load_yaml(SHIPPED)
    return validate_model(GoldenSet, data, lines, str(SHIPPED))


@pytest.mark.parametrize(("degraded", "rate"), [(False, 1.0), (True, 0.0)], ids=["healthy", "bad-model"])
def test_the_shipped_golden_set_tells_the_reference_assistant_from_bad_model(degraded: bool, rate: float) -> None:
    assistant = Assistant(degraded=degraded)

    async def ask(set_name: str, golden_set: GoldenSet, prompt: str) -> str:
        return assistant.suggest(prompt)

    sets = {"python_basics": shipped()}
    assert golden.golden_problems(sets) == []
    result = run(sets, ask)
    assert result.samples >= 5
    assert result.pass_rate == rate, [r.why() for r in result.results if not r.passed]


def test_no_prompt_is_sent_past_the_runs_deadline(tmp_path: Path) -> None:
    # Given a golden set whose driver would ask a service, and a run whose deadline has passed
    (tmp_path / "drivers").mkdir()
    (tmp_path / "golden").mkdir()
    driver = (
        "inputs: {prompt: null}\noutputs: [reply]\nsteps:\n  - name: ask\n    http: {url: '/ask?q=${prompt}'}\n    save: {reply: $.text}\n"
    )
    (tmp_path / "drivers" / "ask.yaml").write_text(driver, encoding="utf-8")
    (tmp_path / "golden" / "set.yaml").write_text("driver: ask\ncases: [{name: a, prompt: p, checks: [{regex: x}]}]\n", encoding="utf-8")
    suite = load_folder(tmp_path)
    ctx = runner.RunContext(f"https://127.0.0.1:{refused_port()}", None, {"primary": "tok-0123456789"}, HttpSettings(2, 1024))
    # When the golden cases run
    result = asyncio.run(golden.golden_run(suite, ctx, Gates(), end=time.monotonic() - 1))
    # Then none was sent, and the check cannot judge
    assert [r.error for r in result.results] == ["not sent: the time budget of 0 s was spent"]
    assert golden.judge(result, min_pass_rate=0.9, max_drop_points=5).outcome == "error"
