"""The command line: exit codes of the contract, configuration errors with file:line, internal errors.

The CLI runs in-process through ``main([...])``; argparse's own exit 2 would mean "hold", so
every usage problem must come out as 3.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path

import pytest

from loopback import Route, healthy_routes, serve
from releasegate import cli, registry
from releasegate.cli import main

FAST_GATES = "probe: {timeout_s: 1, retry: {timeout_s: 0}}\n"
SUITE = Path(__file__).resolve().parents[1]
RELEASE = "2026.11.26-1"


@pytest.fixture
def target(tmp_path: Path) -> Path:
    """A valid target file pointing at nothing (enough for configuration tests)."""
    path = tmp_path / "target.yaml"
    path.write_text("name: cli\nbase_url: http://127.0.0.1:9\nhealth: {liveness: /healthz}\n", encoding="utf-8")
    return path


def write_gates(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gates.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# Each bad gates.yaml and the line its problem is on.
BAD_GATES = [
    pytest.param("version: 1\non_eror: hold\n", 2, "on_eror", id="unknown-key"),
    pytest.param("version: 1\nprobe:\n  timeout_s: fast\n", 3, "probe.timeout_s", id="bad-type"),
    pytest.param("version: 1\n\nseverity:\n  health.livenes: warning\n", 4, "severity.health.livenes", id="unknown-check-id"),
    pytest.param("waivers:\n  - check: health.deep\n    expires: someday\n", 2, "waivers[0]", id="malformed-waiver"),
]


@pytest.mark.parametrize(("text", "line", "key"), BAD_GATES)
def test_run_with_a_bad_gates_file_exits_3_naming_file_and_line(
    tmp_path: Path, target: Path, capsys: pytest.CaptureFixture[str], text: str, line: int, key: str
) -> None:
    gates = write_gates(tmp_path, text)

    code = main(["run", "--stage", "post-deploy", "--target", str(target), "--gates", str(gates), "--report-dir", str(tmp_path / "r")])

    assert code == 3
    err = capsys.readouterr().err
    assert f"{gates}:{line}: key '{key}" in err
    assert "Traceback" not in err
    assert not (tmp_path / "r" / "verdict.json").exists()


@pytest.mark.parametrize(("text", "line", "key"), BAD_GATES)
def test_validate_names_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, line: int, key: str) -> None:
    gates = write_gates(tmp_path, text)

    assert main(["validate", "--gates", str(gates)]) == 3
    assert f"{gates}:{line}: key '{key}" in capsys.readouterr().err


def test_validate_lists_every_problem_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gates = write_gates(
        tmp_path,
        "version: 1\n"
        "on_eror: hold\n"  # 2: unknown key
        "deadline_s: soon\n"  # 3: bad type
        "severity:\n"
        "  health.livenes: warning\n"  # 5: unknown check id
        "waivers:\n"
        "  - check: health.deep\n"  # 7: malformed waiver (no justification, bad date)
        "    expires: someday\n"
        "  - check: health.readiness\n"
        "    justification: 'db migration, OPS-7'\n"
        "    expires: 2000-01-01\n",  # 11: expired
    )
    bad_target = tmp_path / "bad-target.yaml"
    bad_target.write_text("name: x\nbase_url: ftp://nope\nhealth: {liveness: healthz}\n", encoding="utf-8")

    assert main(["validate", "--gates", str(gates), "--target", str(bad_target)]) == 3

    err = capsys.readouterr().err
    for where in (
        f"{gates}:2:",
        f"{gates}:3:",
        f"{gates}:5:",
        f"{gates}:7:",
        f"{gates}:8:",
        f"{gates}:11:",
        f"{bad_target}:2:",
        f"{bad_target}:3:",
    ):
        assert where in err, where
    assert "waivers[0].justification" in err and "waivers[0].expires" in err
    assert "expired on 2000-01-01" in err
    assert "did you mean 'health.liveness'?" in err


def test_validate_ok_exits_0(tmp_path: Path, target: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gates = write_gates(
        tmp_path, FAST_GATES + "waivers:\n  - {check: health.deep, justification: 'cache rebuild, OPS-123', expires: 2999-12-31}\n"
    )

    assert main(["validate", "--gates", str(gates), "--target", str(target)]) == 0
    out = capsys.readouterr().out
    assert "target" in out and "ok (cli)" in out
    assert "1 waivers" in out


def test_validate_the_shipped_gates_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate"]) == 0
    assert "gates.yaml: ok" in capsys.readouterr().out


def test_checks_json_lists_every_registered_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["checks", "--json"]) == 0

    rows = json.loads(capsys.readouterr().out)
    registered = [row for row in rows if not row.get("template")]
    templates = [row for row in rows if row.get("template")]
    assert [row["id"] for row in registered] == registry.ids()
    # A family of user-named ids (a user's scenarios) is listed once, as its pattern, proven by no fault.
    assert [row["id"] for row in templates] == ["canary.metric.<name>", "load.<name>", "business.scenario.<name>"]
    assert all(row["fault"] is None for row in templates)
    for row in registered:
        spec = registry.get(row["id"])
        assert (row["stage"], row["family"], row["severity"], row["fault"]) == (spec.stage, spec.family, spec.severity, spec.fault)


def test_checks_table_names_every_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["checks"]) == 0
    out = capsys.readouterr().out
    for check_id in registry.ids():
        assert check_id in out


def test_load_with_a_missing_target_is_a_configuration_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["load", "--profile", "smoke", "--target", str(tmp_path / "t.yaml")]) == 3
    assert "t.yaml" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param([], id="no-command"),
        pytest.param(["frobnicate"], id="unknown-command"),
        pytest.param(["checks", "--bogus"], id="unknown-flag"),
        pytest.param(["run", "--stage", "post-deploy"], id="missing-target"),
        pytest.param(["run", "--stage", "mid-deploy", "--target", "t.yaml"], id="bad-stage"),
        pytest.param(["run", "--stage", "post-deploy", "--target", "t.yaml", "--only"], id="only-without-pattern"),
    ],
)
def test_bad_usage_exits_3_not_argparses_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: releasegate")
    assert "Traceback" not in err


def test_only_with_an_unknown_pattern_exits_3(tmp_path: Path, target: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gates = write_gates(tmp_path, FAST_GATES)

    code = main(["run", "--stage", "post-deploy", "--target", str(target), "--gates", str(gates), "--only", "securty"])

    assert code == 3
    assert "--only securty" in capsys.readouterr().err


def test_missing_target_file_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--stage", "post-deploy", "--target", str(tmp_path / "nope.yaml")]) == 3
    assert "nope.yaml" in capsys.readouterr().err


def test_unset_token_variable_exits_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("RG_CLI_UNSET_TOKEN", raising=False)
    path = tmp_path / "target.yaml"
    path.write_text("name: cli\nbase_url: http://127.0.0.1:9\nauth:\n  token_env: RG_CLI_UNSET_TOKEN\n", encoding="utf-8")

    assert main(["validate", "--target", str(path)]) == 3
    assert f"{path}:4: key 'auth.token_env'" in capsys.readouterr().err


def test_console_exit_code_through_entry_point(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.argv", ["releasegate", "run", "--no-such-flag"])

    with pytest.raises(SystemExit) as exc:
        cli.entry_point()

    assert exc.value.code == 3


# --------------------------------------------------------------------------- internal errors: exit 4


def test_an_unexpected_exception_exits_4_with_one_line_and_saves_the_traceback(
    tmp_path: Path, target: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(*args: object) -> Path:
        raise RuntimeError("simulated bug in the CLI")

    monkeypatch.setattr(cli, "stage_dir", boom)
    gates = write_gates(tmp_path, FAST_GATES)
    report_dir = tmp_path / "r"

    code = main(["run", "--stage", "post-deploy", "--target", str(target), "--gates", str(gates), "--report-dir", str(report_dir)])

    assert code == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("internal error: RuntimeError: simulated bug in the CLI")
    assert "Traceback" not in err
    saved = (report_dir / "internal-error.txt").read_text(encoding="utf-8")
    assert saved.startswith("Traceback") and "simulated bug in the CLI" in saved and "boom" in saved
    assert str(report_dir / "internal-error.txt") in err


def test_an_exception_before_a_report_dir_is_known_saves_the_traceback_elsewhere(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(args: object, _: object) -> int:
        raise KeyError("registry lookup")

    monkeypatch.setitem(cli._COMMANDS, "checks", boom)

    assert main(["checks"]) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    saved = Path(err.split("traceback saved to ")[1].split(" (exit 4")[0])
    try:
        assert "registry lookup" in saved.read_text(encoding="utf-8")
    finally:
        saved.unlink()


def test_a_bug_inside_the_gate_run_exits_4(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from releasegate import plugin

    def boom(*args: object, **kwargs: object) -> str:
        raise RuntimeError("simulated bug while writing reports")

    monkeypatch.setattr(plugin, "render_summary", boom)
    gates = write_gates(tmp_path, FAST_GATES)
    report_dir = tmp_path / "r"
    with serve(healthy_routes(RELEASE)) as server:
        path = tmp_path / "target.yaml"
        path.write_text(f"name: cli\nbase_url: {server.base_url}\nhealth: {{liveness: /healthz}}\n", encoding="utf-8")
        code = main(["run", "--stage", "post-deploy", "--target", str(path), "--gates", str(gates), "--report-dir", str(report_dir)])

    assert code == 4
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "internal error" in err
    assert "simulated bug while writing reports" in (report_dir / "internal-error.txt").read_text(encoding="utf-8")


# --------------------------------------------------------------------------- working directory


def test_run_works_from_another_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("RELEASEGATE_SUITE", raising=False)
    Path("gates.yaml").write_text(FAST_GATES, encoding="utf-8")
    with serve(healthy_routes(RELEASE)) as server:
        Path("target.yaml").write_text(
            f"name: cwd\nbase_url: {server.base_url}\nhealth: {{liveness: /healthz, readiness: /readyz, deep: /health}}\n", encoding="utf-8"
        )
        # Relative paths, resolved against the working directory; the suite is found on its own.
        code = main(["run", "--stage", "post-deploy", "--target", "target.yaml", "--gates", "gates.yaml"])

    assert code == 0, capsys.readouterr()
    [report_dir] = list((elsewhere / "reports").iterdir())
    assert report_dir.name.startswith("post-deploy-")
    verdict = json.loads((report_dir / "verdict.json").read_text(encoding="utf-8"))
    assert verdict["decision"] == "promote"
    ran = {c["id"] for c in verdict["checks"] if c["outcome"] != "skipped"}
    assert ran == {"health.liveness", "health.readiness", "health.deep"}
    # The other checks find no key of theirs in this target (expected_release, sync, slo, ...): skipped, saying why.
    skipped = [c for c in verdict["checks"] if c["id"] not in ran]
    assert all(c["id"].startswith(("health.release_id", "business.", "slo.")) and c["summary"] for c in skipped)
    # Nothing was written next to the suite.
    assert not (elsewhere / "checks").exists()


def test_validate_works_from_another_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RELEASEGATE_SUITE", raising=False)

    assert main(["validate"]) == 0
    assert "gates.yaml: ok" in capsys.readouterr().out


def test_a_bad_suite_flag_exits_3(tmp_path: Path, target: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--stage", "post-deploy", "--target", str(target), "--suite", str(tmp_path)]) == 3
    assert "not a releasegate suite" in capsys.readouterr().err


def make_suite(tmp_path: Path, **modules: str) -> Path:
    """A suite of our own for --suite: checks/pytest.ini (the real one), gates.yaml, post-deploy modules."""
    suite = tmp_path / "suite"
    (suite / "checks" / "postdeploy").mkdir(parents=True)
    (suite / "checks" / "pytest.ini").write_text((SUITE / "checks" / "pytest.ini").read_text(encoding="utf-8"), encoding="utf-8")
    (suite / "gates.yaml").write_text(FAST_GATES, encoding="utf-8")
    # Unique module names: the in-process runs share sys.modules, and pytest's default import mode
    # refuses a second test_ok.py from another folder ("import file mismatch").
    unique = re.sub(r"\W", "_", tmp_path.name)
    for name, text in modules.items():
        (suite / "checks" / "postdeploy" / f"{name}_{unique}.py").write_text(text, encoding="utf-8")
    return suite


PASSING_CHECK = (
    "import pytest\nfrom releasegate.results import Finding\n\n"
    '@pytest.mark.check("health.liveness")\ndef test_live(check):\n    check.conclude(Finding("passed", "alive"))\n'
)


@pytest.mark.parametrize(
    ("modules", "expected", "needle"),
    [
        pytest.param({"test_ok": PASSING_CHECK}, 0, "PROMOTE", id="passing"),
        pytest.param(
            {"test_ok": PASSING_CHECK, "test_unmarked": "def test_x():\n    pass\n"},
            3,
            "exactly one @pytest.mark.check",
            id="missing-marker",
        ),
        pytest.param(
            {"test_ok": PASSING_CHECK, "test_typo": PASSING_CHECK.replace("health.liveness", "health.livenes")},
            3,
            "did you mean 'health.liveness'",
            id="unknown-id",
        ),
        pytest.param(
            {"test_ok": PASSING_CHECK, "test_broken": "import releasegate_no_such_module\n"},
            4,
            "check module failed to load",
            id="broken-import",
        ),
    ],
)
def test_run_exit_codes_for_a_suite_of_our_own(
    tmp_path: Path, target: Path, capsys: pytest.CaptureFixture[str], modules: dict[str, str], expected: int, needle: str
) -> None:
    suite = make_suite(tmp_path, **modules)

    code = main(["run", "--stage", "post-deploy", "--suite", str(suite), "--target", str(target), "--report-dir", str(tmp_path / "r")])

    out = capsys.readouterr().out
    assert code == expected, out
    assert needle in out


# --------------------------------------------------------------------------- --deadline (issue 9)


@pytest.mark.parametrize(
    ("value", "said"),
    [
        pytest.param("0", "0 is not a positive number of seconds", id="zero"),
        pytest.param("-5", "-5 is not a positive number of seconds", id="negative"),
        pytest.param("nan", "nan is not a positive number of seconds", id="nan"),
        pytest.param("inf", "inf is not a positive number of seconds", id="inf"),
        pytest.param("100000", "over the limit of 86400 s", id="over-a-day"),
        pytest.param("0.5", "shorter than probe.timeout_s + probe.retry.timeout_s (1 s)", id="shorter-than-a-probe"),
        pytest.param("soon", "argument --deadline: invalid float value: 'soon'", id="not-a-number"),
    ],
)
def test_a_bad_deadline_exits_3_before_any_request(tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, said: str) -> None:
    # Given a live target (so a run that started would reach it)
    gates = write_gates(tmp_path, FAST_GATES)
    with serve(healthy_routes()) as server:
        target = tmp_path / "target.yaml"
        target.write_text(f"name: cli\nbase_url: {server.base_url}\nhealth: {{liveness: /healthz}}\n", encoding="utf-8")
        argv = ["run", "--stage", "post-deploy", "--target", str(target), "--gates", str(gates), "--report-dir", str(tmp_path / "r")]
        # When --deadline is not a usable number of seconds
        code = main([*argv, f"--deadline={value}"])
    # Then it is a configuration error, said in one line naming the flag, before anything ran
    err = capsys.readouterr().err
    assert code == 3, err
    assert said in err and "--deadline" in err
    assert "Traceback" not in err
    assert server.requests == []
    assert not (tmp_path / "r" / "verdict.json").exists()


def test_deadline_overrides_gates_yaml_and_ends_the_run_near_it_with_hold(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a policy with a long deadline (and no latency budget) and a target whose every health answer takes 2.5 s
    gates = write_gates(
        tmp_path, "deadline_s: 600\nprobe: {timeout_s: 3, retry: {timeout_s: 0}}\nthresholds: {health: {max_latency_ms: null}}\n"
    )
    slow = {path: dataclasses.replace(route, delay_s=2.5) for path, route in healthy_routes().items() if isinstance(route, Route)}
    with serve(dict(slow)) as server:
        target = tmp_path / "target.yaml"
        target.write_text(
            f"name: cli\nbase_url: {server.base_url}\nhealth: {{liveness: /healthz, readiness: /readyz, deep: /health}}\n",
            encoding="utf-8",
        )
        started = time.monotonic()
        # When the run is given 4 s on the command line
        code = main(
            [
                "run", "--stage", "post-deploy", "--target", str(target), "--gates", str(gates),
                "--report-dir", str(tmp_path / "r"), "--only", "health.liveness", "health.readiness", "health.deep",
                "--deadline", "4",
            ]
        )  # fmt: skip
        seconds = time.monotonic() - started
    # Then the checks that had no time left are errors naming the 4 s deadline (not gates.yaml's 600)
    captured = capsys.readouterr()
    assert code == 2, captured.out + captured.err
    verdict = json.loads((tmp_path / "r" / "verdict.json").read_text(encoding="utf-8"))
    assert verdict["exit_code"] == 2
    assert verdict["decision"] == "hold"
    rows = {row["id"]: row for row in verdict["checks"]}
    assert rows["health.liveness"]["outcome"] == "passed"
    assert rows["health.deep"]["outcome"] == "error"
    assert "the run's deadline of 4 s passed before this check started" in rows["health.deep"]["summary"]
    # ... and the run ended near the 4 s, far from gates.yaml's deadline
    assert seconds < 4 + 2.5 + 10


def test_deadline_is_passed_on_by_demo_and_load() -> None:
    # The demo gates each stage through `run` and load is `run --stage load`: the flag must reach them.
    args = cli.build_parser().parse_args(["demo", "--deadline", "120"])
    assert cli._deadline_args(args) == ["--deadline", "120.0"]
    assert cli.build_parser().parse_args(["load", "--profile", "smoke", "--target", "t.yaml", "--deadline", "30"]).deadline == 30.0
