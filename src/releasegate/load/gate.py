"""The load stage inside the gate's pytest run: :class:`LoadRuns`, shared by the load checks.

``load_runs.get("smoke")`` runs the smoke profile the first time it is asked for and hands the
same :class:`~releasegate.load.runner.LoadRun` to every later caller (``load.smoke`` judges its
thresholds, ``infra.capacity`` its resource use), so the deployment is loaded once per gate run,
not once per check. Around the load it takes infra.capacity's resource snapshots when the target
names a metrics source (``load.metrics`` or ``prometheus``). Live progress goes to the terminal
while the check's own output is captured. Artifacts go to ``<report dir>/load-<profile>/``,
scrubbed of the target's secrets, and the main ones are attached to Allure.

Locust itself runs in a subprocess (:mod:`releasegate.load.runner`); this process never imports it.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from releasegate._exceptions import ConfigError, ProbeError
from releasegate.load.profiles import LoadProfile, load_profile
from releasegate.load.runner import LoadOptions, LoadRun, format_progress, run_profile, selected_profiles
from releasegate.plugin import GateRun, gate_run
from releasegate.report import allure as allure_adapter

CAPACITY_CHECK = "infra.capacity"
# Attached to Allure besides the evidence: what a person opens first.
ATTACHED = {"report.html": "html", "latency.png": "png", "locust_stats.csv": "csv", "locust_failures.csv": "csv", "results.json": "json"}


def profiles_dir(run: GateRun, suite: Path) -> Path:
    """The target's ``load.profiles_dir`` (relative to the target file), else the suite's loadtests/profiles."""
    load = run.target.target.load
    if load is not None and load.profiles_dir is not None:
        return (run.target.path.parent / load.profiles_dir).resolve()
    return suite / "loadtests" / "profiles"


def profiles_of(config: pytest.Config) -> list[str]:
    """The profiles this gate run loads (for parametrizing): target ``load.profiles`` + ``--only load.<name>``."""
    run = gate_run(config)
    if run is None or run.target.target.load is None:
        return []
    return selected_profiles(list(run.target.target.load.profiles), run.only)


class LoadRuns:
    """Each selected profile's :class:`LoadRun`, run on first request and cached for the session."""

    def __init__(self, config: pytest.Config, run: GateRun, suite: Path) -> None:
        self._config = config
        self._run = run
        self._suite = suite
        self._done: dict[str, LoadRun | ConfigError] = {}

    @property
    def profiles(self) -> list[str]:
        """The profiles of this gate run, in order; ``profiles[0]`` is the one infra.capacity judges."""
        return profiles_of(self._config)

    def get(self, profile: str) -> LoadRun:
        """The run of ``profile``; ConfigError (every time) when it cannot even start: unknown profile, refused host."""
        if profile not in self._done:
            try:
                self._done[profile] = self._load(profile)
            except ConfigError as exc:
                self._done[profile] = exc
        done = self._done[profile]
        if isinstance(done, ConfigError):
            raise done
        return done

    def _load(self, name: str) -> LoadRun:
        run = self._run
        profile: LoadProfile = load_profile(name, profiles_dir(run, self._suite))
        options = LoadOptions.from_env()
        out_dir = run.report_dir / f"load-{name}"
        shutil.rmtree(out_dir, ignore_errors=True)  # a reused report folder must not show an earlier run's files
        probe = run.gates.gates.probe
        # Snapshots only serve infra.capacity: a run that does not judge it need not read metrics.
        wanted = CAPACITY_CHECK in run.selected
        before, snapshot_error = _snapshot(run, probe.timeout_s, probe.max_body_bytes) if wanted else (None, None)
        load_run = run_profile(
            run.target,
            run.gates.gates.load,
            profile,
            gates_path=run.gates.path,
            locustfile=self._suite / "loadtests" / "locustfile.py",
            profiles_dir=profiles_dir(run, self._suite),
            out_dir=out_dir,
            options=options,
            time_left_s=run.deadline - time.monotonic(),
            progress=self._progress(name),
        )
        measured = wanted and load_run.summary is not None
        after, after_error = _snapshot(run, probe.timeout_s, probe.max_body_bytes) if measured else (None, None)
        load_run.before, load_run.after = before, after
        load_run.snapshot_error = snapshot_error or after_error
        # The subprocess removed every whole secret from its files; the gate scrubs the report
        # folder (fragments included) once more when it writes the verdict.
        return load_run

    def _progress(self, profile: str) -> Any:
        reporter = self._config.pluginmanager.get_plugin("terminalreporter")
        capture = self._config.pluginmanager.get_plugin("capturemanager")
        redactor = self._run.redactor

        def show(event: Any) -> None:
            line = format_progress(profile, event)
            if line is None or reporter is None:
                return
            # Live: the check's own output is captured, progress must reach the terminal now.
            if capture is not None:
                with capture.global_and_fixture_disabled():
                    reporter.ensure_newline()
                    reporter.write_line(redactor.text(line))
            else:
                reporter.write_line(redactor.text(line))

        return show

    def attach(self, load_run: LoadRun) -> None:
        """The run's main artifacts, attached to the running check's Allure result (by path)."""
        for path in load_run.artifacts:
            kind = ATTACHED.get(path.name)
            if kind is not None:
                _attach_file(path, f"{load_run.profile.name}: {path.name}", kind)


def _snapshot(run: GateRun, timeout_s: float, max_body_bytes: int) -> tuple[Any, str | None]:
    """infra.capacity's snapshot (None without a metrics source, or with its capacity module missing)."""
    try:
        from releasegate.load import capacity
    except ImportError:
        return None, None
    try:
        return capacity.snapshot_target(run.target, timeout_s=timeout_s, max_body_bytes=max_body_bytes), None
    except ProbeError as exc:
        return None, str(exc)


def _attach_file(path: Path, name: str, kind: str) -> None:
    allure = allure_adapter.allure
    if allure is None:
        return
    types = {"html": "HTML", "png": "PNG", "csv": "CSV", "json": "JSON"}
    allure.attach.file(str(path), name=name, attachment_type=getattr(allure.attachment_type, types[kind]))
