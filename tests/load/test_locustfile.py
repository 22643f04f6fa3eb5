"""The locustfile's configuration and wiring, without load.

rg_settings.py imports no Locust, so its pure parts are tested in this process. Everything that
imports Locust (it monkey-patches the whole process with gevent) runs in a subprocess: what
Locust itself finds in the locustfile, and how a bad profile or a foreign host ends the run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from releasegate._exceptions import ConfigError

REPO = Path(__file__).resolve().parents[2]
LOADTESTS = REPO / "loadtests"
LOCUSTFILE = LOADTESTS / "locustfile.py"
TIMEOUT_S = 60
TOKEN = "rg-test-token-0123456789abcdef"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELEASEGATE_")}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def rg_settings() -> ModuleType:
    """loadtests/rg_settings.py under a private name (it reads the environment once, at import)."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("RELEASEGATE_")}
    try:
        spec = importlib.util.spec_from_file_location("rg_settings_under_test", LOADTESTS / "rg_settings.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    finally:
        os.environ.update(saved)
    return module


def write_target(folder: Path, extra: str = "") -> Path:
    path = folder / "target.yaml"
    text = """\
        name: t
        base_url: https://app.example.test
        ws_url: wss://app.example.test/ws/sync
        auth: {token_env: RG_TEST_TOKEN}
        """
    path.write_text(textwrap.dedent(text) + extra, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- settings (no Locust)


def test_defaults_without_a_target_are_smoke_and_one_identity(rg_settings: Any) -> None:
    settings = rg_settings.from_environment({})
    assert settings.profile.name == "smoke" and settings.target is None
    assert settings.identities == ("primary",)
    assert rg_settings.from_environment({"RELEASEGATE_PROFILE": "none"}).profile is None
    assert rg_settings.from_environment({"RELEASEGATE_TOKEN_2": "x"}).identities == ("primary", "second")


def test_the_target_gives_host_ws_url_identities_and_allowed_hosts(
    rg_settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RG_TEST_TOKEN", TOKEN)
    target = write_target(tmp_path, "load: {identities: [primary], allowed_hosts: [App.Example.test]}\n")

    settings = rg_settings.from_environment({"RELEASEGATE_TARGET": str(target)})

    assert settings.base_url == "https://app.example.test" and settings.identities == ("primary",)
    assert settings.token_of("primary") == TOKEN
    assert settings.problems("https://app.example.test") == []
    assert settings.problems("https://127.0.0.1:8443") == []
    [refused] = settings.problems("https://prod.example.test")
    assert "refusing load to 'prod.example.test'" in refused and "allowed_hosts" in refused


def test_host_moves_the_ws_url_but_keeps_its_path(rg_settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RG_TEST_TOKEN", TOKEN)
    settings = rg_settings.from_environment({"RELEASEGATE_TARGET": str(write_target(tmp_path))})
    fixed = rg_settings.from_environment({"RELEASEGATE_TARGET": str(write_target(tmp_path)), "RELEASEGATE_WS_URL": "wss://sync.test/x"})
    bare = rg_settings.from_environment({})

    assert settings.ws_url_for("https://app.example.test") == "wss://app.example.test/ws/sync"
    assert settings.ws_url_for("http://127.0.0.1:8080") == "ws://127.0.0.1:8080/ws/sync"
    assert fixed.ws_url_for("https://127.0.0.1:8443") == "wss://sync.test/x"
    assert bare.ws_url_for("https://localhost:9443") == "wss://localhost:9443/ws/sync"


def test_missing_tokens_and_login_are_named(rg_settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RELEASEGATE_TOKEN", raising=False)
    [problem] = rg_settings.from_environment({}).problems(None)
    assert "no token for identity 'primary'" in problem and "RELEASEGATE_TOKEN" in problem


def test_scrub_removes_every_known_secret(rg_settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELEASEGATE_TOKEN", TOKEN)
    settings = rg_settings.from_environment({})
    assert rg_settings.scrub(f"401 for Bearer {TOKEN}", settings) == "401 for Bearer [redacted]"


def test_bad_environment_values_are_config_errors(rg_settings: Any, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="RELEASEGATE_MAX_DURATION_S"):
        rg_settings.from_environment({"RELEASEGATE_MAX_DURATION_S": "soon"})
    with pytest.raises(ConfigError, match="no load profile 'nightly'"):
        rg_settings.from_environment({"RELEASEGATE_PROFILE": "nightly"})
    with pytest.raises(ConfigError, match="RELEASEGATE_CA_BUNDLE"):
        rg_settings.from_environment({"RELEASEGATE_CA_BUNDLE": str(tmp_path / "missing.pem")})
    assert rg_settings.from_environment({"RELEASEGATE_MAX_DURATION_S": "2.5"}).max_duration_s == 2.5


# --------------------------------------------------------------------------- what Locust finds (subprocess)

INSPECT = """\
import json, sys
import locust
from locust.util.load_locustfile import load_locustfile
users, shapes = load_locustfile(sys.argv[1])
out = {"users": sorted(users), "weights": {n: c.weight for n, c in users.items()},
       "fixed": {n: c.fixed_count for n, c in users.items()}, "shapes": [type(s).__name__ for s in shapes], "ticks": {}}
if shapes:
    shape = shapes[0]
    for t in (0.0, 3.0, 6.9, 7.0, 600.0):
        shape.get_run_time = lambda t=t: t
        tick = shape.tick()
        out["ticks"][str(t)] = None if tick is None else [tick[0], tick[1], [c.__name__ for c in tick[2]]]
print(json.dumps(out))
"""


def inspect_locustfile(env: dict[str, str]) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", INSPECT, str(LOCUSTFILE)], env=env, cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert result.returncode == 0, result.stderr
    found: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return found


def test_locust_finds_the_users_and_the_smoke_shape() -> None:
    found = inspect_locustfile(clean_env(RELEASEGATE_TOKEN=TOKEN))

    assert found["users"] == ["ConversationUser", "SyncUser"]  # no open model in smoke: no pacer
    assert found["weights"] == {"ConversationUser": 4, "SyncUser": 2}
    assert found["shapes"] == ["ProfileShape"]
    assert found["ticks"] == {
        "0.0": [6, 2.0, ["ConversationUser", "SyncUser"]],
        "3.0": [6, 2.0, ["ConversationUser", "SyncUser"]],
        "6.9": [6, 2.0, ["ConversationUser", "SyncUser"]],
        "7.0": None,
        "600.0": None,
    }


def test_an_open_model_profile_adds_the_pacer_once(tmp_path: Path) -> None:
    (tmp_path / "arrivals.yaml").write_text(
        "description: d\nopen_model: {arrival_rate_per_s: 5, max_vus: 1, duration_s: 2}\nmax_duration_s: 10\n", encoding="utf-8"
    )
    found = inspect_locustfile(clean_env(RELEASEGATE_PROFILES_DIR=str(tmp_path), RELEASEGATE_PROFILE="arrivals"))

    assert "ArrivalUser" in found["users"] and found["fixed"]["ArrivalUser"] == 1
    assert found["ticks"]["0.0"] == [1, 1.0, ["ArrivalUser"]] and found["ticks"]["3.0"] is None


def test_profile_none_leaves_users_and_rate_to_locust() -> None:
    found = inspect_locustfile(clean_env(RELEASEGATE_PROFILE="none"))
    assert found["users"] == ["ConversationUser", "SyncUser"] and found["shapes"] == []


def test_a_bad_profile_stops_locust_with_exit_3_and_file_line(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("description: d\nstages: []\nmax_duration_s: 5\nusers: 4\n", encoding="utf-8")
    env = clean_env(RELEASEGATE_PROFILES_DIR=str(tmp_path), RELEASEGATE_PROFILE="broken", RELEASEGATE_TOKEN=TOKEN)

    result = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", "https://127.0.0.1:9"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )

    assert result.returncode == 3
    assert f"{tmp_path / 'broken.yaml'}:4: key 'users' unknown key" in result.stderr


def test_a_foreign_host_is_refused_before_any_request(tmp_path: Path) -> None:
    target = write_target(tmp_path)
    env = clean_env(RELEASEGATE_TARGET=str(target), RG_TEST_TOKEN=TOKEN)

    result = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", "https://prod.example.test", "--csv", "out"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )

    assert result.returncode == 3
    assert "refusing load to 'prod.example.test'" in result.stderr
    stats = tmp_path / "out_stats.csv"  # Locust opens it before the check runs: it must stay empty
    assert not stats.exists() or stats.read_text(encoding="utf-8").strip() == ""
    assert TOKEN not in result.stdout + result.stderr


ON_STOP = """\
import json, sys
import gevent
from gevent.pool import Pool
import locust
from locust.env import Environment
from locust.util.load_locustfile import load_locustfile
users, _ = load_locustfile(sys.argv[1])
pacer = users["ArrivalUser"]
pacer.host = "https://127.0.0.1:9"
env = Environment(user_classes=[pacer], events=locust.events)
seen = []
env.events.request.add_listener(lambda request_type, name, exception=None, **_: seen.append([request_type, name, exception is not None]))
user = pacer(env)
user.planned, user.fired = 10, 7  # stopped with 3 arrivals of the schedule still due
user.pool = Pool(4)
for _ in range(2):
    user.pool.spawn(gevent.sleep, 60)  # two iterations in flight
gevent.sleep(0)
user.on_stop()
gevent.sleep(0.2)
print(json.dumps({"seen": seen, "left": len(user.pool)}))
"""


def test_the_pacer_reports_unfired_arrivals_and_cut_iterations_at_stop(tmp_path: Path) -> None:
    (tmp_path / "arrivals.yaml").write_text(
        "description: d\nopen_model: {arrival_rate_per_s: 5, max_vus: 4, duration_s: 2}\nmax_duration_s: 10\n", encoding="utf-8"
    )
    env = clean_env(RELEASEGATE_PROFILES_DIR=str(tmp_path), RELEASEGATE_PROFILE="arrivals", RELEASEGATE_TOKEN=TOKEN)
    result = subprocess.run(
        [sys.executable, "-c", ON_STOP, str(LOCUSTFILE)], env=env, cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["seen"] == [["ARRIVAL", "dropped iteration", True]] * 3 + [["ARRIVAL", "iteration cut at stop", True]] * 2
    assert found["left"] == 0
