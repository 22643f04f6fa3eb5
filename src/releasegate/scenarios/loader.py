"""Read a scenario folder: workflows (<dir>/*.yaml), drivers (<dir>/drivers/*.yaml) and golden
sets (<dir>/golden/*.yaml), every problem a ConfigError naming file:line, key and fix.

Beyond the schema (unknown keys, wrong types: the models forbid them), a scenario is checked
the way it will run, step by step, so that nothing is found out half-way through a gate run:

- names: lower-case words joined by underscores (a workflow's name is part of a check id), unique;
- variables: every ``${name}`` must be defined before the step that uses it: a builtin
  (run_id, base_url, ws_url), an input, or saved by an earlier step;
- connections: ws_send, ws_expect and ws_close name a connection an earlier ws_connect opened;
- JSON paths parse, regular expressions compile, matchers have known keys, budgets fit their
  step's timeout; a driver saves every output it declares;
- golden sets name an existing driver that takes their input and saves their output; their
  regular expressions compile and their JSON schemas are valid schemas;
- the target's ``sync.setup`` and ``consistency.write`` name drivers that exist and fit, and each
  consistency read's expectation looks for the write (``${marker}`` or a driver output)
  (:func:`check_target_references`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jsonschema
from pydantic import ValidationError

from releasegate import registry
from releasegate._exceptions import ConfigError, Problem
from releasegate._yaml import LineIndex, YamlPath, dotted, load_yaml
from releasegate.config import ConsistencyRead, LoadedTarget, validate_model
from releasegate.scenarios import jsonpath
from releasegate.scenarios.expectations import matcher_definition_problems
from releasegate.scenarios.model import BUILTIN_VARIABLES, Expect, GoldenSet, Scenario
from releasegate.scenarios.template import NAME, TemplateSyntaxError, render_text, variables_in

Kind = Literal["workflow", "driver"]
# Keys of each action whose strings are templates (rendered at run time), as written in YAML.
_RENDERED: dict[str, tuple[str, ...]] = {
    "http": ("url", "path", "headers", "json", "body"),
    "ws_connect": ("url", "headers"),
    "ws_send": ("json", "text"),
    "ws_expect": ("match", "expect"),
    "ws_close": (),
    "expect": ("headers", "json", "body_contains"),
}
_DEFINE = "save it in an earlier step, declare it under inputs, or use a builtin (" + ", ".join(sorted(BUILTIN_VARIABLES)) + ")"


@dataclass(frozen=True)
class LoadedScenario:
    """A scenario with its name and where it came from (lines for later messages)."""

    name: str
    scenario: Scenario
    path: Path
    lines: LineIndex


@dataclass(frozen=True)
class LoadedGoldenSet:
    name: str
    golden: GoldenSet
    path: Path
    lines: LineIndex


@dataclass(frozen=True)
class ScenarioSuite:
    folder: Path
    workflows: dict[str, LoadedScenario] = field(default_factory=dict)
    drivers: dict[str, LoadedScenario] = field(default_factory=dict)
    golden: dict[str, LoadedGoldenSet] = field(default_factory=dict)

    def describe(self) -> str:
        return f"{len(self.workflows)} workflows, {len(self.drivers)} drivers, {len(self.golden)} golden sets"


def load_scenarios(target: LoadedTarget) -> ScenarioSuite | None:
    """The target's scenario folder, parsed and checked; None when the target names none.

    Also checks what the target asks of the folder (drivers for ``sync`` and ``consistency``),
    so a gate run stops at start-up (exit 3) rather than erroring check by check.
    """
    folder = target.scenario_dir
    suite = None if folder is None else load_folder(folder)
    problems = check_target_references(target, suite)
    if problems:
        raise ConfigError(problems)
    return suite


def load_folder(folder: Path) -> ScenarioSuite:
    problems: list[Problem] = []
    for sub in (folder, folder / "drivers", folder / "golden"):
        for path in sorted(sub.glob("*.yml")):
            problems.append(Problem(str(path), None, "", "ignored: scenario files end in .yaml", f"rename it to {path.stem}.yaml"))
    workflows = _load_all(sorted(folder.glob("*.yaml")), "workflow", problems)
    drivers = _load_all(sorted((folder / "drivers").glob("*.yaml")), "driver", problems)
    golden: dict[str, LoadedGoldenSet] = {}
    for path in sorted((folder / "golden").glob("*.yaml")):
        try:
            data, lines = load_yaml(path)
            golden[path.stem] = LoadedGoldenSet(path.stem, validate_model(GoldenSet, data, lines, str(path)), path, lines)
        except ConfigError as exc:
            problems += exc.problems
    for loaded in golden.values():
        problems += _golden_problems(loaded, drivers)
    if problems:
        raise ConfigError(problems)
    return ScenarioSuite(folder=folder, workflows=workflows, drivers=drivers, golden=golden)


def _load_all(paths: list[Path], kind: Kind, problems: list[Problem]) -> dict[str, LoadedScenario]:
    loaded: dict[str, LoadedScenario] = {}
    for path in paths:
        try:
            data, lines = load_yaml(path)
            scenario = validate_model(Scenario, data, lines, str(path))
        except ConfigError as exc:
            problems += exc.problems
            continue
        name = scenario.name or path.stem
        shown, name_line = str(path), lines.line(("name",))
        if not registry.NAME_PATTERN.fullmatch(name):
            where = "its name" if scenario.name else "its file name"
            problems.append(
                Problem(
                    shown,
                    name_line,
                    "name",
                    f"{kind} name {name!r} ({where}) must be lower-case letters, digits and underscores, starting with a letter",
                    f"write e.g. `name: {_suggest_name(name)}`",
                )
            )
        elif name in loaded:
            problems.append(
                Problem(shown, name_line, "name", f"{kind} name {name!r} is already used by {loaded[name].path}", "give each a unique name")
            )
        found = scenario_problems(data, scenario, lines, shown, kind)
        problems += found
        if not found:
            loaded[name] = LoadedScenario(name, scenario, path, lines)
    return loaded


def scenario_problems(data: dict[str, Any], scenario: Scenario, lines: LineIndex, shown: str, kind: Kind) -> list[Problem]:
    """Problems of a schema-valid scenario as it would run; ``data`` is the raw YAML (for lines)."""
    problems: list[Problem] = []

    def problem(path: YamlPath, message: str, fix: str) -> None:
        problems.append(Problem(shown, lines.line(path), dotted(path), message, fix))

    for name, default in scenario.inputs.items():
        if not NAME.fullmatch(name) or name in BUILTIN_VARIABLES:
            problem(("inputs", name), f"input name {name!r} is not usable as ${{{name}}}", "use letters, digits and _, not a builtin name")
        elif default is None and kind == "workflow":
            problem(("inputs", name), f"input {name!r} has no default; a workflow runs without a caller", "give it a default value")
    if kind == "workflow" and scenario.outputs:
        problem(("outputs",), "outputs belong to drivers (scenarios/drivers/)", "remove outputs, or move the file to drivers/")
    if kind == "driver" and not scenario.outputs:
        problem(("outputs",), "a driver must declare its outputs (the variables its callers get)", "add e.g. `outputs: [conversation_id]`")

    defined = set(BUILTIN_VARIABLES) | set(scenario.inputs)
    saved_at: dict[str, int] = {}
    open_at: dict[str, int] = {}
    raw_steps = data.get("steps") or []
    for index, step in enumerate(scenario.steps):
        raw = raw_steps[index] if index < len(raw_steps) and isinstance(raw_steps[index], dict) else {}
        base: YamlPath = ("steps", index)
        # Variables: everything a step renders must be defined before it runs.
        for section, keys in _RENDERED.items():
            block = raw.get(section)
            if not isinstance(block, dict):
                continue
            for key in keys:
                if key in block:
                    for path, text in _strings(block[key], (*base, section, key)):
                        try:
                            names = variables_in(text)
                        except TemplateSyntaxError as exc:
                            problem(path, str(exc), "write ${name} for a variable and $$ for a literal $")
                            continue
                        for undefined in sorted(names - defined):
                            problem(path, f"undefined variable ${{{undefined}}}", f"{_DEFINE}{_close_hint(undefined, defined)}")
        # Connections: opened before use, not opened twice.
        action = step.action
        if step.ws_connect is not None:
            name = step.ws_connect.connection
            if name in open_at:
                problem(
                    (*base, "ws_connect", "connection"), f"connection {name!r} is already open (step {open_at[name] + 1})", _CLOSE_FIRST
                )
            open_at[name] = index
        for spec in (step.ws_send, step.ws_expect, step.ws_close):
            if spec is not None and spec.connection not in open_at:
                opened = ", ".join(sorted(open_at)) or "none"
                problem(
                    (*base, action, "connection"),
                    f"connection {spec.connection!r} is not open here (open: {opened})",
                    "open it with a ws_connect step before this one",
                )
        if step.ws_close is not None:
            open_at.pop(step.ws_close.connection, None)
        # Expectations: paths, matchers, budgets.
        if step.http is not None:
            url = step.http.url
            if not url.startswith(("/", "http://", "https://", "${")):
                problem(
                    (*base, "http", "url" if "url" in raw.get("http", {}) else "path"), f"url {url!r} is neither a path nor a URL", _URL_FIX
                )
        if step.ws_connect is not None and not step.ws_connect.url.startswith(("ws://", "wss://", "${")):
            problem(
                (*base, "ws_connect", "url"), f"url {step.ws_connect.url!r} is not a ws:// or wss:// URL", "write e.g. ${ws_url}?room=1"
            )
        if step.expect is not None:
            for key, matchers in (("json", step.expect.json_), ("headers", step.expect.headers)):
                for problem_path, message, fix in _matcher_problems(matchers, paths=key == "json"):
                    problem((*base, "expect", key, *problem_path), message, fix)
            _budget(problem, (*base, "expect", "max_ms"), step.expect.max_ms, step.timeout_ms, "max_ms")
            if isinstance(step.expect.status, list) and not step.expect.status:
                problem((*base, "expect", "status"), "an empty list of statuses matches no answer", "list the statuses you accept")
        if step.ws_expect is not None:
            for key, matchers in (("match", step.ws_expect.match), ("expect", step.ws_expect.expect)):
                for problem_path, message, fix in _matcher_problems(matchers, paths=True):
                    problem((*base, "ws_expect", key, *problem_path), message, fix)
            _budget(problem, (*base, "ws_expect", "within_ms"), step.ws_expect.within_ms, step.timeout_ms, "within_ms")
        # Saves: become defined for the steps after this one.
        for variable, where in step.save.items():
            path = (*base, "save", variable)
            if not NAME.fullmatch(variable) or variable in BUILTIN_VARIABLES:
                problem(path, f"cannot save into {variable!r}", "use letters, digits and _ (not a builtin name: run_id, base_url, ws_url)")
            if where.lower().startswith("header:"):
                if step.http is None:
                    problem(path, "header: saves only work on an http step", "save a JSON path of the event instead")
            elif (path_problem := jsonpath.validate_path(where)) is not None:
                problem(path, path_problem, "write a JSON path such as $.id, or header:Name for a response header")
            defined.add(variable)
            saved_at.setdefault(variable, index)
    for position, output in enumerate(scenario.outputs):
        if output not in saved_at:
            problem(
                ("outputs", position),
                f"output {output!r} is saved by no step",
                f"add `save: {{{output}: $.path}}` to the step that gets it",
            )
    return problems


_CLOSE_FIRST = "close it with ws_close first, or give this connection another name"
_URL_FIX = "write a path starting with / (relative to base_url) or an absolute http(s):// URL"


def _matcher_problems(matchers: dict[str, Any], *, paths: bool) -> Iterator[tuple[YamlPath, str, str]]:
    for key, expected in matchers.items():
        if paths:
            try:
                concrete = str(render_text(key, _Anything(), as_text=lambda _: "x"))
            except TemplateSyntaxError:
                concrete = None  # reported with the variables
            message = jsonpath.validate_path(concrete) if concrete is not None else None
            if message is not None:
                yield (key,), message, 'write a JSON path such as $.id, $.items[0].name or $["key.with.dots"]'
        for message in matcher_definition_problems(expected):
            yield (key,), message, "write a plain value (equals) or a matcher: equals, matches, contains, exists, type, min_length"


def _budget(problem: Any, path: YamlPath, value: float | None, timeout_ms: float, key: str) -> None:
    if value is not None and value > timeout_ms:
        problem(path, f"{key} {value:g} exceeds the step's timeout_ms {timeout_ms:g}", f"raise the step's timeout_ms or lower {key}")


def _strings(value: Any, path: YamlPath) -> Iterator[tuple[YamlPath, str]]:
    """Every string in ``value`` (mapping keys too), with its YAML path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                yield (*path, key), key
            yield from _strings(item, (*path, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, index))


def _close_hint(name: str, defined: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(defined), n=1)
    return f" (did you mean ${{{close[0]}}}?)" if close else ""


def _suggest_name(name: str) -> str:
    cleaned = "".join(ch if ch.isalnum() else "_" for ch in name.lower()).strip("_") or "scenario"
    return cleaned if cleaned[0].isalpha() else f"s_{cleaned}"


def _golden_problems(loaded: LoadedGoldenSet, drivers: dict[str, LoadedScenario]) -> list[Problem]:
    golden, shown, lines = loaded.golden, str(loaded.path), loaded.lines
    driver = drivers.get(golden.driver)
    if driver is None:
        known = ", ".join(sorted(drivers)) or "none"
        return [Problem(shown, lines.line(("driver",)), "driver", f"no driver {golden.driver!r} (drivers: {known})", _DRIVER_FIX)]
    problems = _golden_check_problems(loaded)
    if golden.input not in driver.scenario.inputs:
        problems.append(
            Problem(
                shown,
                lines.line(("input",)),
                "input",
                f"driver {golden.driver!r} takes no input {golden.input!r} (inputs: {', '.join(driver.scenario.inputs) or 'none'})",
                "name one of the driver's inputs, or declare it in the driver",
            )
        )
    if golden.output not in driver.scenario.outputs:
        problems.append(
            Problem(
                shown,
                lines.line(("output",)),
                "output",
                f"driver {golden.driver!r} has no output {golden.output!r} (outputs: {', '.join(driver.scenario.outputs)})",
                "name one of the driver's outputs, or declare and save it in the driver",
            )
        )
    return problems


_DRIVER_FIX = "name a file of scenarios/drivers/ without .yaml"


def _golden_check_problems(loaded: LoadedGoldenSet) -> list[Problem]:
    """Regular expressions that do not compile, schemas that are not JSON schemas: found now, not
    at the first prompt (where they could only make the check an error)."""
    problems: list[Problem] = []
    for case_index, case in enumerate(loaded.golden.cases):
        for check_index, check in enumerate(case.checks):
            base: YamlPath = ("cases", case_index, "checks", check_index)
            for key, pattern in (("regex", check.regex), ("not_regex", check.not_regex)):
                if pattern is None:
                    continue
                try:
                    re.compile(pattern)
                except re.error as exc:
                    path = (*base, key)
                    message = f"case {case.name!r}: {pattern!r} is not a valid regular expression: {exc}"
                    problems.append(Problem(str(loaded.path), loaded.lines.line(path), dotted(path), message, _REGEX_FIX))
            if check.json_schema is not None:
                validator = jsonschema.validators.validator_for(check.json_schema)
                try:
                    validator.check_schema(check.json_schema)
                except jsonschema.SchemaError as exc:
                    path = (*base, "json_schema")
                    message = f"case {case.name!r}: not a valid JSON schema: {exc.message}"
                    fix = "see https://json-schema.org/understanding-json-schema/ (e.g. {type: object, required: [name]})"
                    problems.append(Problem(str(loaded.path), loaded.lines.line(path), dotted(path), message, fix))
    return problems


_REGEX_FIX = "write a Python regular expression (quote it in single quotes so YAML keeps backslashes)"


def check_target_references(target: LoadedTarget, suite: ScenarioSuite | None) -> list[Problem]:
    """Problems with what the target asks of its scenario folder: ``sync.setup`` and
    ``consistency.write`` must name drivers that exist, take what their caller gives and save
    what the target's URLs use. Lines point into the target file."""
    settings = target.target
    if settings.sync is None and settings.consistency is None:
        return []
    try:
        _, lines = load_yaml(target.path)
    except ConfigError:
        lines = LineIndex({})
    shown = str(target.path)
    problems: list[Problem] = []

    def problem(path: YamlPath, message: str, fix: str) -> None:
        problems.append(Problem(shown, lines.line(path), dotted(path), message, fix))

    references: list[tuple[YamlPath, str, set[str], list[tuple[YamlPath, Any]]]] = []
    if settings.sync is not None:
        references.append((("sync", "setup"), settings.sync.setup, set(), [(("sync", "url"), settings.sync.url)]))
    if settings.consistency is not None:
        uses: list[tuple[YamlPath, Any]] = []
        for index, read in enumerate(settings.consistency.reads):
            uses += [(("consistency", "reads", index, "url"), read.url), (("consistency", "reads", index, "expect"), read.expect)]
            try:
                Expect.model_validate(read.expect)
            except ValidationError as exc:
                error = exc.errors()[0]
                where = ".".join(str(part) for part in error["loc"])
                problem(
                    ("consistency", "reads", index, "expect"),
                    f"not a scenario expectation: {where} {error['msg']}",
                    "use the keys of a scenario step's expect: status, json, headers, body_contains, max_ms",
                )
        references.append((("consistency", "write"), settings.consistency.write, {"marker"}, uses))
    for key_path, name, gives, uses in references:
        key = dotted(key_path)
        if suite is None:
            problem(
                key_path, f"{key} names driver {name!r} but the target names no scenarios folder", "add `scenarios: <folder>` to the target"
            )
            continue
        loaded = suite.drivers.get(name)
        if loaded is None:
            close = difflib.get_close_matches(name, sorted(suite.drivers), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"drivers: {', '.join(sorted(suite.drivers)) or 'none'}"
            problem(key_path, f"no driver {name!r} in {suite.folder / 'drivers'}", hint)
            continue
        driver = loaded.scenario
        required = sorted(n for n, default in driver.inputs.items() if default is None and n not in gives)
        if required:
            problem(key_path, f"driver {name!r} needs the input {', '.join(required)}, which {key} does not give", "give it a default")
        for given in sorted(gives - set(driver.inputs)):
            problem(key_path, f"driver {name!r} must declare the input {given!r} (it is given the unique marker to write)", _MARKER_FIX)
        available = set(BUILTIN_VARIABLES) | set(driver.outputs) | gives
        if key == "consistency.write" and settings.consistency is not None:
            _reads_look_for_the_write(settings.consistency.reads, set(driver.outputs) | gives, name, problem)
        for use_path, value in uses:
            for path, text in _strings(value, use_path):
                try:
                    names = variables_in(text)
                except TemplateSyntaxError as exc:
                    problem(path, str(exc), "write ${name} for a variable and $$ for a literal $")
                    continue
                for undefined in sorted(names - available):
                    problem(
                        path,
                        f"undefined variable ${{{undefined}}}: driver {name!r} does not output it",
                        f"use one of {', '.join(sorted(available))}, or add it to the driver's outputs",
                    )
    return problems


_MARKER_FIX = "add `inputs: {marker: null}` to the driver and write ${marker} in what it posts"


def _reads_look_for_the_write(reads: list[ConsistencyRead], written: set[str], driver: str, problem: Any) -> None:
    """Reports (through ``problem``) every read whose expectation names neither ``${marker}`` nor
    an output of the write driver: it holds on its first poll whether or not the write ever
    shows, so it would prove nothing."""
    for index, read in enumerate(reads):
        names: set[str] = set()
        for _, text in _strings(read.expect, ()):
            try:
                names |= variables_in(text)
            except TemplateSyntaxError:
                continue  # reported with the variables
        if not names & written:
            shown = ", ".join(f"${{{n}}}" for n in sorted(written))
            problem(
                ("consistency", "reads", index, "expect"),
                f"the read's expectation does not look for the write: it names none of {shown} (driver {driver!r})",
                'e.g. `expect: {status: 200, body_contains: "${marker}"}` (the default), or a JSON path equal to an output',
            )


class _Anything(dict[str, Any]):
    """Every variable is defined (to see whether a path with variables parses)."""

    def __missing__(self, key: str) -> Any:
        return "x"
