"""The gate's side of a load run: safety, bounds, options, supervision; no Locust involved.

The real runs (reference deployment, faults, workers) are in test_load_gate.py and
test_distributed.py; here the subprocess is replaced where its outcome is what is tested.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from releasegate._exceptions import ConfigError
from releasegate.config import LoadedTarget, LoadPolicy, load_target
from releasegate.load import runner
from releasegate.load.profiles import LoadProfile, load_profile
from releasegate.load.runner import LoadOptions, LoadRun, format_progress, judge_run, run_profile, selected_profiles, subprocess_env
from releasegate.load.safety import allowed, is_loopback, refuse_unless_allowed

PROFILE = """\
description: a short test profile
user_classes: {ConversationUser: 1}
stages:
  - {duration_s: 3, users: 1, spawn_rate: 1}
max_duration_s: 20
"""


@pytest.fixture
def profiles(tmp_path: Path) -> Path:
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "short.yaml").write_text(PROFILE, encoding="utf-8")
    (folder / "long.yaml").write_text(PROFILE.replace("duration_s: 3", "duration_s: 600").replace("20", "900"), encoding="utf-8")
    return folder


def target(tmp_path: Path, base_url: str = "https://127.0.0.1:8443", allowed_hosts: list[str] | None = None) -> LoadedTarget:
    path = tmp_path / "target.yaml"
    path.write_text(
        f"name: t\nbase_url: {base_url}\nload: {{allowed_hosts: {json.dumps(allowed_hosts or [])}, profiles: [short]}}\n", encoding="utf-8"
    )
    return load_target(path)


def run(loaded: LoadedTarget, profile: LoadProfile, tmp_path: Path, policy: LoadPolicy | None = None, **kwargs: Any) -> LoadRun:
    return run_profile(
        loaded,
        policy or LoadPolicy(),
        profile,
        gates_path=None,
        locustfile=tmp_path / "locustfile.py",
        profiles_dir=tmp_path / "profiles",
        out_dir=tmp_path / "out",
        **kwargs,
    )


# --------------------------------------------------------------------------- safety


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.8.9.10", "::1", "[::1]", "LOCALHOST", "api.localhost"])
def test_loopback_is_always_allowed(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["example.com", "10.0.0.1", "0.0.0.0", "127.0.0.1.nip.io", "localhost.example.com", ""])
def test_anything_else_is_not_loopback(host: str) -> None:
    assert not is_loopback(host)


def test_a_listed_host_is_allowed_and_nothing_more() -> None:
    assert allowed("https://staging.example.test/api", ["Staging.Example.Test"])
    assert not allowed("https://prod.example.test/api", ["staging.example.test"])
    assert not allowed("not a url", ["staging.example.test"])


def test_a_refusal_names_the_host_the_file_and_the_fix() -> None:
    with pytest.raises(ConfigError) as caught:
        refuse_unless_allowed("https://prod.example.test", ["staging.example.test"], target_file="t.yaml")
    text = str(caught.value)
    assert "t.yaml" in text and "load.allowed_hosts" in text and "'prod.example.test'" in text
    assert "no request was sent" in text and "staging.example.test" in text


def test_a_refused_host_raises_before_anything_starts(tmp_path: Path, profiles: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[object] = []
    monkeypatch.setattr(runner, "_supervise", lambda *a, **k: started.append(a) or (0, []))
    loaded = target(tmp_path, base_url="https://prod.example.test")
    with pytest.raises(ConfigError, match="load refused"):
        run(loaded, load_profile("short", profiles), tmp_path)
    assert started == [] and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "url",
    ["http://evil.example.test\\@staging.example.test/", "http://staging.example.test\\x", "http://[", "http://staging.example.test\t/"],
)
def test_a_url_whose_host_clients_would_read_differently_is_refused(url: str) -> None:
    # urlsplit (the rule) reads staging.example.test; urllib3 (Locust's HTTP users) reads evil.example.test.
    assert not allowed(url, ["staging.example.test"])
    with pytest.raises(ConfigError, match="no request was sent"):
        refuse_unless_allowed(url, ["staging.example.test"], target_file="t.yaml")


def test_an_allowed_remote_host_goes_ahead(tmp_path: Path, profiles: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "_supervise", lambda *a, **k: (3, ["refused by the locustfile"]))
    loaded = target(tmp_path, base_url="https://staging.example.test", allowed_hosts=["staging.example.test"])
    result = run(loaded, load_profile("short", profiles), tmp_path)
    assert result.error is not None and "refused to start" in result.error


def test_the_subprocess_environment_names_the_target_and_drops_stray_allowlists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELEASEGATE_ALLOWED_HOSTS", "evil.example")
    env = subprocess_env(target(tmp_path), "short", tmp_path / "profiles", 12.5)
    assert "RELEASEGATE_ALLOWED_HOSTS" not in env
    assert env["RELEASEGATE_PROFILE"] == "short" and env["RELEASEGATE_MAX_DURATION_S"] == "12.5"
    assert env["RELEASEGATE_TARGET"].endswith("target.yaml")


# --------------------------------------------------------------------------- bounds


def test_a_profile_longer_than_the_policy_allows_is_not_started(tmp_path: Path, profiles: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "_supervise", lambda *a, **k: pytest.fail("must not start"))
    result = run(target(tmp_path), load_profile("long", profiles), tmp_path, policy=LoadPolicy(max_duration_s=60))
    assert result.summary is None and result.error is not None
    assert "longer than gates.yaml load.max_duration_s 60: not started" in result.error
    finding = judge_run(result, LoadPolicy())
    assert finding.outcome == "error" and finding.summary.startswith("long: the profile runs 600 s")


def test_a_profile_that_cannot_finish_before_the_deadline_is_not_started(tmp_path: Path, profiles: Path) -> None:
    result = run(target(tmp_path), load_profile("short", profiles), tmp_path, time_left_s=10)
    assert result.error is not None and "before the run's deadline" in result.error


def test_the_bound_and_the_timeout_follow_the_profile_and_the_deadline(
    tmp_path: Path, profiles: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    def supervise(command: list[str], env: dict[str, str], log: Path, *, timeout_s: float, progress: Any) -> tuple[int, list[str]]:
        seen.update(command=command, timeout=timeout_s, env=env)
        return 0, []

    monkeypatch.setattr(runner, "_supervise", supervise)
    result = run(target(tmp_path), load_profile("short", profiles), tmp_path, time_left_s=70)
    bound = float(seen["command"][seen["command"].index("--max-duration") + 1])
    assert bound == pytest.approx(70 - runner.STARTUP_GRACE_S - runner.WIND_DOWN_GRACE_S)
    assert seen["timeout"] == pytest.approx(70)
    assert "--workers" not in seen["command"]
    # no results.json was written: that is an error, never a pass
    assert result.error is not None and "no readable results.json" in result.error


def test_distributed_options_reach_the_command(tmp_path: Path, profiles: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    monkeypatch.setattr(runner, "_supervise", lambda command, *a, **k: seen.append(command) or (0, []))
    options = LoadOptions(workers=2, expect_workers=3, expect_workers_max_wait_s=7)
    run(target(tmp_path), load_profile("short", profiles), tmp_path, options=options)
    command = " ".join(seen[0])
    assert "--workers 2" in command and "--expect-workers 3" in command and "--expect-workers-max-wait 7" in command


@pytest.mark.parametrize(
    ("code", "expected"),
    [("timeout", "did not finish within"), (3, "refused to start (configuration): boom"), (4, "failed (exit 4): boom")],
)
def test_a_run_that_ends_badly_is_an_error_with_its_log_tail(
    code: int | str, expected: str, tmp_path: Path, profiles: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "_supervise", lambda *a, **k: (code, ["boom"]))
    result = run(target(tmp_path), load_profile("short", profiles), tmp_path)
    assert result.summary is None and result.error is not None and expected in result.error


def test_an_overrun_kills_the_whole_process_group(tmp_path: Path) -> None:
    # Given a process that starts a child of its own and never ends
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        'print(\'@releasegate \' + \'{"event": "started", "child": %d}\' % child.pid, flush=True)\n'
        "time.sleep(60)\n"
    )
    events: list[dict[str, Any]] = []
    started = time.monotonic()
    code, _ = runner._supervise(
        [sys.executable, "-c", script], dict(os.environ), tmp_path / "log", timeout_s=2, progress=lambda e: events.append(dict(e))
    )
    # Then the supervisor gives up at its timeout, and the child went with its parent
    assert code == "timeout"
    assert time.monotonic() - started < 30
    child = events[0]["child"]
    for _ in range(50):
        if not _alive(child):
            break
        time.sleep(0.1)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose: reaped by init soon
    state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] if Path(f"/proc/{pid}/stat").exists() else "X"
    return state not in ("Z", "X")


# --------------------------------------------------------------------------- options and selection


def test_load_options_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(runner.OPTIONS_ENV, raising=False)
    assert LoadOptions.from_env() == LoadOptions()
    options = LoadOptions(workers=2, expect_workers=4, expect_workers_max_wait_s=9, master_bind_host="0.0.0.0", master_port=5557)
    monkeypatch.setenv(runner.OPTIONS_ENV, options.to_env())
    assert LoadOptions.from_env() == options


@pytest.mark.parametrize("raw", ["not json", '{"workers": -1}', '{"expect_workers_max_wait_s": 0}', '{"workers": "many"}', "[1]"])
def test_bad_load_options_are_a_configuration_error(raw: str) -> None:
    with pytest.raises(ConfigError, match="RELEASEGATE_LOAD_OPTIONS"):
        LoadOptions.from_env({runner.OPTIONS_ENV: raw})


def test_the_profile_decides_workers_unless_the_options_do(profiles: Path) -> None:
    profile = load_profile("short", profiles)
    assert not LoadOptions().distributed(profile)
    assert LoadOptions(workers=2).distributed(profile) and LoadOptions(expect_workers=1).distributed(profile)


def test_selected_profiles_add_an_explicit_only_to_the_targets_list() -> None:
    assert selected_profiles(["smoke"], []) == ["smoke"]
    assert selected_profiles(["smoke"], ["load.spike"]) == ["smoke", "spike"]
    assert selected_profiles(["smoke"], ["load.smoke", "load.*", "load", "infra.capacity", "load.Bad-Name"]) == ["smoke"]


def test_progress_lines_read_like_a_dashboard() -> None:
    line = format_progress(
        "smoke",
        {"event": "progress", "elapsed_s": 4, "planned_s": 6, "users": 6, "rps": 21.5, "fail_ratio": 0.012, "p95_ms": 17.2, "requests": 9},
    )
    assert line == "load smoke:   4.0/6 s  users 6  21.5 req/s  failed 1.2%  p95 17 ms  (9 requests)"
    assert "2 of 3 workers" in (format_progress("x", {"event": "waiting_for_workers", "connected": 2, "expected": 3}) or "")
    assert "ABORTED" in (format_progress("x", {"event": "aborted", "elapsed_s": 3, "reason": "fail_ratio"}) or "")
    assert format_progress("x", {"event": "something else"}) is None


def test_the_gate_side_never_imports_locust() -> None:
    # gevent's monkey-patching must never reach the gate's pytest process.
    code = (
        "import sys; import releasegate.cli, releasegate.load.gate, releasegate.load.runner, releasegate.load.results; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('locust', 'gevent')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.strip() == "[]"
