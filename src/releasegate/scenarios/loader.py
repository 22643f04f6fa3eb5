"""Read a scenario folder: workflows (<dir>/*.yaml), drivers (<dir>/drivers/*.yaml) and golden
sets (<dir>/golden/*.yaml), every problem a ConfigError naming file:line, key and fix."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from releasegate._exceptions import ConfigError, Problem
from releasegate._yaml import LineIndex, load_yaml
from releasegate.config import LoadedTarget, validate_model
from releasegate.scenarios.model import GoldenSet, Scenario


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
    """The target's scenario folder, parsed; None when the target names none."""
    folder = target.scenario_dir
    if folder is None:
        return None
    return load_folder(folder)


def load_folder(folder: Path) -> ScenarioSuite:
    problems: list[Problem] = []
    workflows = _load_all(sorted(folder.glob("*.yaml")), Scenario, problems)
    drivers = _load_all(sorted((folder / "drivers").glob("*.yaml")), Scenario, problems)
    golden: dict[str, LoadedGoldenSet] = {}
    for path in sorted((folder / "golden").glob("*.yaml")):
        try:
            data, lines = load_yaml(path)
            golden[path.stem] = LoadedGoldenSet(path.stem, validate_model(GoldenSet, data, lines, str(path)), path, lines)
        except ConfigError as exc:
            problems += exc.problems
    if problems:
        raise ConfigError(problems)
    return ScenarioSuite(folder=folder, workflows=workflows, drivers=drivers, golden=golden)


def _load_all(paths: list[Path], model: type[Scenario], problems: list[Problem]) -> dict[str, LoadedScenario]:
    loaded: dict[str, LoadedScenario] = {}
    for path in paths:
        try:
            data, lines = load_yaml(path)
            scenario = validate_model(model, data, lines, str(path))
        except ConfigError as exc:
            problems += exc.problems
            continue
        name = scenario.name or path.stem
        loaded[name] = LoadedScenario(name, scenario, path, lines)
    return loaded
