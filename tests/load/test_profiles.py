"""Load profiles: the shipped ones parse, mistakes are ConfigErrors with file:line, and the
shape's schedule ends on time when played over simulated seconds the way Locust plays it.

Pure data only: nothing here imports Locust (its import would monkey-patch this test process).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from releasegate._exceptions import ConfigError, Problem
from releasegate.config import LoadedTarget, load_target
from releasegate.load.profiles import (
    ARRIVAL_USER_CLASS,
    CLOSED_USER_CLASSES,
    KNOWN_USER_CLASSES,
    TICK_S,
    LoadProfile,
    ShapeTick,
    load_profile,
    profile_names,
    profiles_folder,
)

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "loadtests" / "profiles"
SHIPPED_NAMES = ["enterprise", "small_team", "smoke", "soak", "spike"]

MINIMAL = """\
description: a test profile
user_classes: {ConversationUser: 2, SyncUser: 1}
stages:
  - {duration_s: 5, users: 3, spawn_rate: 3}
max_duration_s: 30
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(folder: Path, name: str) -> list[Problem]:
    with pytest.raises(ConfigError) as caught:
        load_profile(name, folder)
    return caught.value.problems


def simulate(profile: LoadProfile, cap_s: float | None = None) -> tuple[float, list[tuple[float, ShapeTick]]]:
    """Play the schedule as Locust's shape worker does: tick; on a change start() blocks for the
    ramp; the next tick comes one second later at the earliest. Returns the time tick() said
    None, and every tick with its time."""
    now, users, ticks = 0.0, 0, []
    for _ in range(1_000_000):
        tick = profile.tick_at(now, cap_s=cap_s)
        if tick is None:
            return now, ticks
        ramp_s = 0.0
        if not ticks or ticks[-1][1] != tick:
            ramp_s, users = abs(tick.users - users) / tick.spawn_rate, tick.users
        ticks.append((now, tick))
        now += max(TICK_S, ramp_s)
    raise AssertionError("the shape never ended")


def stage_at(profile: LoadProfile, when: float) -> int | None:
    started = 0.0
    for index, stage in enumerate(profile.stages):
        if when < started + stage.duration_s:
            return index
        started += stage.duration_s
    return None


# --------------------------------------------------------------------------- shipped profiles


def test_the_five_shipped_profiles_are_listed() -> None:
    assert profile_names(SHIPPED) == SHIPPED_NAMES


@pytest.mark.parametrize("name", SHIPPED_NAMES)
def test_each_shipped_profile_parses_within_its_bound(name: str) -> None:
    profile = load_profile(name, SHIPPED)
    assert profile.name == name and profile.description
    assert profile.stages or profile.open_model is not None
    assert set(profile.user_classes) <= set(CLOSED_USER_CLASSES)
    assert 0 < profile.total_duration_s <= profile.max_duration_s
    assert profile.think_time_s[0] <= profile.think_time_s[1]


@pytest.mark.parametrize("name", SHIPPED_NAMES)
def test_each_shipped_shape_visits_every_stage_and_ends_by_its_bound(name: str) -> None:
    profile = load_profile(name, SHIPPED)

    ended, ticks = simulate(profile)

    # Ends one tick after the plan at the latest, and never after max_duration_s (+ that tick).
    assert profile.total_duration_s <= ended <= profile.total_duration_s + TICK_S
    assert ended <= profile.max_duration_s + TICK_S
    # No stage skipped by a ramp that outlasted it (Locust's blocking start()).
    visited = {stage_at(profile, when) for when, _ in ticks} - {None}
    assert visited == set(range(len(profile.stages)))
    for when, tick in ticks:
        stage = stage_at(profile, when)
        if stage is not None:
            assert tick.users - (ARRIVAL_USER_CLASS in tick.user_classes) == profile.stages[stage].users


def test_the_smoke_profile_fits_the_reference_rate_limits() -> None:
    smoke = load_profile("smoke", SHIPPED)
    users = smoke.stages[0].users
    conversation_users = users * smoke.user_classes["ConversationUser"] // sum(smoke.user_classes.values())
    # At most ~1.3 requests per task (tool runs poll) per think time: far below 25 req/s.
    assert conversation_users * 1.3 / smoke.think_time_s[0] < 25
    assert users - conversation_users <= 6  # sync connections per identity, two identities
    assert smoke.total_duration_s <= 8 and smoke.open_model is None
    assert smoke.thresholds == {"rps": ">=2"}


def test_the_open_model_adds_one_pacer_while_it_runs() -> None:
    enterprise = load_profile("enterprise", SHIPPED)
    assert enterprise.open_model is not None and enterprise.open_model.arrival_rate_per_s == 20
    assert enterprise.workers > 0

    start, late = enterprise.tick_at(0), enterprise.tick_at(enterprise.open_model.duration_s + 1)
    # The closed cool-down stage runs after the arrivals stopped.

    assert start == ShapeTick(301, 5.0, ("ConversationUser", "SyncUser", ARRIVAL_USER_CLASS))
    assert late is not None and ARRIVAL_USER_CLASS not in late.user_classes and late.users == 100


def test_a_cap_ends_the_run_early() -> None:
    ended, _ = simulate(load_profile("smoke", SHIPPED), cap_s=3)
    assert 3 <= ended <= 3 + TICK_S


def test_an_open_model_only_profile_runs_just_the_pacer(tmp_path: Path) -> None:
    write(tmp_path, "arrivals", "description: d\nopen_model: {arrival_rate_per_s: 5, max_vus: 1, duration_s: 2}\nmax_duration_s: 10\n")
    profile = load_profile("arrivals", tmp_path)

    assert profile.tick_at(0) == ShapeTick(1, TICK_S, (ARRIVAL_USER_CLASS,))
    assert profile.tick_at(2) is None and profile.total_duration_s == 2


def test_stage_user_classes_pick_a_subset(tmp_path: Path) -> None:
    second = "  - {duration_s: 5, users: 2, spawn_rate: 2, user_classes: [SyncUser]}\n"
    write(tmp_path, "mixed", MINIMAL.replace("max_duration_s", second + "max_duration_s"))
    profile = load_profile("mixed", tmp_path)
    assert profile.tick_at(6) == ShapeTick(2, 2.0, ("SyncUser",))
    assert profile.sync_think_time_s == profile.think_time_s == (1.0, 3.0)


def test_the_known_classes_are_the_closed_ones_plus_the_pacer() -> None:
    assert set(KNOWN_USER_CLASSES) == {*CLOSED_USER_CLASSES, ARRIVAL_USER_CLASS}


# --------------------------------------------------------------------------- mistakes


def test_an_unknown_key_names_its_line_and_the_close_match(tmp_path: Path) -> None:
    write(tmp_path, "typo", MINIMAL + "think_time: [1, 2]\n")

    [problem] = problems_of(tmp_path, "typo")

    assert (problem.file, problem.line, problem.key) == (str(tmp_path / "typo.yaml"), 6, "think_time")
    assert "unknown key" in problem.message and "think_time_s" in problem.fix


def test_an_unknown_user_class_names_its_line(tmp_path: Path) -> None:
    write(tmp_path, "who", MINIMAL.replace("SyncUser: 1", "EditorUser: 1"))

    [problem] = problems_of(tmp_path, "who")

    assert (problem.line, problem.key) == (2, "user_classes.EditorUser")
    assert "ConversationUser" in problem.fix


def test_the_pacer_is_not_a_weighted_user(tmp_path: Path) -> None:
    write(tmp_path, "pacer", MINIMAL.replace("SyncUser: 1", "ArrivalUser: 1"))
    [problem] = problems_of(tmp_path, "pacer")
    assert "open_model" in problem.fix


def test_a_stage_may_only_name_the_profile_classes(tmp_path: Path) -> None:
    write(tmp_path, "stage", MINIMAL.replace("spawn_rate: 3}", "spawn_rate: 3, user_classes: [ArrivalUser]}"))
    [problem] = problems_of(tmp_path, "stage")
    assert (problem.line, problem.key) == (4, "stages[0].user_classes")


def test_a_bad_threshold_is_checked_as_gates_yaml_would(tmp_path: Path) -> None:
    write(tmp_path, "limits", MINIMAL + 'thresholds:\n  rps: ">=2"\n  http_p42_ms: "<5"\n  fail_ratio: "below 1%"\n')

    problems = problems_of(tmp_path, "limits")

    assert [(p.line, p.key) for p in problems] == [(8, "thresholds.http_p42_ms"), (9, "thresholds.fail_ratio")]
    assert "unknown metric" in problems[0].message and "http_p95_ms" in problems[0].message


def test_a_stage_shorter_than_its_ramp_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "trap", MINIMAL.replace("{duration_s: 5, users: 3, spawn_rate: 3}", "{duration_s: 5, users: 100, spawn_rate: 10}"))

    [problem] = problems_of(tmp_path, "trap")

    assert (problem.line, problem.key) == (4, "stages[0].duration_s")
    assert "skip" in problem.message and "at least 11" in problem.fix


def test_durations_must_fit_max_duration(tmp_path: Path) -> None:
    text = MINIMAL.replace("max_duration_s: 30", "max_duration_s: 4") + "open_model: {arrival_rate_per_s: 1, max_vus: 2, duration_s: 9}\n"
    write(tmp_path, "long", text)

    problems = problems_of(tmp_path, "long")

    assert {p.key for p in problems} == {"max_duration_s", "open_model.duration_s"}


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("description: d\nmax_duration_s: 5\n", "stages"),
        ("description: d\nstages: [{duration_s: 2, users: 1, spawn_rate: 1}]\nmax_duration_s: 5\n", "user_classes"),
        (MINIMAL.replace("duration_s: 5,", "duration_s: -1,"), "stages[0].duration_s"),
        (MINIMAL + "think_time_s: [3, 1]\n", "think_time_s"),
        (MINIMAL.replace("max_duration_s: 30\n", ""), "max_duration_s"),
    ],
)
def test_incomplete_or_impossible_profiles_are_refused(tmp_path: Path, text: str, key: str) -> None:
    write(tmp_path, "bad", text)
    assert key in {p.key for p in problems_of(tmp_path, "bad")}


def test_an_unknown_profile_lists_the_available_ones() -> None:
    [problem] = problems_of(SHIPPED, "nightly")
    assert "no load profile 'nightly'" in problem.message
    assert "smoke" in problem.fix and "enterprise" in problem.fix


def test_a_name_that_is_not_a_profile_name_is_refused() -> None:
    [problem] = problems_of(SHIPPED, "../gates")
    assert "not a profile name" in problem.message


def test_profiles_folder_is_the_targets_or_the_suites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target_file = tmp_path / "target.yaml"
    target_file.write_text("name: t\nbase_url: https://app.example.test\nload: {profiles_dir: mine}\n", encoding="utf-8")
    with_dir = load_target(target_file)
    target_file.write_text("name: t\nbase_url: https://app.example.test\n", encoding="utf-8")
    without: LoadedTarget = load_target(target_file)
    monkeypatch.delenv("RELEASEGATE_SUITE", raising=False)
    monkeypatch.chdir(REPO)

    assert profiles_folder(with_dir) == (tmp_path / "mine").resolve()
    assert profiles_folder(without) == SHIPPED
    assert profiles_folder(None) == SHIPPED
