"""``releasegate``: the command line. Exit codes are the contract (design.md):
0 pass/promote · 1 rollback · 2 hold · 3 configuration/usage error · 4 internal error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import pytest

from releasegate import registry
from releasegate._exceptions import ConfigError, Problem
from releasegate.baseline import BaselineTarget, load_baseline
from releasegate.config import load_gates, load_target, with_deadline
from releasegate.plugin import only_problem
from releasegate.redact import RedactingStream, Redactor
from releasegate.reference import faults as fault_catalog
from releasegate.report import folder as report_folder
from releasegate.results import STAGES, ExitCode
from releasegate.scenarios import load_scenarios
from releasegate.suite import default_gates, find_suite, stage_dir

DEADLINE_HELP = "whole-run deadline in seconds: overrides gates.yaml deadline_s for this run (past it: partial verdict, hold)"


class UsageError(Exception):
    """Bad command line: exit 3 like any configuration error."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse would exit 2, which means "hold" here
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="releasegate", description="Deployment validation and gatekeeping: pass / promote / hold / rollback.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run a gate stage against a target")
    run.add_argument("--stage", required=True, choices=STAGES)
    run.add_argument("--target", required=True, type=Path, help="target file (YAML)")
    run.add_argument("--gates", type=Path, help="policy file (default: the suite's gates.yaml)")
    run.add_argument("--only", action="extend", nargs="+", metavar="PREFIX", help="check-id prefixes or globs; repeatable")
    run.add_argument("--report-dir", type=Path, help="default: reports/<stage>-<UTC timestamp>/")
    run.add_argument("--dry-run", action="store_true", help="run and report, record the decision, exit 0")
    run.add_argument("--expect-release", help="release id the deployment must report")
    run.add_argument(
        "--baseline",
        type=Path,
        metavar="FILE",
        help="compare against: an earlier verdict.json, or the target file of the stable deployment",
    )
    run.add_argument(
        "--deadline",
        type=float,
        metavar="S",
        help=DEADLINE_HELP,
    )
    run.add_argument("--suite", type=Path, help="folder holding checks/ and gates.yaml (default: found automatically)")
    run.add_argument("-v", "--verbose", action="store_true", help="pytest's verbose output as well")

    validate = sub.add_parser("validate", help="lint a target file and gates.yaml; exit 0 or 3")
    validate.add_argument("--target", type=Path)
    validate.add_argument("--gates", type=Path, help="default: the suite's gates.yaml")
    validate.add_argument("--suite", type=Path)

    checks = sub.add_parser("checks", help="list every check id")
    checks.add_argument("--json", action="store_true", help="machine-readable list")

    demo = sub.add_parser(
        "demo",
        help="start the reference deployment on loopback and gate it",
        description="Start the reference deployment (healthy unless faults are named), gate it, exit with the decision's code.",
        epilog="faults: " + ", ".join(sorted(fault_catalog.NAMES)),
    )
    demo.add_argument("--fault", action="extend", nargs="+", default=[], metavar="NAME", help="faults to switch on (see below)")
    demo.add_argument("--stage", choices=STAGES, help="gate only this stage (default: every stage that has checks)")
    demo.add_argument("--canary", action="store_true", help="start a baseline and a canary and run the canary stage")
    demo.add_argument("--serve", action="store_true", help="keep the deployment running and print its target file's path")
    demo.add_argument("--gates", type=Path, help="policy file (default: gates.yaml with a short convergence window)")
    demo.add_argument("--report-dir", type=Path, help="default: reports/demo-<UTC timestamp>/<stage>/")
    demo.add_argument(
        "--deadline",
        type=float,
        metavar="S",
        help=DEADLINE_HELP,
    )

    load = sub.add_parser(
        "load",
        help="run one load profile against a target (the load stage for that profile), with live progress",
        description="Run loadtests/profiles/NAME.yaml against the target and judge it like `run --stage load`; "
        "with --master-host, be worker processes of a master on another machine instead.",
    )
    load.add_argument("--profile", required=True, metavar="NAME", help="profile name (loadtests/profiles/NAME.yaml)")
    load.add_argument("--target", required=True, type=Path, help="target file (YAML); it needs a load section")
    load.add_argument("--gates", type=Path, help="policy file (default: the suite's gates.yaml)")
    load.add_argument("--workers", type=int, metavar="N", help="N local worker processes under a local master (default: the profile's)")
    load.add_argument("--expect-workers", type=int, metavar="N", help="workers the master waits for (default: --workers)")
    load.add_argument("--expect-workers-max-wait", type=float, default=60.0, metavar="S", help="seconds to wait for them (default 60)")
    load.add_argument("--master-bind-host", default="127.0.0.1", metavar="H", help="interface the master listens on (remote workers)")
    load.add_argument("--master-port", type=int, metavar="P", help="master port (default: any free one; 5557 with remote workers)")
    load.add_argument("--master-host", metavar="H", help="be worker processes (--workers N, default 1) of the master at H")
    load.add_argument("--report-dir", type=Path, help="default: reports/load-<UTC timestamp>/")
    load.add_argument(
        "--deadline",
        type=float,
        metavar="S",
        help=DEADLINE_HELP,
    )
    load.add_argument("--suite", type=Path, help="folder holding checks/, loadtests/ and gates.yaml (default: found automatically)")

    serve = sub.add_parser(
        "serve",
        help="serve the gate over HTTP: Flagger webhooks and Argo Rollouts' Web metric provider",
        description="Run the gate on request, one run at a time: POST /flagger/<stage> (200 only for pass/promote; "
        "rollback 412, hold 409), POST /flagger/rollback (Flagger's rollback hook), GET|POST /argo/<stage> (200 with "
        "a JSON decision), GET /healthz. See docs/canary.md.",
    )
    serve.add_argument("--target", required=True, type=Path, help="target file (YAML) every run gates")
    serve.add_argument("--gates", type=Path, help="policy file (default: the suite's gates.yaml)")
    serve.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT", help="address to bind (default 127.0.0.1:8080)")
    serve.add_argument(
        "--report-dir", type=Path, metavar="DIR", help="one folder per run inside it (default: reports/serve-<UTC timestamp>/)"
    )
    serve.add_argument(
        "--token-env", metavar="NAME", help="require `Authorization: Bearer <value of $NAME>` (Argo can send it; Flagger cannot)"
    )
    serve.add_argument("--max-run-s", type=float, metavar="S", help="a run is stopped (hold) after S seconds (default: deadline_s + 60)")
    serve.add_argument(
        "--lock-wait-s", type=float, default=10.0, metavar="S", help="wait this long for a running gate, then 503 (default 10)"
    )
    serve.add_argument("--keep-runs", type=int, default=100, metavar="N", help="keep the report folders of the last N runs (default 100)")
    serve.add_argument("--suite", type=Path, help="folder holding checks/ and gates.yaml (default: found automatically)")

    canary = sub.add_parser("canary", help="canary analysis tools (replay)")
    canary_sub = canary.add_subparsers(dest="canary_command", required=True, parser_class=_Parser)
    replay = canary_sub.add_parser(
        "replay",
        help="judge a canary run's saved samples again, under its own policy or another one",
        description="Load SAMPLES.json (written by every canary run into its report dir), judge it under the canary "
        "policy of --gates (default: the policy saved in the file), print the explanation, exit 0 promote, "
        "1 rollback, 2 hold, 3 bad file or policy.",
    )
    replay.add_argument("samples", type=Path, metavar="SAMPLES.json")
    replay.add_argument("--gates", type=Path, help="judge under this file's canary policy (default: the one saved in the samples)")
    replay.add_argument("--suite", type=Path, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    report_dir: list[Path] = []  # filled by `run` so an internal error can leave its traceback there
    try:
        args = build_parser().parse_args(argv)
        command: Callable[[argparse.Namespace, list[Path]], int] = _COMMANDS[args.command]
        return command(args, report_dir)
    except UsageError as exc:
        print(f"error: {exc} (see releasegate --help)", file=sys.stderr)
        return ExitCode.CONFIG_ERROR
    except ConfigError as exc:
        _print_problems(exc.problems)
        return ExitCode.CONFIG_ERROR
    except KeyboardInterrupt:
        print("interrupted before a decision: hold", file=sys.stderr)
        return ExitCode.HOLD
    except Exception as exc:  # noqa: BLE001 - the last line of defence: exit 4, never a raw traceback
        return _internal_error(exc, report_dir[0] if report_dir else None)


def _print_problems(problems: list[Problem]) -> None:
    print(f"configuration error ({len(problems)} problem{'s' if len(problems) != 1 else ''}):", file=sys.stderr)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)


def _internal_error(exc: BaseException, report_dir: Path | None) -> int:
    text = "".join(traceback.format_exception(exc))
    try:
        if report_dir is not None:
            report_dir.mkdir(parents=True, exist_ok=True)
            path = report_dir / "internal-error.txt"
            path.write_text(text, encoding="utf-8")
        else:
            with tempfile.NamedTemporaryFile("w", prefix="releasegate-internal-error-", suffix=".txt", delete=False) as handle:
                handle.write(text)
                path = Path(handle.name)
        where = f"; traceback saved to {path}"
    except OSError:
        where = ""
    print(f"internal error: {type(exc).__name__}: {exc}{where} (exit 4; please report it)", file=sys.stderr)
    return ExitCode.INTERNAL_ERROR


# --------------------------------------------------------------------------- run


class _RunObserver:
    """Reads the gate's outcome out of the pytest session before it is torn down."""

    def __init__(self) -> None:
        self.exit_code: int | None = None
        self.internal_errors: list[str] = []

    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(self, config: pytest.Config) -> None:
        from releasegate.plugin import gate_run

        run = gate_run(config)
        if run is not None:
            self.exit_code = run.exit_code

    def pytest_internalerror(self, excrepr: Any, excinfo: Any) -> None:
        self.internal_errors.append(str(excrepr))


def cmd_run(args: argparse.Namespace, report_dirs: list[Path]) -> int:
    suite = find_suite(args.suite)
    loaded_target = load_target(args.target)
    gates_path = args.gates or default_gates(suite)
    gates = load_gates(gates_path)
    if args.deadline is not None:
        with_deadline(gates, args.deadline)  # refused here (exit 3) before any report folder exists
    load_scenarios(loaded_target)
    baseline = load_baseline(args.baseline) if args.baseline else None
    problem = only_problem(args.only or [], args.stage)
    if problem:
        raise UsageError(problem)
    started = datetime.now(UTC)
    report_dir = report_folder.prepare(args.report_dir, args.stage, started)
    report_dirs.append(report_dir)
    redactor = Redactor()
    for name, value in loaded_target.secrets():
        redactor.add(name, value)
    if isinstance(baseline, BaselineTarget):
        for name, value in baseline.loaded.secrets():
            redactor.add(name, value)

    checks_dir = stage_dir(suite, args.stage)
    pytest_args = [
        "-c",
        str(suite / "checks" / "pytest.ini"),
        "--rootdir",
        str(suite),
        "-p",
        "releasegate.plugin",
        "-o",
        "console_output_style=classic",
        "--tb=short",
        "-rN",  # the verdict below replaces the short test summary
        # The CLI imported releasegate before pytest could mark the plugin for assertion
        # rewriting; the plugin has no asserts that need it.
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
        "-v" if args.verbose else "-q",
        "--stage",
        args.stage,
        "--target",
        str(args.target.resolve()),
        "--gates",
        str(Path(gates_path).resolve()),
        "--report-dir",
        str(report_dir),
    ]
    # One `--only=P` per pattern: `--only P ...` takes every argument after it, the suite path included.
    pytest_args += [f"--only={pattern}" for pattern in args.only or []]
    if args.dry_run:
        pytest_args.append("--dry-run")
    if args.expect_release:
        pytest_args += ["--expect-release", args.expect_release]
    if args.baseline:
        pytest_args += ["--baseline", str(args.baseline.resolve())]
    if args.deadline is not None:
        pytest_args += ["--deadline", repr(float(args.deadline))]
    # Another stage's modules are never imported, even when this stage has no folder of its own.
    pytest_args += [f"--ignore={stage_dir(suite, other)}" for other in STAGES if other != args.stage]
    pytest_args.append(str(checks_dir if checks_dir.is_dir() else suite / "checks"))

    observer = _RunObserver()
    out, err = RedactingStream(sys.stdout, redactor), RedactingStream(sys.stderr, redactor)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), _gate_environment(), _sigterm_as_interrupt():
        try:
            pytest_code = pytest.main(pytest_args, plugins=[observer])
        finally:
            out.flush()
            err.flush()
    redactor.scrub_tree(report_dir)
    if observer.exit_code is not None:
        return observer.exit_code
    if observer.internal_errors:
        report_dir.mkdir(parents=True, exist_ok=True)
        (report_dir / "internal-error.txt").write_text(redactor.text("\n".join(observer.internal_errors)), encoding="utf-8")
        print(f"internal error inside the gate run; traceback saved to {report_dir / 'internal-error.txt'} (exit 4)", file=sys.stderr)
        return ExitCode.INTERNAL_ERROR
    # The plugin leaves with exit 3 on a configuration problem (pytest.exit); pytest itself with 4.
    if pytest_code in (pytest.ExitCode.USAGE_ERROR, ExitCode.CONFIG_ERROR):
        return ExitCode.CONFIG_ERROR
    print(f"the gate did not reach a decision (pytest exit {int(pytest_code)}): exit 4", file=sys.stderr)
    return ExitCode.INTERNAL_ERROR


@contextlib.contextmanager
def _gate_environment() -> Iterator[None]:
    """pytest settings meant for other CI steps must not change what the gate runs.

    PYTEST_ADDOPTS="-k smoke" or "-x" would silently drop checks; PYTEST_PLUGINS could load
    anything. They are set aside for the gate's own pytest session.
    """
    saved = {name: os.environ.pop(name) for name in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS") if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (Kubernetes, Argo, CI cancelling a job) ends the run like Ctrl-C: partial verdict, hold, exit 2."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --------------------------------------------------------------------------- validate, checks, not-yet


def cmd_validate(args: argparse.Namespace, _: list[Path]) -> int:
    problems: list[Problem] = []
    said: list[str] = []
    if args.target is not None:
        try:
            loaded = load_target(args.target)
            said.append(f"target {args.target}: ok ({loaded.target.name})")
            suite = load_scenarios(loaded)
            if suite is not None:
                said.append(f"scenarios {loaded.scenario_dir}: ok ({suite.describe()})")
        except ConfigError as exc:
            problems += exc.problems
    gates_path = args.gates or default_gates(find_suite(args.suite))
    try:
        # The UTC date, as the gate run uses: near midnight the two must agree on expiry.
        gates = load_gates(gates_path, today=datetime.now(UTC).date(), strict_waivers=True).gates
        said.append(f"gates {gates_path}: ok ({len(gates.waivers)} waivers, on_error={gates.on_error})")
    except ConfigError as exc:
        problems += exc.problems
    if problems:
        _print_problems(problems)
        return ExitCode.CONFIG_ERROR
    for line in said:
        print(line)
    return ExitCode.OK


def cmd_checks(args: argparse.Namespace, _: list[Path]) -> int:
    rows: list[dict[str, object]] = [
        {"id": s.id, "stage": s.stage, "family": s.family, "severity": s.severity, "fault": s.fault, "description": s.description}
        for s in registry.CHECKS
    ]
    # Families of user-named ids (a user's scenario files): listed once, as their pattern.
    rows += [
        {
            "id": t.id + ".<name>",
            "stage": t.stage,
            "family": t.family,
            "severity": t.severity,
            "fault": None,
            "description": t.description,
            "template": True,
        }
        for t in registry.TEMPLATES
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return ExitCode.OK
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"releasegate checks ({len(rows)})")
    for column in ("id", "stage", "family", "severity", "fault", "description"):
        table.add_column(column, no_wrap=column != "description", overflow="fold")
    for row in rows:
        table.add_row(*(str(row[c] or "—") for c in ("id", "stage", "family", "severity", "fault", "description")))
    # Piped output has no width of its own: never cut a check id to rich's 80-column default.
    Console(width=None if sys.stdout.isatty() else 200).print(table)
    return ExitCode.OK


def cmd_demo(args: argparse.Namespace, report_dirs: list[Path]) -> int:
    from releasegate.reference.demo import running, unknown_faults

    unknown = unknown_faults(args.fault)
    if unknown:
        raise UsageError(f"unknown fault(s) {', '.join(unknown)}; known: {', '.join(sorted(fault_catalog.NAMES))}")
    if args.canary or args.stage == "canary":  # the canary stage needs the pair either way
        return _demo_canary(args, report_dirs)
    stages = (
        [args.stage] if args.stage else [stage for stage in STAGES if stage != "canary" and any(s.stage == stage for s in registry.CHECKS)]
    )
    started = datetime.now(UTC)
    base = (args.report_dir or Path("reports") / f"demo-{started:%Y%m%dT%H%M%SZ}").resolve()
    report_dirs.append(base)
    state = f"with fault{'s' if len(args.fault) > 1 else ''} {', '.join(args.fault)}" if args.fault else "healthy"
    print(f"releasegate demo: starting the reference deployment ({state}) on loopback ...", flush=True)
    codes: list[int] = []
    with running(args.fault) as deployment:
        if args.serve:
            return _serve(deployment.target_path, deployment.env_path)
        for stage in stages:
            print(f"releasegate demo: gating stage {stage}", flush=True)
            gates = args.gates or deployment.gates_path
            codes.append(
                main(
                    [
                        "run",
                        "--stage",
                        stage,
                        "--target",
                        str(deployment.target_path),
                        "--gates",
                        str(gates),
                        "--report-dir",
                        str(base / stage),
                        *_deadline_args(args),
                    ]
                )
            )
    return worst_exit_code(codes)


def _demo_canary(args: argparse.Namespace, report_dirs: list[Path]) -> int:
    """A healthy baseline and a canary (with the faults), judged by the canary stage."""
    if args.stage not in (None, "canary"):
        raise UsageError(f"--canary runs the canary stage; drop --stage {args.stage} (or use --stage canary)")
    from releasegate.reference.demo import running_canary

    started = datetime.now(UTC)
    base = (args.report_dir or Path("reports") / f"demo-{started:%Y%m%dT%H%M%SZ}").resolve()
    report_dirs.append(base)
    state = f"with fault{'s' if len(args.fault) > 1 else ''} {', '.join(args.fault)}" if args.fault else "healthy"
    print(f"releasegate demo: starting a baseline (healthy) and a canary ({state}) on loopback ...", flush=True)
    with running_canary(args.fault) as deployment:
        if args.serve:
            return _serve(deployment.target_path, deployment.env_path)
        print("releasegate demo: gating stage canary", flush=True)
        gates = args.gates or deployment.gates_path
        return main(
            [
                "run",
                "--stage",
                "canary",
                "--target",
                str(deployment.target_path),
                "--gates",
                str(gates),
                "--report-dir",
                str(base / "canary"),
                *_deadline_args(args),
            ]
        )


def _deadline_args(args: argparse.Namespace) -> list[str]:
    return ["--deadline", repr(float(args.deadline))] if args.deadline is not None else []


def worst_exit_code(codes: Sequence[int]) -> int:
    """One exit code for several stages: internal error, then configuration, rollback, hold, pass."""
    for code in (ExitCode.INTERNAL_ERROR, ExitCode.CONFIG_ERROR, ExitCode.ROLLBACK, ExitCode.HOLD):
        if code in codes:
            return code
    return ExitCode.OK if codes else ExitCode.HOLD


def _serve(target_path: Path, env_path: Path) -> int:
    """Keep the deployment up until Ctrl-C or SIGTERM; the target path is printed on a line of its own."""
    import signal
    import threading

    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(str(target_path), flush=True)
    print(f"# load the target's secrets (never printed) with: . {env_path}", flush=True)
    print("# serving until Ctrl-C or SIGTERM", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    return ExitCode.OK


# --------------------------------------------------------------------------- load

# The master's port when workers on other machines must find it (Locust's default).
DEFAULT_MASTER_PORT = 5557


def cmd_load(args: argparse.Namespace, report_dirs: list[Path]) -> int:
    """One profile through the gate's load stage (exit codes as `run`), or the worker role (--master-host)."""
    from releasegate.load.profiles import load_profile
    from releasegate.load.runner import OPTIONS_ENV, LoadOptions, run_workers
    from releasegate.load.safety import refuse_unless_allowed

    suite = find_suite(args.suite)
    loaded = load_target(args.target)
    gates_path = args.gates or default_gates(suite)
    policy = load_gates(gates_path).gates.load
    load_settings = loaded.target.load
    if load_settings is None:
        raise ConfigError(
            [
                Problem(
                    str(args.target),
                    None,
                    "load",
                    "the target has no load section, so no host is cleared for load",
                    "add `load: {allowed_hosts: [...]}` (loopback needs none: `load: {}`)",
                )
            ]
        )
    # Before anything else: load against a host nobody allowed is refused without a request.
    refuse_unless_allowed(loaded.target.base_url, load_settings.allowed_hosts, target_file=str(args.target))
    profiles_dir = (
        (loaded.path.parent / load_settings.profiles_dir).resolve() if load_settings.profiles_dir else suite / "loadtests" / "profiles"
    )
    profile = load_profile(args.profile, profiles_dir)
    remote_workers = bool(args.expect_workers and args.expect_workers > (args.workers or 0)) or args.master_host
    options = LoadOptions(
        workers=args.workers,
        expect_workers=args.expect_workers,
        expect_workers_max_wait_s=args.expect_workers_max_wait,
        master_bind_host=args.master_bind_host,
        master_port=args.master_port if args.master_port is not None else (DEFAULT_MASTER_PORT if remote_workers else 0),
    )
    problem = options.problem()
    if problem:
        raise UsageError(f"load: {problem}")
    if args.master_host:
        out_dir = (args.report_dir or Path("reports") / f"load-worker-{datetime.now(UTC):%Y%m%dT%H%M%SZ}").resolve()
        return run_workers(
            loaded,
            profile,
            master_host=args.master_host,
            master_port=options.master_port,
            processes=max(1, args.workers or 1),
            locustfile=suite / "loadtests" / "locustfile.py",
            profiles_dir=profiles_dir,
            out_dir=out_dir,
            max_wait_s=options.expect_workers_max_wait_s,
            policy=policy,
        )
    run_args = argparse.Namespace(
        stage="load",
        target=args.target,
        gates=gates_path,
        only=[registry.load_id(profile.name)],
        report_dir=args.report_dir,
        dry_run=False,
        expect_release=None,
        baseline=None,
        suite=suite,
        verbose=False,
        deadline=args.deadline,
    )
    previous = os.environ.get(OPTIONS_ENV)
    os.environ[OPTIONS_ENV] = options.to_env()
    try:
        return cmd_run(run_args, report_dirs)
    finally:
        if previous is None:
            os.environ.pop(OPTIONS_ENV, None)
        else:
            os.environ[OPTIONS_ENV] = previous


# --------------------------------------------------------------------------- serve


def cmd_serve(args: argparse.Namespace, _: list[Path]) -> int:
    """Validate everything first (exit 3 on a bad target, policy, address or token), then serve."""
    from releasegate.serve import GateServer, ServeSettings, is_loopback, parse_listen, serve_until_stopped

    suite = find_suite(args.suite)
    loaded = load_target(args.target)
    load_scenarios(loaded)
    gates_path = Path(args.gates or default_gates(suite)).resolve()
    gates = load_gates(gates_path).gates
    try:
        host, port = parse_listen(args.listen)
    except ValueError as exc:
        raise UsageError(f"--listen {exc}") from None
    token: str | None = None
    if args.token_env:
        token = os.environ.get(args.token_env, "")
        # Never the value itself in a message: only the variable's name.
        if len(token) < 16 or token.strip() != token:
            raise ConfigError(
                [
                    Problem(
                        "--token-env",
                        None,
                        args.token_env,
                        "the variable is unset, shorter than 16 characters or has surrounding whitespace",
                        f"export {args.token_env}=<a random token of 16+ characters> (e.g. from a Kubernetes Secret)",
                    )
                ]
            )
    max_run_s = args.max_run_s if args.max_run_s is not None else gates.deadline_s + 60.0
    if max_run_s <= 0 or args.lock_wait_s < 0 or args.keep_runs < 1:
        raise UsageError("--max-run-s must be > 0, --lock-wait-s >= 0 and --keep-runs >= 1")
    report_root = (args.report_dir or Path("reports") / f"serve-{datetime.now(UTC):%Y%m%dT%H%M%SZ}").resolve()
    settings = ServeSettings(
        target=loaded.path,
        gates=gates_path,
        suite=suite,
        report_root=report_root,
        target_name=loaded.target.name,
        max_run_s=max_run_s,
        lock_wait_s=args.lock_wait_s,
        keep_runs=args.keep_runs,
        token=token,
        token_env=args.token_env,
    )
    try:
        report_root.mkdir(parents=True, exist_ok=True)
        server = GateServer((host, port), settings)
    except OSError as exc:
        raise ConfigError(
            [
                Problem(
                    "--listen" if not isinstance(exc, PermissionError) else "--report-dir",
                    None,
                    "",
                    f"cannot start: {exc}",
                    "pick a free port and a writable folder",
                )
            ]
        ) from None
    print(f"releasegate serve: listening on {server.url} for target {loaded.target.name} ({loaded.path})", flush=True)
    print(f"releasegate serve: policy {gates_path}; a run is stopped after {max_run_s:g} s; reports in {report_root}", flush=True)
    span = gates.canary.interval_s * gates.canary.max_intervals
    if loaded.target.canary is not None and max_run_s < span:
        print(
            f"releasegate serve: note: a canary run may take {span:g} s (interval_s x max_intervals) but --max-run-s is "
            f"{max_run_s:g} s: it would hold",
            flush=True,
        )
    if token is None and not is_loopback(host):
        print("releasegate serve: warning: no --token-env on a non-loopback address; restrict who can reach it (NetworkPolicy)", flush=True)
    serve_until_stopped(server)
    print("releasegate serve: stopped", flush=True)
    return ExitCode.OK


# --------------------------------------------------------------------------- canary replay


def cmd_canary(args: argparse.Namespace, _: list[Path]) -> int:
    from releasegate.canary import judge
    from releasegate.canary.model import load_record

    record = load_record(args.samples)
    if not record.intervals:
        raise ConfigError(
            [
                Problem(
                    str(args.samples),
                    None,
                    "intervals",
                    "holds no interval: there is nothing to judge",
                    "pass the samples.json of a canary run that collected at least one interval",
                )
            ]
        )
    policy, source = _replay_policy(args, record.policy)
    intervals = record.intervals[: policy.max_intervals]
    # A recorded run that stopped before this policy's last look ends undecided, not "complete".
    complete = len(record.intervals) >= policy.max_intervals
    run = judge.judge_run(policy, intervals, complete=complete)
    print(f"releasegate canary replay: {args.samples} (target {record.target or '?'}), {len(record.intervals)} interval(s) recorded")
    print(f"policy: {source}; {policy.max_intervals} look(s) of {policy.interval_s:g} s, alpha {policy.alpha:g} ({policy.looks})")
    notes = _replay_notes(record.intervals, policy)
    for note in notes:
        print(f"note: {note}")
    print()
    print(judge.explain(run))
    return {"promote": ExitCode.OK, "rollback": ExitCode.ROLLBACK}.get(run.decision, ExitCode.HOLD)


def _replay_policy(args: argparse.Namespace, saved: Any) -> tuple[Any, str]:
    """The canary policy to judge under, and where it came from."""
    import pydantic

    from releasegate.config import CanaryPolicy

    if args.gates is not None:
        return load_gates(args.gates).gates.canary, f"canary section of {args.gates}"
    if saved:
        try:
            return CanaryPolicy.model_validate(saved), f"saved in {args.samples}"
        except pydantic.ValidationError as exc:
            problems = [
                Problem(
                    str(args.samples),
                    None,
                    "policy." + ".".join(str(part) for part in error["loc"]),
                    error["msg"],
                    "judge under another policy with --gates FILE, or pass an unedited samples.json",
                )
                for error in exc.errors()
            ]
            raise ConfigError(problems) from None
    try:
        path = default_gates(find_suite(args.suite))
    except ConfigError:
        return CanaryPolicy(), "built-in defaults (the samples hold no policy)"
    return load_gates(path).gates.canary, f"canary section of {path} (the samples hold no policy)"


def _replay_notes(intervals: Sequence[Any], policy: Any) -> list[str]:
    notes: list[str] = []
    if len(intervals) > policy.max_intervals:
        notes.append(f"only the first {policy.max_intervals} of {len(intervals)} intervals are judged (max_intervals)")
    recorded = {name for interval in intervals for name in interval.metrics}
    missing = [metric.name for metric in policy.metrics if metric.name not in recorded]
    if missing:
        notes.append(f"no samples recorded for {', '.join(missing)}: no data under this policy")
    durations = {round(interval.duration_s, 3) for interval in intervals}
    if durations and all(abs(d - policy.interval_s) > 0.5 for d in durations):
        shown = ", ".join(f"{d:g}" for d in sorted(durations)[:3])
        notes.append(f"the intervals were {shown} s long, the policy says {policy.interval_s:g} s: looks are per recorded interval")
    return notes


_COMMANDS: dict[str, Callable[[argparse.Namespace, list[Path]], int]] = {
    "run": cmd_run,
    "validate": cmd_validate,
    "checks": cmd_checks,
    "demo": cmd_demo,
    "load": cmd_load,
    "serve": cmd_serve,
    "canary": cmd_canary,
}


def entry_point() -> None:
    sys.exit(int(main()))
