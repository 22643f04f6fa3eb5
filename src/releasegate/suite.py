"""Where the gate suite lives: checks/, loadtests/, scenarios/ and the default gates.yaml.

They travel inside the installed wheel (``releasegate/_suite``), are found in a source
checkout, or in the working directory, or are named with ``--suite DIR`` /
``RELEASEGATE_SUITE``; the first that exists wins, in this order: flag, environment,
working directory, installed copy, checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

from releasegate._exceptions import ConfigError, Problem
from releasegate.results import Stage

STAGE_DIRS: dict[Stage, str] = {"pre-deploy": "predeploy", "post-deploy": "postdeploy", "canary": "canary", "load": "load"}
_PACKAGE = Path(__file__).resolve().parent


def _is_suite(path: Path) -> bool:
    return (path / "checks").is_dir() and (path / "gates.yaml").is_file()


def find_suite(explicit: Path | None = None) -> Path:
    if explicit is not None:
        if not _is_suite(explicit):
            raise ConfigError(
                [
                    Problem(
                        str(explicit),
                        None,
                        "--suite",
                        "not a releasegate suite (needs checks/ and gates.yaml)",
                        "name the folder that holds checks/ and gates.yaml",
                    )
                ]
            )
        return explicit.resolve()
    from_env = os.environ.get("RELEASEGATE_SUITE")
    if from_env:
        if not _is_suite(Path(from_env)):
            raise ConfigError(
                [
                    Problem(
                        from_env,
                        None,
                        "RELEASEGATE_SUITE",
                        "not a releasegate suite (needs checks/ and gates.yaml)",
                        "point RELEASEGATE_SUITE at the folder that holds checks/ and gates.yaml, or unset it",
                    )
                ]
            )
        return Path(from_env).resolve()
    for candidate in (Path.cwd(), _PACKAGE / "_suite", _PACKAGE.parents[1]):
        if _is_suite(candidate):
            return candidate.resolve()
    raise ConfigError(
        [
            Problem(
                "checks/",
                None,
                "",
                "cannot find the gate suite",
                "run from a releasegate checkout, reinstall the package, or pass --suite DIR",
            )
        ]
    )


def stage_dir(suite: Path, stage: Stage) -> Path:
    return suite / "checks" / STAGE_DIRS[stage]


def default_gates(suite: Path) -> Path:
    return suite / "gates.yaml"
