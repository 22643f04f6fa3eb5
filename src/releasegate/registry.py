"""The one list of check ids.

A check id is an API: dashboards, waivers and gates.yaml overrides refer to it, so an id is
never renamed silently. Each entry names the stage it runs in, its family (one probe module
per family), its default severity, and the fault of the reference deployment that proves it
(the check must pass on the healthy deployment and fail on that fault).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from releasegate.results import Severity, Stage


@dataclass(frozen=True)
class CheckSpec:
    id: str
    stage: Stage
    family: str
    severity: Severity
    description: str
    # The reference-deployment fault that breaks this check; None means "not proven yet".
    fault: str | None


CHECKS: tuple[CheckSpec, ...] = (
    CheckSpec(
        id="health.liveness",
        stage="post-deploy",
        family="health",
        severity="blocking",
        description="The liveness endpoint answers 2xx and its body, if any, does not say fail.",
        fault="liveness-fail",
    ),
    CheckSpec(
        id="health.readiness",
        stage="post-deploy",
        family="health",
        severity="blocking",
        description="The readiness endpoint answers 2xx (after the convergence window) and does not say fail.",
        fault="db-down",
    ),
    CheckSpec(
        id="health.deep",
        stage="post-deploy",
        family="health",
        severity="blocking",
        description="The deep health document (health+json, Spring actuator) has no failed component; a warn component is a warning.",
        fault="db-down",
    ),
    CheckSpec(
        id="health.release_id",
        stage="post-deploy",
        family="health",
        severity="blocking",
        description="The deployed version or releaseId equals the expected release.",
        fault="wrong-release",
    ),
)

_BY_ID: dict[str, CheckSpec] = {spec.id: spec for spec in CHECKS}
assert len(_BY_ID) == len(CHECKS), "duplicate check id in the registry"


def get(check_id: str) -> CheckSpec:
    """The spec of a registered id; KeyError for anything else."""
    return _BY_ID[check_id]


def is_registered(check_id: str) -> bool:
    return check_id in _BY_ID


def matches(pattern: str, check_id: str) -> bool:
    """Whether an id pattern from gates.yaml or ``--only`` selects ``check_id``.

    A pattern is an exact id, a dotted prefix (``security`` selects ``security.tls.protocols``
    but ``health.live`` does not select ``health.liveness``) or a glob (``security.tls.*``).
    """
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatchcase(check_id, pattern)
    return check_id == pattern or check_id.startswith(pattern.rstrip(".") + ".")


def select(pattern: str) -> list[CheckSpec]:
    """Every registered check a pattern selects (empty when it selects nothing)."""
    return [spec for spec in CHECKS if matches(pattern, spec.id)]


def ids() -> list[str]:
    return [spec.id for spec in CHECKS]
