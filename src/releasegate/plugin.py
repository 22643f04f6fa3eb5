"""The releasegate pytest plugin: a pytest run over checks/ becomes one gate decision.

Hooks only. The run's state is a :class:`GateRun` kept in ``config.stash``; nothing happens
unless ``--stage`` (or the ``releasegate_stage`` ini key) is given, and nothing on xdist
workers. Outcomes are captured in a wrapper ``pytest_runtest_makereport``, evidence goes to
``user_properties`` (so JUnit carries it) and to Allure, the decision is taken once in a
``trylast`` ``pytest_sessionfinish`` and printed in ``pytest_terminal_summary``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar

import pytest

from releasegate import __version__, registry
from releasegate._exceptions import ConfigError, ProbeError
from releasegate.baseline import Baseline, BaselineTarget, load_baseline
from releasegate.config import Gates, LoadedGates, LoadedTarget, load_gates, load_target, with_deadline
from releasegate.decision import Judgement, decide
from releasegate.probes.http import HttpSettings, ssl_context
from releasegate.redact import Redactor
from releasegate.registry import CheckSpec
from releasegate.report import allure as allure_adapter
from releasegate.report import folder as report_folder
from releasegate.report import sarif
from releasegate.report.summary import render_summary
from releasegate.report.terminal import DECISION_MARKUP, decision_lines, progress_line
from releasegate.report.verdict import RunFacts, verdict_document
from releasegate.results import STAGES, CheckResult, Decision, ExitCode, Finding, Outcome, Severity, Stage
from releasegate.scenarios import ScenarioSuite, load_scenarios

T = TypeVar("T")
MAX_PROPERTY_CHARS = 8000
# Past the deadline a running check gets one probe timeout plus this before the run is ended.
WATCHDOG_GRACE_S = 5.0

# (flag, ini twin, kind, help). One table instead of a run of near-identical addoption calls.
_IniKind = Literal["string", "bool", "args"]
_OPTIONS: tuple[tuple[str, str, _IniKind, str], ...] = (
    ("--stage", "releasegate_stage", "string", "gate stage: pre-deploy | post-deploy | canary (turns the gate on)"),
    ("--target", "releasegate_target", "string", "target file (YAML) describing the deployment under test"),
    ("--gates", "releasegate_gates", "string", "policy file (default: the gate suite's gates.yaml)"),
    ("--report-dir", "releasegate_report_dir", "string", "report folder (default: reports/<stage>-<UTC timestamp>/)"),
    ("--dry-run", "releasegate_dry_run", "bool", "run and report everything, record the decision, exit 0"),
    (
        "--expect-release",
        "releasegate_expect_release",
        "string",
        "release id the deployment must report (overrides the target's expected_release)",
    ),
    ("--only", "releasegate_only", "args", "run only checks whose id matches these prefixes or globs"),
    (
        "--baseline",
        "releasegate_baseline",
        "string",
        "what relative thresholds compare against: an earlier verdict.json, or the target file of the stable deployment",
    ),
    ("--deadline", "releasegate_deadline", "string", "whole-run deadline in seconds (overrides gates.yaml deadline_s for this run)"),
)


class CheckFailed(AssertionError):
    """Raised by :meth:`CheckRecorder.conclude` for a failed finding: the check's verdict, not a crash.

    An AssertionError, so that pytest and Allure call the test "failed" (the check judged: no) rather than
    "broken", which Allure keeps for the checks that could not judge (CheckInconclusive, any other exception)."""


class CheckInconclusive(ProbeError):
    """Raised by :meth:`CheckRecorder.conclude` for an error finding: the check could not judge."""


@dataclass
class GateRun:
    """Mutable state of one gate run (one per pytest session, in the stash)."""

    stage: Stage
    target: LoadedTarget
    gates: LoadedGates
    report_dir: Path
    dry_run: bool
    only: list[str]
    expect_release: str | None
    redactor: Redactor
    started_at: datetime
    deadline: float
    today: date
    selected: list[str] = field(default_factory=list)
    gate_nodeids: set[str] = field(default_factory=set)
    results: list[CheckResult] = field(default_factory=list)
    usage_problems: list[str] = field(default_factory=list)
    collection_errors: list[str] = field(default_factory=list)
    judgement: Judgement | None = None
    exit_code: int | None = None
    reported_nodeids: set[str] = field(default_factory=set)
    deselected_elsewhere: list[str] = field(default_factory=list)
    current_nodeid: str | None = None
    watchdog: threading.Timer | None = None
    deselecting: bool = False
    baseline: Baseline | None = None
    scenarios: ScenarioSuite | None = None  # None: the target names no scenario folder
    allure_dir: Path | None = None  # allure-pytest's --alluredir (None: allure-pytest is not installed)


RUN_KEY = pytest.StashKey[GateRun]()
_SPEC_KEY = pytest.StashKey[CheckSpec]()
_SEVERITY_KEY = pytest.StashKey[Severity]()
_FINDING_KEY = pytest.StashKey[Finding]()
_PENDING_KEY = pytest.StashKey[tuple[Outcome, str]]()
_DURATION_KEY = pytest.StashKey[float]()


def gate_run(config: pytest.Config) -> GateRun | None:
    """The active gate run, or None when the gate is off (a plain pytest session)."""
    return config.stash.get(RUN_KEY, None)


# --------------------------------------------------------------------------- options


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("releasegate", "releasegate deployment gate")
    for flag, ini, kind, help_text in _OPTIONS:
        dest = ini
        if kind == "bool":
            group.addoption(flag, action="store_true", default=None, dest=dest, help=help_text)
        elif kind == "args":
            group.addoption(flag, action="extend", nargs="+", default=None, dest=dest, metavar="PATTERN", help=help_text)
        else:
            group.addoption(flag, action="store", default=None, dest=dest, help=help_text)
        parser.addini(ini, help=f"ini twin of {flag}: {help_text}", type=kind)


def _option(config: pytest.Config, ini: str) -> Any:
    value = config.getoption(ini)
    if value is None:
        value = config.getini(ini)
    return value if value not in ("", [], None) else None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "check(id): ties a gate test to its registered check id")
    if hasattr(config, "workerinput"):  # xdist worker: the controller owns the gate
        return
    stage = _option(config, "releasegate_stage")
    if stage is None:
        return
    if stage not in STAGES:
        _config_error(f"--stage {stage!r}: use one of {', '.join(STAGES)}")
    target_path = _option(config, "releasegate_target")
    if target_path is None:
        _config_error("--stage needs --target FILE (the deployment to gate)")
    gates_path = _option(config, "releasegate_gates")
    baseline_path = _option(config, "releasegate_baseline")
    try:
        target = load_target(Path(target_path))
        gates = load_gates(Path(gates_path) if gates_path else _default_gates())
        deadline = _option(config, "releasegate_deadline")
        if deadline is not None:
            gates = with_deadline(gates, _seconds(str(deadline)))
        suite = load_scenarios(target)
        baseline = load_baseline(Path(baseline_path)) if baseline_path else None
    except ConfigError as exc:
        _config_error(f"configuration error:\n{exc}")
    only = [str(p) for p in (_option(config, "releasegate_only") or [])]
    problem = only_problem(only, stage)
    if problem:
        _config_error(problem)
    started = datetime.now(UTC)
    explicit_dir = _option(config, "releasegate_report_dir")
    try:
        report_dir = report_folder.prepare(Path(explicit_dir) if explicit_dir else None, stage, started)
    except ConfigError as exc:
        _config_error(f"configuration error:\n{exc}")
    redactor = Redactor()
    for name, value in target.secrets():
        redactor.add(name, value)
    if isinstance(baseline, BaselineTarget):
        for name, value in baseline.loaded.secrets():
            redactor.add(name, value)
    run = GateRun(
        stage=stage,
        target=target,
        gates=gates,
        report_dir=report_dir.resolve(),
        dry_run=bool(_option(config, "releasegate_dry_run")),
        only=only,
        expect_release=_option(config, "releasegate_expect_release") or target.target.expected_release,
        redactor=redactor,
        started_at=started,
        deadline=time.monotonic() + gates.gates.deadline_s,
        today=started.date(),
        baseline=baseline,
        scenarios=suite,
    )
    config.stash[RUN_KEY] = run
    config.pluginmanager.register(_CollectionWatcher(run), "releasegate-collection-watcher")
    config.pluginmanager.register(_Progress(run), "releasegate-progress")
    run.watchdog = _start_watchdog(run)
    # The same artifacts whether the gate runs from the CLI or from plain pytest.
    if getattr(config.option, "xmlpath", None) is None:
        config.option.xmlpath = str(run.report_dir / "junit.xml")
    if hasattr(config.option, "allure_report_dir"):
        if not config.option.allure_report_dir:
            config.option.allure_report_dir = str(run.report_dir / "allure-results")
        run.allure_dir = Path(config.option.allure_report_dir)


def _seconds(text: str) -> float:
    """``--deadline S`` as a number of seconds (its bounds are with_deadline's)."""
    try:
        return float(text)
    except ValueError:
        _config_error(f"--deadline {text!r}: not a number of seconds; pass e.g. --deadline 300")


def only_problem(patterns: list[str], stage: str) -> str | None:
    """Why an ``--only`` selection cannot work for ``stage``, or None when it can."""
    for pattern in patterns:
        selected = registry.select(pattern)
        if not selected:
            close = difflib.get_close_matches(pattern, registry.ids(), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            return f"--only {pattern}: matches no registered check{hint}; run `releasegate checks`"
        if not any(spec.stage == stage for spec in selected):
            stages = ", ".join(sorted({spec.stage for spec in selected}))
            return f"--only {pattern}: selects only {stages} checks, none of stage {stage}"
    return None


def _config_error(message: str) -> NoReturn:
    # pytest.UsageError would exit 4, which is "internal error" in the gate's contract.
    pytest.exit(f"releasegate: {message}", returncode=int(ExitCode.CONFIG_ERROR))


def _default_gates() -> Path | None:
    from releasegate.suite import default_gates, find_suite

    try:
        path = default_gates(find_suite())
    except ConfigError:
        return None
    return path if path.is_file() else None


# --------------------------------------------------------------------------- deadline


def _start_watchdog(run: GateRun) -> threading.Timer:
    """The hard end of the run: shortly after the deadline, a partial verdict and exit 2.

    The autouse deadline fixture stops *new* checks once the deadline has passed; a check
    that is already running gets one probe timeout of grace. A check that hangs beyond that
    (a custom probe without a timeout) would otherwise hold the pipeline forever.
    """
    grace = run.gates.gates.probe.timeout_s + WATCHDOG_GRACE_S
    timer = threading.Timer(max(0.0, run.deadline - time.monotonic()) + grace, _deadline_expired, args=(run,))
    timer.daemon = True
    timer.start()
    return timer


def _deadline_expired(run: GateRun) -> None:
    running = f"; {run.current_nodeid} was still running" if run.current_nodeid else ""
    reason = f"the run's deadline of {run.gates.gates.deadline_s:g} s passed{running}: partial evidence, cannot decide"
    judgement = decide(run.results, run.gates.gates, run.stage, today=run.today, selected=run.selected)
    judgement = dataclasses.replace(judgement, decision=Decision.HOLD, reasons=(reason, *judgement.reasons))
    facts = RunFacts(
        stage=run.stage, target=run.target.target.name, started_at=run.started_at, finished_at=datetime.now(UTC), dry_run=run.dry_run
    )
    code = ExitCode.OK if run.dry_run else ExitCode.HOLD
    try:
        write_reports(run, facts, judgement, ExitCode.HOLD)
    finally:
        sys.stderr.write(f"releasegate: {run.redactor.text(reason)}; verdict hold written to {run.report_dir} (exit {int(code)})\n")
        sys.stderr.flush()
        os._exit(int(code))


class _Progress:
    """Registered per run: knows which check is running, for the watchdog's verdict."""

    def __init__(self, run: GateRun) -> None:
        self._run = run

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        self._run.current_nodeid = nodeid

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        self._run.current_nodeid = None

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        # Deselection by anyone but the gate itself (-k, -m, another plugin, PYTEST_ADDOPTS)
        # removes evidence the stage was asked for: remember it, the decision will hold.
        if self._run.deselecting:
            return
        for item in items:
            mark = item.get_closest_marker("check")
            check_id = mark.args[0] if mark is not None and mark.args and isinstance(mark.args[0], str) else None
            if check_id is not None and registry.is_registered(check_id) and registry.get(check_id).stage == self._run.stage:
                if not self._run.only or any(registry.matches(p, check_id) for p in self._run.only):
                    self._run.deselected_elsewhere.append(item.nodeid)


def pytest_unconfigure(config: pytest.Config) -> None:
    run = gate_run(config)
    if run is not None and run.watchdog is not None:
        run.watchdog.cancel()


# --------------------------------------------------------------------------- collection


class _CollectionWatcher:
    """Registered per run: collect reports carry no config, so the run is bound here."""

    def __init__(self, run: GateRun) -> None:
        self._run = run

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self._run.collection_errors.append(f"{report.nodeid or 'collection'}: {_last_line(report.longreprtext)}")


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    run = gate_run(config)
    if run is None:
        return
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        marks = list(item.iter_markers("check"))
        if len(marks) != 1 or len(marks[0].args) != 1 or not isinstance(marks[0].args[0], str):
            run.usage_problems.append(f"{item.nodeid}: every gate test needs exactly one @pytest.mark.check('<registered id>')")
            continue
        check_id = marks[0].args[0]
        if not registry.is_registered(check_id):
            close = difflib.get_close_matches(check_id, registry.ids(), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else "; register it in releasegate/registry.py"
            run.usage_problems.append(f"{item.nodeid}: unknown check id '{check_id}'{hint}")
            continue
        spec = registry.get(check_id)
        if spec.stage != run.stage or (run.only and not any(registry.matches(p, check_id) for p in run.only)):
            drop.append(item)
            continue
        severity = run.gates.gates.severity_of(check_id)
        item.stash[_SPEC_KEY] = spec
        item.stash[_SEVERITY_KEY] = severity
        allure_adapter.label_item(item, spec, severity)
        keep.append(item)
    if run.usage_problems:
        drop, keep = items[:], []
    # Registry order: e.g. rate-limit probes last, since they can lock the test identity.
    keep.sort(key=lambda item: registry.run_position(item.stash[_SPEC_KEY].id))  # stable: file order within one id
    run.selected = sorted({item.stash[_SPEC_KEY].id for item in keep})
    run.gate_nodeids = {item.nodeid for item in keep}
    if drop:
        run.deselecting = True
        try:
            config.hook.pytest_deselected(items=drop)
        finally:
            run.deselecting = False
    items[:] = keep


# --------------------------------------------------------------------------- fixtures for checks


class CheckRecorder:
    """Handed to every check as the ``check`` fixture: records its finding, redacted."""

    def __init__(self, item: pytest.Item, run: GateRun) -> None:
        self._item = item
        self._run = run

    @property
    def id(self) -> str:
        return self._item.stash[_SPEC_KEY].id

    def measure(self, probe: Callable[[], T]) -> T:
        """``probe()``'s result; when it could not measure (ProbeError), conclude ``error``, which raises."""
        try:
            return probe()
        except ProbeError as exc:
            self.conclude(Finding("error", str(exc), observed=type(exc).__name__, evidence={"url": exc.url}))
            raise  # not reached: an error finding raises

    def conclude(self, finding: Finding) -> None:
        """Record the finding; a failed one fails the check, an error one makes it inconclusive."""
        redact = self._run.redactor
        finding = Finding(
            outcome=finding.outcome,
            summary=redact.text(finding.summary),
            observed=redact.data(finding.observed),
            expected=redact.data(finding.expected),
            evidence=redact.data(_jsonable(finding.evidence)),
        )
        self._item.stash[_FINDING_KEY] = finding
        allure_adapter.attach_evidence(
            f"{self.id} evidence",
            {"outcome": finding.outcome, "observed": finding.observed, "expected": finding.expected, "evidence": finding.evidence},
        )
        if finding.outcome == "failed":
            raise CheckFailed(finding.summary)
        if finding.outcome == "error":
            raise CheckInconclusive(finding.summary)


def _require_run(request: pytest.FixtureRequest) -> GateRun:
    run = gate_run(request.config)
    if run is None:
        raise pytest.UsageError("gate fixtures need the gate on: pass --stage and --target")
    return run


@pytest.fixture
def check(request: pytest.FixtureRequest) -> CheckRecorder:
    """Records the finding of the running check (see :meth:`CheckRecorder.conclude`)."""
    return CheckRecorder(request.node, _require_run(request))


@pytest.fixture
def target(request: pytest.FixtureRequest) -> LoadedTarget:
    """The parsed target file of this run."""
    return _require_run(request).target


@pytest.fixture
def policy(request: pytest.FixtureRequest) -> Gates:
    """The parsed gates.yaml of this run."""
    return _require_run(request).gates.gates


@pytest.fixture
def expected_release(request: pytest.FixtureRequest) -> str | None:
    """``--expect-release`` or the target's ``expected_release``; None when neither is given."""
    return _require_run(request).expect_release


@pytest.fixture
def http_settings(request: pytest.FixtureRequest) -> HttpSettings:
    """Timeouts, body cap, trust store and credentials for HTTP probes of this target."""
    run = _require_run(request)
    probe = run.gates.gates.probe
    token = run.target.token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    verify = ssl_context(run.target.ca_bundle) if run.target.target.base_url.startswith("https:") else True
    return HttpSettings(timeout_s=probe.timeout_s, max_body_bytes=probe.max_body_bytes, verify=verify, headers=headers)


@pytest.fixture
def baseline(request: pytest.FixtureRequest) -> Baseline | None:
    """``--baseline``: a saved verdict or a second target to compare against; None without one."""
    return _require_run(request).baseline


@pytest.fixture
def scenario_suite(request: pytest.FixtureRequest) -> ScenarioSuite:
    """The target's scenario folder, parsed; skips the check when the target names none."""
    suite = _require_run(request).scenarios
    if suite is None:
        pytest.skip("the target names no scenarios folder (key: scenarios)")
    return suite


@pytest.fixture
def redactor(request: pytest.FixtureRequest) -> Redactor:
    """The run's redactor, for probes that must redact before they cut (e.g. echoed headers)."""
    return _require_run(request).redactor


@pytest.fixture(autouse=True)
def _releasegate_deadline(request: pytest.FixtureRequest) -> None:
    run = gate_run(request.config)
    if run is not None and time.monotonic() > run.deadline:
        raise ProbeError(f"the run's deadline of {run.gates.gates.deadline_s:g} s passed before this check started")


# --------------------------------------------------------------------------- outcomes


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    run = gate_run(item.config)
    if run is None or _SPEC_KEY not in item.stash:
        return report
    item.stash[_DURATION_KEY] = item.stash.get(_DURATION_KEY, 0.0) + call.duration
    finding = item.stash.get(_FINDING_KEY, None)
    pending = item.stash.get(_PENDING_KEY, None)
    if report.skipped:
        item.stash[_PENDING_KEY] = ("skipped", _skip_reason(report))
    elif report.failed and call.excinfo is not None:
        exc = call.excinfo.value
        if call.when == "call" and isinstance(exc, (CheckFailed, AssertionError)):
            outcome: Outcome = "failed"
        else:
            outcome = "error"
        if isinstance(exc, (CheckFailed, ProbeError)):
            summary = str(exc)
            report.longrepr = f"{item.stash[_SPEC_KEY].id}: {run.redactor.text(summary)}"
        elif isinstance(exc, AssertionError):
            # The message comes first; pytest's rewritten "assert ..." explanation follows it.
            summary = _first_line(str(exc)) or "assertion failed"
        else:
            summary = f"{'check' if call.when == 'call' else call.when} raised {type(exc).__name__}: {_last_line(str(exc))}"
        if pending is None or pending[0] not in ("failed", "error"):
            item.stash[_PENDING_KEY] = (outcome, summary)
    elif call.when == "call":
        # A check proves its pass with a finding; one that returns without concluding (a branch
        # that forgot check.conclude) could not have judged anything.
        item.stash[_PENDING_KEY] = (
            (finding.outcome, finding.summary) if finding else ("error", "the check returned without a finding (no check.conclude call)")
        )
    if call.when == "teardown":
        result = _result(item, run)
        run.results.append(result)
        run.reported_nodeids.add(item.nodeid)
        report.user_properties.extend(_properties(result))
        _progress(item.config, result)
    _redact_report(report, run.redactor)
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_assertrepr_compare(config: pytest.Config, op: str, left: object, right: object) -> list[str] | None:
    """A comparison that involves the token is shown whole, then redacted.

    pytest shortens long reprs in the middle ('Bearer tok-7...e1N'), which would cut the token
    in pieces that redaction no longer recognises.
    """
    run = gate_run(config)
    if run is None or not run.redactor:
        return None
    text = f"{_full_repr(left)} {op} {_full_repr(right)}"
    redacted = run.redactor.text(text)
    if redacted == text:
        return None
    return [redacted if len(redacted) <= MAX_PROPERTY_CHARS else redacted[:MAX_PROPERTY_CHARS] + "…"]


def _full_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not hide the assertion
        return object.__repr__(value)


def _redact_report(report: pytest.TestReport, redactor: Redactor) -> None:
    """Tracebacks, assertion diffs, ``-l`` locals and captured output can hold the token.

    Under plain pytest nothing redacts the terminal (the CLI wraps its streams), and JUnit is
    written from these reports, so they are cleaned here; a longrepr that holds a secret
    becomes plain (redacted) text.
    """
    if not redactor:
        return
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # a skip: (path, line, reason)
        report.longrepr = (longrepr[0], longrepr[1], redactor.text(str(longrepr[2])))
    elif longrepr is not None:
        text = report.longreprtext
        if redactor.text(text) != text:
            # The first line is what pytest's short summary shows: make it the crash message.
            crash = getattr(longrepr, "reprcrash", None)
            head = f"{crash.message.splitlines()[0]}\n" if crash is not None and crash.message else ""
            report.longrepr = redactor.text(head + text)
    report.sections = [(name, redactor.text(content)) for name, content in report.sections]


def _result(item: pytest.Item, run: GateRun) -> CheckResult:
    spec = item.stash[_SPEC_KEY]
    outcome, summary = item.stash.get(_PENDING_KEY, ("error", "the check produced no outcome"))
    finding = item.stash.get(_FINDING_KEY, None)
    evidence = dict(finding.evidence) if finding else {}
    if "[" in item.name:  # parametrized: say which instance this row is
        evidence["subject"] = item.name[item.name.index("[") + 1 : -1]
    return CheckResult(
        id=spec.id,
        outcome=outcome,
        severity=item.stash[_SEVERITY_KEY],
        summary=run.redactor.text(summary),
        observed=finding.observed if finding else None,
        expected=finding.expected if finding else None,
        evidence=evidence,
        duration_s=item.stash.get(_DURATION_KEY, 0.0),
    )


def _properties(result: CheckResult) -> list[tuple[str, object]]:
    def bounded(value: Any) -> str:
        text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
        return text if len(text) <= MAX_PROPERTY_CHARS else text[:MAX_PROPERTY_CHARS] + "…"

    return [
        ("releasegate.check_id", result.id),
        ("releasegate.outcome", result.outcome),
        ("releasegate.severity", result.severity),
        ("releasegate.summary", bounded(result.summary)),
        ("releasegate.observed", bounded(result.observed)),
        ("releasegate.expected", bounded(result.expected)),
        ("releasegate.evidence", bounded(result.evidence)),
    ]


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> tuple[str, str, str] | None:
    """Our own progress line replaces pytest's letters for gate checks."""
    run = gate_run(config)
    if run is None or report.nodeid not in run.gate_nodeids:
        return None
    if report.when in ("setup", "teardown"):
        category = "error" if report.failed else ("skipped" if report.skipped else "")
    else:
        category = report.outcome
    return category, "", ""


def _progress(config: pytest.Config, result: CheckResult) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    text, markup = progress_line(result)
    reporter.ensure_newline()
    reporter.write_line(text, **markup)


# --------------------------------------------------------------------------- decision and reports


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    run = gate_run(session.config)
    if run is None:
        return
    if run.usage_problems:
        run.exit_code = ExitCode.CONFIG_ERROR
        session.exitstatus = run.exit_code
        return
    judgement = decide(run.results, run.gates.gates, run.stage, today=run.today, selected=run.selected)
    exit_code: int = judgement.decision.exit_code
    if run.collection_errors:
        reasons = tuple(f"check module failed to load: {e}" for e in run.collection_errors)
        judgement = dataclasses.replace(judgement, decision=Decision.HOLD, reasons=reasons + judgement.reasons)
        exit_code = ExitCode.INTERNAL_ERROR
    elif exitstatus == pytest.ExitCode.INTERRUPTED:
        reason = f"run interrupted after {len(run.results)} checks: partial evidence, cannot decide"
        judgement = dataclasses.replace(judgement, decision=Decision.HOLD, reasons=(reason, *judgement.reasons))
        exit_code = ExitCode.HOLD
    elif missing := sorted(run.gate_nodeids - run.reported_nodeids) + run.deselected_elsewhere:
        # -x, pytest.exit() in a check, -k from PYTEST_ADDOPTS...: the evidence is incomplete.
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        reason = f"{len(missing)} selected checks produced no result ({shown}): partial evidence, cannot decide"
        if judgement.decision is not Decision.ROLLBACK:
            judgement = dataclasses.replace(judgement, decision=Decision.HOLD, reasons=(reason, *judgement.reasons))
            exit_code = ExitCode.HOLD
    run.judgement = judgement
    facts = RunFacts(
        stage=run.stage, target=run.target.target.name, started_at=run.started_at, finished_at=datetime.now(UTC), dry_run=run.dry_run
    )
    write_reports(run, facts, judgement, exit_code)
    # A dry run never fails on the decision; a broken check module (exit 4) is not a decision.
    run.exit_code = ExitCode.OK if run.dry_run and exit_code in (ExitCode.ROLLBACK, ExitCode.HOLD) else exit_code
    session.exitstatus = run.exit_code


def write_reports(run: GateRun, facts: RunFacts, judgement: Judgement, exit_code: int) -> None:
    run.report_dir.mkdir(parents=True, exist_ok=True)
    document = verdict_document(facts, judgement)
    document["exit_code"] = exit_code
    document = run.redactor.data(document)
    (run.report_dir / "verdict.json").write_text(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    allure_adapter.record_decision(run.allure_dir, document)
    summary = run.redactor.text(render_summary(facts, judgement))
    (run.report_dir / "summary.md").write_text(summary, encoding="utf-8")
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a", encoding="utf-8") as handle:
            handle.write(summary + "\n")
    if any(sarif.is_security(row.id) for row in judgement.results):
        document = sarif.sarif_document(judgement, target_name=facts.target, target_uri=_uri(run.target.path), version=__version__)
        (run.report_dir / "security.sarif").write_text(json.dumps(run.redactor.data(document), indent=2) + "\n", encoding="utf-8")
    run.redactor.scrub_tree(run.report_dir)


def _uri(path: Path) -> str:
    """The target file as code scanning wants it: relative to the working directory when inside it."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.resolve().as_uri()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    run = gate_run(config)
    if run is None:
        return
    if run.usage_problems:
        terminalreporter.write_sep("=", "releasegate: the gate suite is misconfigured (exit 3)", red=True, bold=True)
        for problem in run.usage_problems:
            terminalreporter.write_line(f"  {run.redactor.text(problem)}")
        return
    if run.judgement is None:
        return
    terminalreporter.write_sep("=", "releasegate verdict")
    # "would exit N, exiting 0" only when the dry run really exits 0.
    dry_run = run.dry_run and run.exit_code == ExitCode.OK
    lines = decision_lines(run.judgement, stage=run.stage, target=run.target.target.name, dry_run=dry_run)
    terminalreporter.write_line(run.redactor.text(lines[0]), **DECISION_MARKUP[run.judgement.decision.value])
    for line in lines[1:]:
        terminalreporter.write_line(run.redactor.text(line))
    terminalreporter.write_line(f"reports: {run.report_dir}")


# --------------------------------------------------------------------------- helpers


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return "skipped"


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0][:300] if lines else ""


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
