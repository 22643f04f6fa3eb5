"""``releasegate``: the command line. Exit codes are the contract (design.md):
0 pass/promote · 1 rollback · 2 hold · 3 configuration/usage error · 4 internal error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, NoReturn

import pytest

from releasegate import registry
from releasegate._exceptions import ConfigError, Problem
from releasegate.config import load_gates, load_target
from releasegate.redact import RedactingStream, Redactor
from releasegate.results import STAGES, ExitCode
from releasegate.suite import default_gates, find_suite, stage_dir


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
    run.add_argument("--suite", type=Path, help="folder holding checks/ and gates.yaml (default: found automatically)")
    run.add_argument("-v", "--verbose", action="store_true", help="pytest's verbose output as well")

    validate = sub.add_parser("validate", help="lint a target file and gates.yaml; exit 0 or 3")
    validate.add_argument("--target", type=Path)
    validate.add_argument("--gates", type=Path, help="default: the suite's gates.yaml")
    validate.add_argument("--suite", type=Path)

    checks = sub.add_parser("checks", help="list every check id")
    checks.add_argument("--json", action="store_true", help="machine-readable list")

    demo = sub.add_parser("demo", help="gate the embedded reference deployment (not available yet)")
    demo.add_argument("--fault", action="append", default=[])
    demo.add_argument("--stage", choices=STAGES)
    demo.add_argument("--canary", action="store_true")
    demo.add_argument("--serve", action="store_true")

    load = sub.add_parser("load", help="run one load profile (not available yet)")
    load.add_argument("--profile", required=True)
    load.add_argument("--target", required=True, type=Path)
    load.add_argument("--workers", type=int)
    load.add_argument("--report-dir", type=Path)
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
    load_gates(gates_path)
    for pattern in args.only or []:
        if not registry.select(pattern):
            raise UsageError(f"--only {pattern}: matches no registered check; run `releasegate checks`")
    started = datetime.now(UTC)
    report_dir = (args.report_dir or Path("reports") / f"{args.stage}-{started:%Y%m%dT%H%M%SZ}").resolve()
    report_dirs.append(report_dir)
    redactor = Redactor()
    if loaded_target.target.auth.token_env:
        redactor.add(loaded_target.target.auth.token_env, loaded_target.token())

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
    pytest_args.append(str(checks_dir if checks_dir.is_dir() else suite / "checks"))

    observer = _RunObserver()
    out, err = RedactingStream(sys.stdout, redactor), RedactingStream(sys.stderr, redactor)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
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


# --------------------------------------------------------------------------- validate, checks, not-yet


def cmd_validate(args: argparse.Namespace, _: list[Path]) -> int:
    problems: list[Problem] = []
    said: list[str] = []
    if args.target is not None:
        try:
            loaded = load_target(args.target)
            said.append(f"target {args.target}: ok ({loaded.target.name})")
        except ConfigError as exc:
            problems += exc.problems
    gates_path = args.gates or default_gates(find_suite(args.suite))
    try:
        gates = load_gates(gates_path, today=date.today(), strict_waivers=True).gates
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
    rows = [
        {"id": s.id, "stage": s.stage, "family": s.family, "severity": s.severity, "fault": s.fault, "description": s.description}
        for s in registry.CHECKS
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
    Console().print(table)
    return ExitCode.OK


def cmd_not_yet(args: argparse.Namespace, _: list[Path]) -> int:
    print(f"releasegate {args.command}: not available yet in this version (exit 3)", file=sys.stderr)
    return ExitCode.CONFIG_ERROR


_COMMANDS: dict[str, Callable[[argparse.Namespace, list[Path]], int]] = {
    "run": cmd_run,
    "validate": cmd_validate,
    "checks": cmd_checks,
    "demo": cmd_not_yet,
    "load": cmd_not_yet,
}


def entry_point() -> None:
    sys.exit(int(main()))
