"""Load profiles: ``loadtests/profiles/<name>.yaml`` parsed into a frozen :class:`LoadProfile`.

A profile is a mix of Locust user classes plus stages (a closed model: N concurrent users),
optionally with an open model (a fixed arrival rate of new conversations, so that a slow service
shows up as dropped iterations instead of hiding behind fewer requests). The profile is plain
data: the locustfile's ``ProfileShape`` asks :meth:`LoadProfile.tick_at` what to run at a given
second, so the schedule can be tested over simulated time without importing Locust (whose import
monkey-patches the whole process with gevent).

Every problem in a profile file is a :class:`~releasegate.ConfigError` naming file:line, the key
and what to write instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from releasegate._exceptions import ConfigError, Problem
from releasegate._yaml import LineIndex, YamlPath, dotted, load_yaml
from releasegate.config import LoadedTarget, LoadPolicy, LoadThreshold, validate_model
from releasegate.registry import NAME_PATTERN

# The user classes loadtests/locustfile.py defines (it asserts that this list matches).
KNOWN_USER_CLASSES: tuple[str, ...] = ("ConversationUser", "SyncUser", "ArrivalUser")
# The open-model pacer: one instance, added by the shape while `open_model` runs, never by weight.
ARRIVAL_USER_CLASS = "ArrivalUser"
CLOSED_USER_CLASSES: tuple[str, ...] = tuple(name for name in KNOWN_USER_CLASSES if name != ARRIVAL_USER_CLASS)
# Locust's shape worker calls tick() about once a second, and blocks in start() while users ramp
# up: a stage must outlast its ramp by at least one tick, or the next tick lands in a later stage
# and this one is silently skipped (locust/runners.py shape_worker).
TICK_S = 1.0

Threshold = str | LoadThreshold | list[str | LoadThreshold]


@dataclass(frozen=True)
class Stage:
    """Hold ``users`` for ``duration_s`` seconds, reaching them at ``spawn_rate`` users/s."""

    duration_s: float
    users: int
    spawn_rate: float
    # A subset of the profile's user classes for this stage; None: all of them, by weight.
    user_classes: tuple[str, ...] | None = None


@dataclass(frozen=True)
class OpenModel:
    """New conversations arrive at a fixed rate, whatever the service's latency (k6 arrival-rate)."""

    arrival_rate_per_s: float
    # Iterations in flight at most; an arrival that finds all busy is dropped and counted.
    max_vus: int
    duration_s: float


@dataclass(frozen=True)
class ShapeTick:
    """What Locust should run at one moment: (users, spawn_rate, user class names)."""

    users: int
    spawn_rate: float
    user_classes: tuple[str, ...]


@dataclass(frozen=True)
class LoadProfile:
    name: str
    description: str
    path: Path
    # Class name in the locustfile -> weight among the closed-model users.
    user_classes: dict[str, int]
    stages: tuple[Stage, ...]
    open_model: OpenModel | None
    think_time_s: tuple[float, float]
    sync_think_time_s: tuple[float, float]
    # SyncUsers sharing one conversation (each one's edits reach all of them).
    sync_room_size: int
    # An edit whose event has not come back within this is a failed sample.
    sync_timeout_s: float
    # Upper bound of the whole run, whatever the stages say.
    max_duration_s: float
    # Same shape as gates.yaml load.thresholds; they add to (and override) the policy's.
    thresholds: dict[str, Threshold]
    # Users log in with target.auth.login instead of using the environment's tokens.
    login: bool
    # Worker processes the profile is meant for (0: one process); `--workers` overrides it.
    workers: int

    @property
    def total_duration_s(self) -> float:
        """Planned length of the run: the stages, or the open model if it lasts longer."""
        closed = sum(stage.duration_s for stage in self.stages)
        arrivals = self.open_model.duration_s if self.open_model is not None else 0.0
        return min(max(closed, arrivals), self.max_duration_s)

    def tick_at(self, run_time_s: float, *, cap_s: float | None = None) -> ShapeTick | None:
        """What to run ``run_time_s`` seconds into the run; None once it is over (or past ``cap_s``)."""
        end = self.total_duration_s if cap_s is None else min(self.total_duration_s, cap_s)
        if run_time_s >= end:
            return None
        users, spawn_rate = 0, TICK_S
        classes: tuple[str, ...] = ()
        started = 0.0
        for stage in self.stages:
            if run_time_s < started + stage.duration_s:
                users, spawn_rate = stage.users, stage.spawn_rate
                classes = stage.user_classes if stage.user_classes is not None else tuple(self.user_classes)
                break
            started += stage.duration_s
        if self.open_model is not None and run_time_s < self.open_model.duration_s:
            users, classes = users + 1, (*classes, ARRIVAL_USER_CLASS)
        return ShapeTick(users, spawn_rate, tuple(classes))


# --------------------------------------------------------------------------- the file format


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


def _pair(value: tuple[float, float]) -> tuple[float, float]:
    low, high = value
    if low < 0 or high < low:
        raise ValueError("must be [min, max] seconds with 0 <= min <= max")
    if high > 3600:
        raise ValueError("must be at most 3600 seconds")
    return value


class _StageFile(_Strict):
    duration_s: float = Field(gt=0, le=86_400)
    users: int = Field(ge=0, le=1_000_000)
    spawn_rate: float = Field(gt=0, le=10_000)
    user_classes: list[str] | None = Field(default=None, min_length=1)


class _OpenModelFile(_Strict):
    arrival_rate_per_s: float = Field(gt=0, le=10_000)
    max_vus: int = Field(ge=1, le=100_000)
    duration_s: float = Field(gt=0, le=86_400)


class _ProfileFile(_Strict):
    description: str = Field(min_length=1)
    user_classes: dict[str, int] = Field(default_factory=dict)
    stages: list[_StageFile] = Field(default_factory=list)
    open_model: _OpenModelFile | None = None
    think_time_s: tuple[float, float] = (1.0, 3.0)
    sync_think_time_s: tuple[float, float] | None = None
    sync_room_size: int = Field(default=2, ge=1, le=100)
    sync_timeout_s: float = Field(default=5.0, gt=0, le=300)
    max_duration_s: float = Field(gt=0, le=86_400)
    thresholds: dict[str, Any] = Field(default_factory=dict)
    login: bool = False
    workers: int = Field(default=0, ge=0, le=1024)

    @field_validator("think_time_s", "sync_think_time_s")
    @classmethod
    def _ordered(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        return None if value is None else _pair(value)


# --------------------------------------------------------------------------- loading


def profile_names(folder: Path) -> list[str]:
    """The profiles in ``folder`` (``<name>.yaml``, name in lower case, digits and underscores)."""
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.yaml") if p.is_file() and NAME_PATTERN.fullmatch(p.stem))


def profiles_folder(target: LoadedTarget | None) -> Path:
    """``target.load.profiles_dir`` (relative to the target file), else the suite's loadtests/profiles."""
    if target is not None and target.target.load is not None and target.target.load.profiles_dir is not None:
        return (target.path.parent / target.target.load.profiles_dir).resolve()
    from releasegate.suite import find_suite

    return find_suite() / "loadtests" / "profiles"


def load_profile(name: str, folder: Path) -> LoadProfile:
    """Parse ``<folder>/<name>.yaml``; every problem (all at once) as one ConfigError."""
    if not NAME_PATTERN.fullmatch(name):
        raise ConfigError(
            [
                Problem(
                    str(folder),
                    None,
                    "profile",
                    f"{name!r} is not a profile name",
                    "use lower-case letters, digits and underscores (the file loadtests/profiles/<name>.yaml)",
                )
            ]
        )
    path = folder / f"{name}.yaml"
    if not path.is_file():
        available = profile_names(folder)
        listed = ", ".join(available) if available else f"none: {folder} holds no <name>.yaml"
        raise ConfigError([Problem(str(path), None, "profile", f"no load profile {name!r}", f"use one of: {listed}")])
    data, lines = load_yaml(path)
    shown = str(path)
    parsed = validate_model(_ProfileFile, data, lines, shown)
    problems: list[Problem] = []
    thresholds = _thresholds(parsed.thresholds, lines, shown, problems)
    problems += _schedule_problems(parsed, lines, shown)
    if problems:
        raise ConfigError(problems)
    return LoadProfile(
        name=name,
        description=parsed.description,
        path=path.resolve(),
        user_classes=dict(parsed.user_classes),
        stages=tuple(
            Stage(s.duration_s, s.users, s.spawn_rate, None if s.user_classes is None else tuple(s.user_classes)) for s in parsed.stages
        ),
        open_model=None
        if parsed.open_model is None
        else OpenModel(parsed.open_model.arrival_rate_per_s, parsed.open_model.max_vus, parsed.open_model.duration_s),
        think_time_s=parsed.think_time_s,
        sync_think_time_s=parsed.sync_think_time_s or parsed.think_time_s,
        sync_room_size=parsed.sync_room_size,
        sync_timeout_s=parsed.sync_timeout_s,
        max_duration_s=parsed.max_duration_s,
        thresholds=thresholds,
        login=parsed.login,
        workers=parsed.workers,
    )


def _thresholds(raw: dict[str, Any], lines: LineIndex, shown: str, problems: list[Problem]) -> dict[str, Threshold]:
    """Each entry checked as gates.yaml's load.thresholds would be, located at its own line."""
    checked: dict[str, Threshold] = {}
    for key, value in raw.items():
        try:
            checked[key] = LoadPolicy.model_validate({"thresholds": {key: value}}).thresholds[key]
        except ValidationError as exc:
            error = exc.errors()[0]
            message = str(error["msg"]).removeprefix("Value error, ")
            path: YamlPath = ("thresholds", key)
            problems.append(
                Problem(
                    shown,
                    lines.line(path),
                    dotted(path),
                    message,
                    'write metric: "<condition>" as in gates.yaml load.thresholds, e.g. http_p95_ms: "<800" or rps: ">=2"',
                )
            )
    return checked


def _schedule_problems(parsed: _ProfileFile, lines: LineIndex, shown: str) -> list[Problem]:
    """What a valid schema cannot see: class names, the stage/ramp trap, durations within the bound."""
    problems: list[Problem] = []

    def add(path: YamlPath, message: str, fix: str) -> None:
        problems.append(Problem(shown, lines.line(path), dotted(path), message, fix))

    for name, weight in parsed.user_classes.items():
        if name == ARRIVAL_USER_CLASS:
            add(("user_classes", name), f"{name} is the open-model pacer, not a weighted user", "remove it and add `open_model:` instead")
        elif name not in KNOWN_USER_CLASSES:
            add(("user_classes", name), f"unknown user class {name!r}", f"use one of: {', '.join(CLOSED_USER_CLASSES)}")
        elif weight < 1:
            add(("user_classes", name), f"weight {weight} must be at least 1", "remove the class instead of weighting it 0")

    if not parsed.stages and parsed.open_model is None:
        add(("stages",), "the profile runs nothing", "add `stages:` (concurrent users) or `open_model:` (an arrival rate)")
    if parsed.stages and not parsed.user_classes:
        add(("user_classes",), "stages need users to run", "add `user_classes: {ConversationUser: 3, SyncUser: 1}`")

    previous = 0
    for index, stage in enumerate(parsed.stages):
        for name in stage.user_classes or []:
            if name not in parsed.user_classes:
                add(
                    ("stages", index, "user_classes"),
                    f"{name!r} is not one of the profile's user_classes",
                    f"use one of: {', '.join(parsed.user_classes) or 'nothing yet: fill user_classes first'}",
                )
        pacer = 1 if index == 0 and parsed.open_model is not None else 0
        ramp_s = abs(stage.users + pacer - previous) / stage.spawn_rate
        if stage.duration_s < ramp_s + TICK_S:
            need_rate = math.ceil(abs(stage.users + pacer - previous) / max(stage.duration_s - TICK_S, 0.1) * 10) / 10
            add(
                ("stages", index, "duration_s"),
                f"the stage lasts {stage.duration_s:g} s but ramping from {previous} to {stage.users + pacer} users at "
                f"{stage.spawn_rate:g}/s takes {ramp_s:g} s: Locust would skip what follows",
                f"set duration_s to at least {math.ceil(ramp_s + TICK_S)} or spawn_rate to at least {need_rate:g}",
            )
        previous = stage.users + pacer

    closed = sum(stage.duration_s for stage in parsed.stages)
    if closed > parsed.max_duration_s:
        add(
            ("max_duration_s",),
            f"the stages last {closed:g} s, longer than max_duration_s {parsed.max_duration_s:g}",
            "shorten the stages or raise max_duration_s",
        )
    if parsed.open_model is not None and parsed.open_model.duration_s > parsed.max_duration_s:
        add(
            ("open_model", "duration_s"),
            f"{parsed.open_model.duration_s:g} s is longer than max_duration_s {parsed.max_duration_s:g}",
            "shorten the open model or raise max_duration_s",
        )
    return problems
