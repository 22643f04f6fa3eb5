"""infra.capacity: the resources the service used under the first load profile, against the sizing rules.

The load is the one ``load.<profile>`` judges (the ``load_runs`` fixture runs each profile once
per gate run); around it the fixture took resource snapshots from the target's metrics source
(``load.metrics``, or ``prometheus`` when named). This check judges them with
:func:`releasegate.load.capacity.judge_capacity` against gates.yaml's ``load.capacity`` rules,
and reports the headroom and the replicas each of the rules' sizes would need. The load is
sized by its time-weighted mean conversations and users (:func:`releasegate.load.capacity.sizing_load`), not its peaks.
"""

from __future__ import annotations

import pytest

from releasegate._exceptions import ConfigError
from releasegate.config import Gates, LoadedTarget
from releasegate.load import capacity
from releasegate.load.gate import LoadRuns
from releasegate.plugin import CheckRecorder
from releasegate.results import Finding


@pytest.mark.check("infra.capacity")
def test_capacity(check: CheckRecorder, target: LoadedTarget, policy: Gates, load_runs: LoadRuns) -> None:
    load = target.target.load
    if load is None:
        pytest.skip("the target has no load section (key: load)")
    if load.metrics is None and target.target.prometheus is None:
        pytest.skip("the target names no metrics source to measure resources with (load.metrics or prometheus)")
    profile = load.profiles[0]
    try:
        run = load_runs.get(profile)
    except ConfigError as exc:
        check.conclude(Finding("error", f"the load profile {profile} could not start: {exc}", observed="not started"))
        return
    if run.summary is None:
        check.conclude(Finding("error", f"the load profile {profile} did not run: {run.error}", observed="no load"))
        return
    if run.before is None or run.after is None:
        why = run.snapshot_error or "no snapshot was taken"
        check.conclude(Finding("error", f"could not read the service's resources around the load: {why}", observed="no snapshot"))
        return
    summary = run.summary
    conversations, users = capacity.sizing_load(summary)
    finding = capacity.judge_capacity(
        run.before,
        run.after,
        duration_s=summary.duration_s,
        concurrent_conversations=conversations,
        active_users=users,
        p95_ms=summary.http.p95_ms if summary.http is not None else None,
        sla_p95_ms=capacity.sla_p95_ms(policy.load),
        rules=policy.load.capacity,
        replicas=load.replicas,
        cores_per_replica=load.cores_per_replica,
    )
    load_figures = {
        "mean_conversations": summary.mean_conversations,
        "peak_conversations": summary.concurrent_conversations,
        "mean_users": summary.mean_users,
        "peak_users": summary.peak_users,
    }
    evidence = {"profile": profile, "load": load_figures, **finding.evidence}
    check.conclude(Finding(finding.outcome, finding.summary, finding.observed, finding.expected, evidence))
