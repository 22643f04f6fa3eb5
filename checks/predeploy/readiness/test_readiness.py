"""Pre-deploy readiness: the schema is migrated, the oldest client still works, the build is the
release being gated, and the previous release can be restored.

The first three read the target's version document (health.version, else health.deep), retried
within probe.retry like the health checks; readiness.rollback runs the target's rollback proofs.
"""

from __future__ import annotations

import ssl
import time

import pytest

from releasegate._exceptions import ProbeError
from releasegate.config import Gates, LoadedTarget
from releasegate.plugin import CheckRecorder, gate_run
from releasegate.probes import health, readiness
from releasegate.probes.http import HttpSettings, judged_get, ssl_context


def _version_url(target: LoadedTarget) -> str:
    url = readiness.version_url(target.target)
    if url is None:
        pytest.skip("the target names no health.version or health.deep path")
    return url


@pytest.mark.check("readiness.migrations")
def test_migrations(check: CheckRecorder, target: LoadedTarget, policy: Gates, http_settings: HttpSettings) -> None:
    wanted = policy.thresholds.readiness.expected_schema_version
    judge = lambda answer: readiness.judge_migrations(answer, expected_schema_version=wanted)  # noqa: E731
    check.conclude(judged_get(_version_url(target), http_settings, judge, retry=policy.probe.retry))


@pytest.mark.check("readiness.client_compat")
def test_client_compat(check: CheckRecorder, target: LoadedTarget, policy: Gates, http_settings: HttpSettings) -> None:
    url = _version_url(target)
    oldest = policy.thresholds.readiness.oldest_client_version
    if oldest is None:
        check.conclude(readiness.unconfigured_client_compat())
        return
    judge = lambda answer: readiness.judge_client_compat(answer, oldest_client_version=oldest)  # noqa: E731
    check.conclude(judged_get(url, http_settings, judge, retry=policy.probe.retry))


@pytest.mark.check("readiness.version")
def test_version(
    check: CheckRecorder, target: LoadedTarget, policy: Gates, http_settings: HttpSettings, expected_release: str | None
) -> None:
    if expected_release is None:
        pytest.skip("no expected release: set expected_release in the target (key: expected_release) or pass --expect-release")
    judge = lambda answer: health.judge_release(answer, expected_release)  # noqa: E731
    check.conclude(judged_get(_version_url(target), http_settings, judge, retry=policy.probe.retry))


@pytest.mark.check("readiness.rollback")
def test_rollback(request: pytest.FixtureRequest, check: CheckRecorder, target: LoadedTarget, policy: Gates) -> None:
    rollback = target.target.rollback
    if rollback is None:
        pytest.skip("the target has no rollback section (key: rollback)")
    parts: list[readiness.Part] = []
    if rollback.verify_command is not None:
        command = readiness.command_path(rollback.verify_command, target.path.parent)
        run = gate_run(request.config)
        # The dry run gets its timeout_s, or what is left of the run's deadline if that is less.
        left = rollback.timeout_s if run is None else max(0.0, run.deadline - time.monotonic())
        limit_s = min(rollback.timeout_s, left)
        try:
            parts.append(
                readiness.judge_command(
                    readiness.run_verify_command(command, limit_s=limit_s), timeout_s=rollback.timeout_s, limit_s=limit_s
                )
            )
        except ProbeError as exc:
            parts.append(readiness.command_problem(command, str(exc)))
    if rollback.previous_artifact_url is not None:
        base, ws = target.target.base_url, target.target.ws_url
        url = rollback.previous_artifact_url
        url = url if url.startswith(("http://", "https://")) else base + "/" + url.lstrip("/")
        # The target's trust anchors (the artifact store may share its private CA); the token only where it may go.
        verify: ssl.SSLContext | bool = ssl_context(target.ca_bundle) if url.startswith("https:") else True
        settings = HttpSettings(timeout_s=policy.probe.timeout_s, max_body_bytes=policy.probe.max_body_bytes, verify=verify)
        try:
            parts.append(readiness.judge_artifact(readiness.probe_artifact(url, settings, token=target.token(), base_url=base, ws_url=ws)))
        except ProbeError as exc:
            parts.append(readiness.artifact_problem(url, str(exc)))
    check.conclude(readiness.judge_rollback(parts))
