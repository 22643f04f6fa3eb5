"""Retry a probe until it passes or its convergence window closes (goss's --retry-timeout).

Right after a deploy, readiness may take a few seconds to turn green; a gate that judges the
first answer would roll back healthy releases. Time comes in through ``clock`` and ``sleep``
so tests never wait for real.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from releasegate.config import RetryPolicy
from releasegate.results import Finding

MAX_OUTCOMES_KEPT = 20  # evidence stays bounded however fast the attempts are


def until_passed(
    attempt: Callable[[], Finding],
    policy: RetryPolicy,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Finding:
    """Run ``attempt`` until it passes (or warns) or ``policy.timeout_s`` has elapsed; the last finding wins.

    The finding's evidence gains ``attempts`` (how many were made) and ``attempt_outcomes``.
    """
    deadline = clock() + policy.timeout_s
    interval = policy.interval_s
    outcomes: list[str] = []
    while True:
        finding = attempt()
        outcomes.append(finding.outcome)
        remaining = deadline - clock()
        # A warning does not block, so waiting out the window for it would only slow every run.
        if finding.outcome in ("passed", "warned") or remaining <= 0:
            break
        # When the next interval would overshoot the window, wait only until it closes and try once more there.
        sleep(min(interval, remaining))
        interval = min(interval * policy.backoff, policy.max_interval_s)
    if len(outcomes) == 1:
        return finding
    evidence = {**finding.evidence, "attempts": len(outcomes), "attempt_outcomes": outcomes[-MAX_OUTCOMES_KEPT:]}
    summary = finding.summary if finding.outcome == "passed" else f"{finding.summary} (still after {len(outcomes)} attempts)"
    return dataclasses.replace(finding, evidence=evidence, summary=summary)
