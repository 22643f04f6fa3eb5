"""`releasegate demo`: one command shows the gate working on the live reference deployment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from releasegate.cli import main
from releasegate.reference.demo import TOKEN_ENV


def test_the_healthy_demo_promotes_and_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", "--report-dir", str(tmp_path)])

    out = capsys.readouterr().out
    assert code == 0, out
    verdict = json.loads((tmp_path / "post-deploy" / "verdict.json").read_text())
    assert verdict["decision"] == "promote"
    assert "PROMOTE" in out


def test_db_down_rolls_back_with_readiness_and_deep_health_among_the_reasons(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", "--fault", "db-down", "--report-dir", str(tmp_path)])

    capsys.readouterr()
    assert code == 1
    reasons = " ".join(json.loads((tmp_path / "post-deploy" / "verdict.json").read_text())["reasons"])
    assert "health.readiness" in reasons and "health.deep" in reasons


def test_an_unknown_fault_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--fault", "no-such-fault"]) == 3
    assert "unknown fault" in capsys.readouterr().err


def test_the_demo_token_never_reaches_the_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The demo logs in for real and puts the token in the environment for the gate.
    seen: list[str] = []
    from releasegate.reference import demo

    original = demo.login

    def spy(*args: object, **kwargs: object) -> str:
        token = original(*args, **kwargs)  # type: ignore[arg-type]
        seen.append(token)
        return token

    monkeypatch.setattr(demo, "login", spy)
    assert main(["demo", "--fault", "wrong-release", "--report-dir", str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert len(seen) == 2  # the gate's identity and a second one (per-user rate limits)
    for token in seen:
        assert TOKEN_ENV not in os.environ or os.environ[TOKEN_ENV] != token
        for path in tmp_path.rglob("*"):
            if path.is_file():
                assert token not in path.read_text(errors="replace"), path
        assert token not in out.out + out.err


def test_serve_prints_the_target_path_and_stops_on_sigterm(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "releasegate", "demo", "--serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        target = None
        while time.monotonic() < deadline and target is None:
            line = process.stdout.readline()
            if not line:
                break
            if line.strip().endswith("target.yaml") and Path(line.strip()).is_absolute():
                target = Path(line.strip())
        assert target is not None and target.is_file()
        assert "base_url: https://localhost:" in target.read_text()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert not target.exists()  # the demo cleans up after itself
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
