"""business.model_quality: golden prompts sent to the assistant, replies graded by rules.

A golden set (``scenarios/golden/<set>.yaml``) is a list of prompts, each with checks on the
reply: a regular expression that must (or must not) occur, "the Python parses", "the code
defines X", "the JSON validates against this schema", a minimum length. A case passes when all
its checks pass; the pass rate (over the cases that got a reply) must reach ``min_pass_rate``
and, with ``--baseline``, fall at most ``max_drop_points`` percentage points behind the
baseline's. Cases that got no reply are reported apart; when counting them all as passes or all
as failures would give different verdicts, the check cannot judge (error).

Three layers, as everywhere in releasegate:

- :func:`grade` and :func:`judge` are pure (a reply in, a grade out; grades in, a Finding out);
- :func:`run_cases` asks every prompt through an injected ``ask`` coroutine, bounded per case
  (timeout), in count (:data:`MAX_CASES`) and in total time; it knows nothing of HTTP;
- the check module wires ``ask`` to the scenario engine's driver (``ask_assistant``).

Code in a reply is only *parsed* (``ast.parse``), never compiled or run: the reply comes from
the deployment under test. JSON schemas never fetch a remote ``$ref``. For the same reason the
work per reply is bounded: a reply over :data:`MAX_REPLY_CHARS` fails its case unread, fenced
blocks are found in one linear pass, and ``regex``/``not_regex`` search only the first
:data:`MAX_MATCHED_CHARS` characters.
"""

from __future__ import annotations

import ast
import asyncio
import json
import math
import re
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import referencing
import referencing.exceptions

from releasegate._exceptions import ProbeError, ProbeTimeout
from releasegate.baseline import Baseline, BaselineTarget, SavedVerdict
from releasegate.config import Gates, LoadedTarget
from releasegate.probes.http import HttpSettings, ssl_context
from releasegate.redact import Redactor
from releasegate.results import Finding
from releasegate.scenarios import runner
from releasegate.scenarios.loader import ScenarioSuite
from releasegate.scenarios.model import GoldenCase, GoldenCheck, GoldenSet

# Upper bounds that keep one run of the check short and its evidence small.
MAX_CASES = 50
REPLY_EXCERPT_CHARS = 300
MAX_REPLY_CHARS = 256 * 1024  # a longer reply fails its case ungraded: no assistant answer is that long
MAX_MATCHED_CHARS = 64 * 1024  # characters of a reply that regex / not_regex search
MAX_PARSED_CHARS = 200_000  # a longer "reply" is not parsed (ast on hostile input can take long)
MAX_CASES_LISTED = 20  # failing cases named in a summary / listed in evidence
# The whole golden run of one deployment stops sending new prompts after this long.
BUDGET_S = 120.0
# After this many errors in a row with no reply at all, the rest would only wait out the same
# timeouts: the remaining cases are not sent.
MAX_ERRORS_BEFORE_ANY_REPLY = 3

_FENCE = "```"
_TAG = re.compile(r"[ \t]*+([A-Za-z0-9_+.-]*+)")  # the first word after the opening ```
_PYTHON_TAGS = frozenset({"python", "python3", "py", "py3"})

Ask = Callable[[str, GoldenSet, str], Awaitable[str]]  # (set name, set, prompt) -> reply
Clock = Callable[[], float]


# --------------------------------------------------------------------------- grading one reply


@dataclass(frozen=True)
class CheckGrade:
    """One golden check on one reply. ``invalid``: the check itself is broken (a bad schema)."""

    check: str  # e.g. "regex sorted\\(" or "defines ordered"
    passed: bool
    reason: str = ""
    invalid: bool = False


def describe(check: GoldenCheck) -> str:
    """The check as one short line, as a reader of the golden file would name it."""
    if check.regex is not None:
        return f"regex {check.regex}"
    if check.not_regex is not None:
        return f"not_regex {check.not_regex}"
    if check.python_parses is not None:
        return "python_parses" if check.python_parses else "python_parses: false"
    if check.defines is not None:
        return f"defines {check.defines}"
    if check.json_schema is not None:
        return "json_schema"
    return f"min_length {check.min_length}"


def fenced_blocks(reply: str) -> Iterator[tuple[str, str]]:
    """(tag, body) of every fenced block in order. A block opens with ``` (anywhere on a line),
    its tag is the first word after the backticks on that line (may be empty), its body runs from
    the next line to the next ```. One pass: a regex here backtracks quadratically on a long
    line of backticks, and the reply comes from the deployment under test."""
    position = 0
    while (opening := reply.find(_FENCE, position)) >= 0:
        line_end = reply.find("\n", opening + len(_FENCE))
        if line_end < 0:
            return
        closing = reply.find(_FENCE, line_end + 1)
        if closing < 0:
            return
        tag = _TAG.match(reply, opening + len(_FENCE), line_end)
        yield (tag.group(1) if tag is not None else ""), reply[line_end + 1 : closing]
        position = closing + len(_FENCE)


def code_block(reply: str, languages: Iterable[str]) -> str:
    """The first fenced block tagged with one of ``languages`` (any case), else the first untagged
    block, else the whole reply. A block tagged with another language is never used."""
    wanted = {tag.lower() for tag in languages}
    untagged: str | None = None
    for tag, body in fenced_blocks(reply):
        if tag.lower() in wanted:
            return body
        if not tag and untagged is None:
            untagged = body
    return untagged if untagged is not None else reply


def parse_python(reply: str) -> ast.Module:
    """The reply's Python (see :func:`code_block`), parsed; ValueError saying why it is not Python."""
    code = code_block(reply, _PYTHON_TAGS)
    if not code.strip():
        raise ValueError("the reply holds no code")
    if len(code) > MAX_PARSED_CHARS:
        raise ValueError(f"the code is longer than {MAX_PARSED_CHARS} characters; not parsed")
    try:
        return ast.parse(code, mode="exec")
    except SyntaxError as exc:
        raise ValueError(f"not valid Python: {exc.msg} (line {exc.lineno})") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ValueError(f"not valid Python: {type(exc).__name__}") from None


def defined_names(module: ast.Module) -> set[str]:
    """Names bound anywhere in the code by def, async def, class, assignment or import."""
    names: set[str] = set()

    def targets(node: ast.AST) -> None:
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, (ast.Tuple, ast.List)):
            for element in node.elts:
                targets(element)
        elif isinstance(node, ast.Starred):
            targets(node.value)

    for node in ast.walk(module):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                targets(target)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign, ast.NamedExpr)):
            targets(node.target)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                # `import a.b` binds `a`; `import a.b as c` binds `c`.
                names.add(alias.asname or alias.name.split(".")[0])
    return names


def schema_problem(schema: dict[str, Any]) -> str | None:
    """Why ``schema`` is not a valid JSON schema, or None."""
    validator = jsonschema.validators.validator_for(schema)
    try:
        validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        return f"not a valid JSON schema: {exc.message}"
    return None


def grade_check(check: GoldenCheck, reply: str) -> CheckGrade:
    """One check on one reply."""
    name = describe(check)
    if check.regex is not None or check.not_regex is not None:
        pattern = check.regex if check.regex is not None else check.not_regex
        assert pattern is not None
        try:
            found = re.search(pattern, reply[:MAX_MATCHED_CHARS])
        except re.error as exc:
            return CheckGrade(name, False, f"the pattern is not a valid regular expression: {exc}", invalid=True)
        if check.regex is not None:
            return CheckGrade(name, True) if found else CheckGrade(name, False, "no match in the reply")
        return CheckGrade(name, False, f"the reply contains {_quote(found.group(0))}") if found else CheckGrade(name, True)
    if check.python_parses is not None or check.defines is not None:
        try:
            module = parse_python(reply)
        except ValueError as exc:
            if check.python_parses is False:
                return CheckGrade(name, True)
            return CheckGrade(name, False, str(exc))
        if check.python_parses is not None:
            return CheckGrade(name, True) if check.python_parses else CheckGrade(name, False, "the reply is valid Python")
        found_names = defined_names(module)
        if check.defines in found_names:
            return CheckGrade(name, True)
        shown = ", ".join(sorted(found_names)[:10]) or "nothing"
        return CheckGrade(name, False, f"the code does not define {check.defines} (it defines {shown})")
    if check.json_schema is not None:
        return _grade_json(name, check.json_schema, reply)
    assert check.min_length is not None
    length = len(reply.strip())
    if length >= check.min_length:
        return CheckGrade(name, True)
    return CheckGrade(name, False, f"{length} characters, fewer than {check.min_length}")


def _grade_json(name: str, schema: dict[str, Any], reply: str) -> CheckGrade:
    problem = schema_problem(schema)
    if problem is not None:
        return CheckGrade(name, False, problem, invalid=True)
    text = code_block(reply, ("json",))
    if not text.strip():
        return CheckGrade(name, False, "the reply holds no JSON")
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return CheckGrade(name, False, f"not valid JSON: {str(exc)[:120]}")
    validator_class = jsonschema.validators.validator_for(schema)
    # An empty registry: a $ref to a remote document is unresolvable instead of fetched.
    validator = validator_class(schema, registry=referencing.Registry())
    try:
        error = jsonschema.exceptions.best_match(validator.iter_errors(document))
    except referencing.exceptions.Unresolvable as exc:
        return CheckGrade(name, False, f"the schema has a $ref that cannot be resolved locally: {exc}", invalid=True)
    except RecursionError:
        return CheckGrade(name, False, "the JSON is nested too deeply to validate")
    if error is None:
        return CheckGrade(name, True)
    where = "/".join(str(part) for part in error.absolute_path) or "(root)"
    return CheckGrade(name, False, f"at {where}: {error.message[:200]}")


@dataclass(frozen=True)
class CaseResult:
    """One golden case: every check's grade, or why no reply was obtained (``error``)."""

    golden_set: str
    name: str
    grades: tuple[CheckGrade, ...] = ()
    reply_excerpt: str = ""
    reply_chars: int = 0
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and all(grade.passed for grade in self.grades)

    @property
    def invalid(self) -> list[CheckGrade]:
        return [grade for grade in self.grades if grade.invalid]

    @property
    def label(self) -> str:
        return f"{self.golden_set}/{self.name}"

    def why(self) -> str:
        """Why the case did not pass, in one line."""
        if self.error is not None:
            return self.error
        return "; ".join(f"{g.check}: {g.reason}" for g in self.grades if not g.passed)

    def evidence(self) -> dict[str, Any]:
        record: dict[str, Any] = {"set": self.golden_set, "name": self.name, "passed": self.passed}
        if self.error is not None:
            record["error"] = self.error
        else:
            record["failed_checks"] = [{"check": g.check, "reason": g.reason} for g in self.grades if not g.passed]
            record["reply_excerpt"] = self.reply_excerpt
            record["reply_chars"] = self.reply_chars
        return record


def grade(golden_set: str, case: GoldenCase, reply: str) -> CaseResult:
    """All checks of one case on its reply; a reply over MAX_REPLY_CHARS fails unread."""
    if len(reply) > MAX_REPLY_CHARS:
        reason = f"reply too long: {len(reply)} characters, more than {MAX_REPLY_CHARS}; not graded"
        return CaseResult(golden_set, case.name, (CheckGrade("reply length", False, reason),), _excerpt(reply), len(reply))
    return CaseResult(
        golden_set=golden_set,
        name=case.name,
        grades=tuple(grade_check(check, reply) for check in case.checks),
        reply_excerpt=_excerpt(reply),
        reply_chars=len(reply),
    )


def golden_problems(sets: Mapping[str, GoldenSet]) -> list[str]:
    """Problems in the golden files themselves (bad regex, bad schema): checked before any prompt is sent."""
    problems = []
    for set_name, golden in sets.items():
        for case in golden.cases:
            for check in case.checks:
                where = f"golden set {set_name}, case {case.name!r}, {describe(check)}"
                pattern = check.regex if check.regex is not None else check.not_regex
                if pattern is not None:
                    try:
                        re.compile(pattern)
                    except re.error as exc:
                        problems.append(f"{where}: not a valid regular expression ({exc})")
                if check.json_schema is not None and (problem := schema_problem(check.json_schema)) is not None:
                    problems.append(f"{where}: {problem}")
    return problems


# --------------------------------------------------------------------------- asking


@dataclass(frozen=True)
class GoldenRun:
    """Every case sent (or not) against one deployment."""

    results: tuple[CaseResult, ...]
    not_run: int = 0  # cases past MAX_CASES, or skipped after repeated errors without a reply
    notes: tuple[str, ...] = ()

    @property
    def samples(self) -> int:
        """Cases that got a reply: what the pass rate is measured on."""
        return len(self.results) - len(self.errors)

    @property
    def passed(self) -> int:
        return sum(1 for result in self.results if result.passed)

    @property
    def errors(self) -> list[CaseResult]:
        """Cases that got no reply (or were not sent for want of time): nothing was graded."""
        return [result for result in self.results if result.error is not None]

    @property
    def pass_rate(self) -> float | None:
        """passed / cases that got a reply; None when none did."""
        return self.passed / self.samples if self.samples else None

    def rate_range(self) -> tuple[float, float]:
        """The pass rate over every case sent, had the unanswered ones all failed, or all passed."""
        total = len(self.results)
        return (self.passed / total, (self.passed + len(self.errors)) / total) if total else (0.0, 0.0)


async def run_cases(
    sets: Mapping[str, GoldenSet],
    ask: Ask,
    *,
    case_timeout_s: float,
    budget_s: float,
    max_cases: int = MAX_CASES,
    clock: Clock = time.monotonic,
) -> GoldenRun:
    """Send every prompt, one after another, and grade the replies.

    ``ask`` raising :class:`ProbeError` (or outliving ``case_timeout_s``) makes that case an
    error (unanswered); so does not being sent because ``budget_s`` was spent. Cases past ``max_cases`` are
    not sent and are counted in ``not_run``; so are the rest after
    :data:`MAX_ERRORS_BEFORE_ANY_REPLY` errors without a single reply (the assistant is not
    answering; more prompts would only wait longer, and the check cannot judge anyway).
    """
    cases = [(name, golden, case) for name, golden in sets.items() for case in golden.cases]
    notes: list[str] = []
    if len(cases) > max_cases:
        notes.append(f"only the first {max_cases} of {len(cases)} golden cases were sent (the cap per run)")
    results: list[CaseResult] = []
    deadline = clock() + budget_s
    for set_name, golden, case in cases[:max_cases]:
        remaining = deadline - clock()
        if remaining <= 0:
            # Unlike the cap, a spent budget says the assistant is slow: what was not asked is
            # an unanswered case (it can make the verdict inconclusive), never a silently
            # smaller sample.
            if not any(note.startswith("the time budget") for note in notes):
                notes.append(f"the time budget of {budget_s:g} s was spent after {len(results)} cases")
            results.append(CaseResult(set_name, case.name, error=f"not sent: the time budget of {budget_s:g} s was spent"))
            continue
        if len(results) >= MAX_ERRORS_BEFORE_ANY_REPLY and all(r.error is not None for r in results):
            notes.append(f"stopped after {len(results)} cases without a single reply")
            break
        timeout = min(case_timeout_s, remaining)
        try:
            reply = await asyncio.wait_for(ask(set_name, golden, case.prompt), timeout=timeout)
        except TimeoutError:
            results.append(CaseResult(set_name, case.name, error=f"no reply within {timeout:g} s"))
            continue
        except ProbeError as exc:
            results.append(CaseResult(set_name, case.name, error=f"no reply: {exc}"[:300]))
            continue
        results.append(grade(set_name, case, reply))
    return GoldenRun(results=tuple(results), not_run=len(cases) - len(results), notes=tuple(notes))


# --------------------------------------------------------------------------- judging


@dataclass(frozen=True)
class BaselineRate:
    """The pass rate to compare against, and where it came from (None: the baseline had none)."""

    source: str
    pass_rate: float | None
    note: str = ""
    cases: tuple[dict[str, Any], ...] = field(default=())


# Percentages compared after rounding, so 0.95 vs 1.0 is a drop of exactly 5 points.
_PRECISION = 6


def judge(
    run: GoldenRun,
    *,
    min_pass_rate: float,
    max_drop_points: float,
    baseline: BaselineRate | None = None,
) -> Finding:
    """The pass rate of the answered cases against the minimum and, when a baseline rate is known,
    against the baseline. Unanswered cases are not counted, unless counting them could change the
    verdict: then the check cannot judge (error)."""
    expected = f"pass rate >= {_percent(min_pass_rate)}"
    baseline_rate = baseline.pass_rate if baseline is not None else None
    if baseline_rate is not None:
        expected += f" and at most {max_drop_points:g} points behind the baseline"
    errors = run.errors
    evidence: dict[str, Any] = {
        "samples": run.samples,
        "passed": run.passed,
        "errors": len(errors),
        "not_run": run.not_run,
        "cases": [result.evidence() for result in run.results[:MAX_CASES]],
    }
    if run.notes:
        evidence["notes"] = list(run.notes)
    if baseline is not None:
        evidence["baseline"] = _baseline_evidence(baseline)
    invalid = [f"{result.label}: {grade.check}: {grade.reason}" for result in run.results for grade in result.invalid]
    if invalid:
        return Finding("error", f"the golden set cannot be judged: {invalid[0]}", expected=expected, evidence=evidence)
    rate = run.pass_rate
    if rate is None:
        first = errors[0].error if errors else "no golden case was sent"
        return Finding(
            "error", f"could not measure model quality: no golden case got a reply ({first})", expected=expected, evidence=evidence
        )
    evidence["pass_rate"] = round(rate, 4)
    observed: dict[str, Any] = {"pass_rate": round(rate, 4), "passed": run.passed, "samples": run.samples}
    counted = f"{_percent(rate)} ({run.passed} of {run.samples} golden cases"
    counted += f"; {len(errors)} more got no reply)" if errors else ")"
    if errors:
        observed["unanswered"] = len(errors)
        worst, best = run.rate_range()
        if bool(_shortfalls(worst, "", min_pass_rate, max_drop_points, baseline_rate)) != bool(
            _shortfalls(best, "", min_pass_rate, max_drop_points, baseline_rate)
        ):
            evidence["pass_rate_range"] = [round(worst, 4), round(best, 4)]
            summary = (
                f"inconclusive: pass rate {counted}; counting the unanswered cases as failures gives {_percent(worst)}, "
                f"as passes {_percent(best)}, and the verdict depends on which (first: {errors[0].label}: {errors[0].error})"
            )
            return Finding("error", summary, observed, expected, evidence)
    failing = [result for result in run.results if not result.passed and result.error is None]
    which = _failing_cases(failing)
    problems = _shortfalls(rate, counted, min_pass_rate, max_drop_points, baseline_rate)
    if baseline_rate is not None:
        observed["baseline_pass_rate"] = round(baseline_rate, 4)
        evidence["drop_points"] = round(round((baseline_rate - rate) * 100, _PRECISION), 2)
    if problems:
        return Finding("failed", "; ".join(problems) + f"; failing: {which}", observed, expected, evidence)
    summary = f"pass rate {counted}"
    if baseline_rate is not None:
        summary += f", baseline {_percent(baseline_rate)}"
    if failing:
        summary += f"; failing: {which}"
    return Finding("passed", summary, observed, expected, evidence)


def _shortfalls(rate: float, counted: str, min_pass_rate: float, max_drop_points: float, baseline_rate: float | None) -> list[str]:
    """What a pass rate falls short of, the minimum and the baseline (empty: it passes);
    ``counted`` is the rate as the summary shows it."""
    problems = []
    if round(rate, _PRECISION) < round(min_pass_rate, _PRECISION):
        problems.append(f"pass rate {counted} is below the {_percent(min_pass_rate)} minimum")
    if baseline_rate is not None:
        drop = round((baseline_rate - rate) * 100, _PRECISION)
        if drop > max_drop_points:
            problems.append(
                f"pass rate {_percent(rate)} is {drop:.3g} points behind the baseline's {_percent(baseline_rate)} "
                f"(at most {max_drop_points:g} allowed)"
            )
    return problems


def baseline_from_run(source: str, run: GoldenRun) -> BaselineRate:
    """The baseline deployment's own run, as a rate to compare against."""
    rate = run.pass_rate
    if rate is None:
        first = run.errors[0].error if run.errors else "no case was sent"
        return BaselineRate(source, None, note=f"the baseline could not be measured ({first}); judged against the minimum only")
    return BaselineRate(source, rate, cases=tuple(result.evidence() for result in run.results[:MAX_CASES_LISTED]))


def _baseline_evidence(baseline: BaselineRate) -> dict[str, Any]:
    record: dict[str, Any] = {"source": baseline.source, "pass_rate": None if baseline.pass_rate is None else round(baseline.pass_rate, 4)}
    if baseline.note:
        record["note"] = baseline.note
    if baseline.cases:
        record["cases"] = list(baseline.cases)
    return record


def _failing_cases(failing: Sequence[CaseResult]) -> str:
    """The failing cases by name, and why the first one failed (the evidence has every reason)."""
    if not failing:
        return "none"
    names = ", ".join(result.label for result in failing[:5])
    more = f" and {len(failing) - 5} more" if len(failing) > 5 else ""
    return f"{names}{more} (first: {failing[0].why()[:160]})"


def _percent(rate: float) -> str:
    return f"{rate * 100:.4g} %"


def _quote(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


def _excerpt(reply: str) -> str:
    return reply if len(reply) <= REPLY_EXCERPT_CHARS else reply[: REPLY_EXCERPT_CHARS - 1] + "…"


# --------------------------------------------------------------------------- wiring for the check

CHECK_ID = "business.model_quality"


def asker(suite: ScenarioSuite, ctx: runner.RunContext, *, deadline_s: float, end: float = math.inf, clock: Clock = time.monotonic) -> Ask:
    """``ask`` through each set's driver: the prompt as its ``input``, the reply from its ``output``.

    Each driver run ends itself after ``deadline_s``, and never after ``end`` (on ``clock``).
    """

    async def ask(set_name: str, golden_set: GoldenSet, prompt: str) -> str:
        budget = max(0.0, min(deadline_s, end - clock()))
        outputs = await runner.run_driver(suite, golden_set.driver, ctx, {golden_set.input: prompt}, deadline_s=budget)
        reply = outputs.get(golden_set.output)
        if reply is None:
            raise ProbeError(f"driver {golden_set.driver} saved no {golden_set.output!r}")
        return reply if isinstance(reply, str) else json.dumps(reply)

    return ask


def case_timeout_s(gates: Gates) -> float:
    """One case: a driver run of a few requests and one awaited reply."""
    return max(10.0, 2 * gates.probe.timeout_s)


async def golden_run(suite: ScenarioSuite, ctx: runner.RunContext, gates: Gates, *, end: float) -> GoldenRun:
    """Every golden case of ``suite`` against the deployment of ``ctx``, none sent after ``end`` (time.monotonic)."""
    timeout = case_timeout_s(gates)
    sets = {name: loaded_set.golden for name, loaded_set in suite.golden.items()}
    # The driver ends itself at ``timeout``; the extra grace lets it close its connections first.
    ask = asker(suite, ctx, deadline_s=timeout, end=end)
    budget = max(0.0, min(BUDGET_S, end - time.monotonic()))
    return await run_cases(sets, ask, case_timeout_s=timeout + runner.CLOSE_GRACE_S, budget_s=budget)


def measure(
    suite: ScenarioSuite,
    loaded: LoadedTarget,
    http: HttpSettings,
    gates: Gates,
    baseline: Baseline | None,
    *,
    deadline: float | None = None,
) -> Finding:
    """The check: problems in the golden files first, then the target (and a baseline target) asked.

    ``deadline`` (time.monotonic) is the gate run's: no prompt is sent, and no driver runs, past it.
    """
    thresholds = gates.thresholds.model_quality
    sets = {name: loaded_set.golden for name, loaded_set in suite.golden.items()}
    problems = golden_problems(sets)
    if problems:
        return Finding("error", f"the golden sets cannot be used: {problems[0]}", evidence={"problems": problems[:MAX_CASES_LISTED]})
    ctx = runner.context_for(loaded, http)
    run = _run_until(suite, ctx, gates, deadline)
    rate: BaselineRate | None = None
    secrets = ctx.secret_pairs()
    if isinstance(baseline, SavedVerdict):
        saved = baseline.number(CHECK_ID, "pass_rate")
        note = "" if saved is not None else f"the baseline verdict has no {CHECK_ID} pass_rate; judged against the minimum only"
        caveat = baseline.caveat("post-deploy")
        note = "; ".join(part for part in (note, caveat) if part)
        rate = BaselineRate(baseline.describe(), saved, note=note)
    elif isinstance(baseline, BaselineTarget):
        other = baseline.loaded
        verify = ssl_context(other.ca_bundle) if other.target.base_url.startswith("https:") else True
        settings = HttpSettings(timeout_s=gates.probe.timeout_s, max_body_bytes=gates.probe.max_body_bytes, verify=verify)
        other_ctx = runner.context_for(other, settings)
        try:
            rate = baseline_from_run(baseline.describe(), _run_until(suite, other_ctx, gates, deadline))
        except ProbeTimeout as exc:
            rate = BaselineRate(
                baseline.describe(), None, note=f"the baseline could not be measured ({exc}); judged against the minimum only"
            )
        secrets += other_ctx.secret_pairs()
    finding = judge(run, min_pass_rate=thresholds.min_pass_rate, max_drop_points=thresholds.max_drop_points, baseline=rate)
    # A driver may have saved a credential (a login's token) that a reply or an error repeats.
    return runner.scrubbed(finding, Redactor(secrets))


def _run_until(suite: ScenarioSuite, ctx: runner.RunContext, gates: Gates, deadline: float | None) -> GoldenRun:
    end = time.monotonic() + BUDGET_S if deadline is None else min(time.monotonic() + BUDGET_S, deadline)
    limit = max(0.0, end - time.monotonic()) + case_timeout_s(gates) + 2 * runner.CLOSE_GRACE_S
    return _blocking(golden_run(suite, ctx, gates, end=end), limit)


def _blocking(coroutine: Coroutine[Any, Any, GoldenRun], timeout_s: float) -> GoldenRun:
    """Run on a fresh event loop within ``timeout_s`` (ProbeTimeout beyond it)."""

    async def bounded() -> GoldenRun:
        return await asyncio.wait_for(coroutine, timeout_s)

    # Not asyncio.run(): it joins the default executor on the way out, so a getaddrinfo() stuck
    # in a slow resolver would hold the check past its deadline (as in probes.http).
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(bounded())
    except TimeoutError:
        raise ProbeTimeout(f"the golden prompts did not finish within {timeout_s:g} s") from None
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
