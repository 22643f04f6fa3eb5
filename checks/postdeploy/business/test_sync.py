"""Post-deploy business: does real-time collaboration work the way its users meet it?

    business.collaboration  N clients in one conversation see every action of the others, in order, exactly once
    business.sync_latency   an edit by client A reaches client B within the policy's percentile budgets

Both join a conversation that the target's ``sync.setup`` driver scenario prepares (a driver that
fails makes the check ``error``: nothing was measured). Neither retries: a sample is a sample, and
re-running until one passes would only pick the lucky run. Setup and probe together are bounded
by their own budget, clamped to what is left of the run's deadline.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import pytest

from releasegate._exceptions import ProbeError
from releasegate.config import Gates, Identity, LoadedTarget, SyncSettings
from releasegate.plugin import CheckRecorder, gate_run
from releasegate.probes import sync as sync_probe
from releasegate.probes.http import HttpSettings
from releasegate.probes.sync_room import Room, prepare_room
from releasegate.results import Finding
from releasegate.scenarios import ScenarioSuite, jsonpath, runner

T = TypeVar("T")


def _settings(target: LoadedTarget) -> SyncSettings:
    settings = target.target.sync
    if settings is None:
        pytest.skip("the target names no sync section (key: sync)")
    return settings


def _members(check: CheckRecorder, target: LoadedTarget, identities: Sequence[Identity]) -> list[sync_probe.Member]:
    """A member per identity with its token; a missing token concludes error (joining anonymously proves nothing)."""
    members = []
    for identity in identities:
        reason = runner.missing_token_problem(identity, target)
        if reason is not None:
            check.conclude(Finding("error", f"{reason}: sync.identities needs a token for {identity}", observed=reason))
        members.append(sync_probe.Member(identity, target.token_of(identity)))
    return members


async def _prepare(
    target: LoadedTarget, suite: ScenarioSuite, ctx: runner.RunContext, policy: Gates, settings: SyncSettings, setup_s: float
) -> Room:
    """The target's room with every action composed; ProbeError (or DriverFailed) when it cannot be prepared."""
    return await prepare_room(
        suite,
        settings,
        ctx,
        setup_s=setup_s,
        actions=list(settings.actions),
        ca_bundle=target.ca_bundle,
        timeout_s=policy.probe.timeout_s,
        max_frame_bytes=policy.probe.max_body_bytes,
    )


def _seq_reader(settings: SyncSettings) -> sync_probe.SeqOf | None:
    path = settings.seq_path
    if path is None:
        return None
    problem = jsonpath.validate_path(path)
    if problem is not None:
        raise ProbeError(f"sync.seq_path: {problem}")
    return lambda event: jsonpath.resolve(event, path)


def _budgets_s(config: pytest.Config, suite: ScenarioSuite, settings: SyncSettings, probe_s: float) -> tuple[float, float]:
    """(setup driver, setup plus probe), clamped to the run's remaining deadline (the backstop of run_blocking)."""
    driver = suite.drivers.get(settings.setup)
    setup_s = runner.scenario_budget_s(driver.scenario) + runner.CLOSE_GRACE_S if driver is not None else 0.0
    budget = setup_s + probe_s
    run = gate_run(config)
    if run is not None:
        left = run.deadline - time.monotonic()
        setup_s, budget = min(setup_s, left), min(budget, left)
    return setup_s, budget


def _observe(check: CheckRecorder, ctx: runner.RunContext, probe: Callable[[], Awaitable[T]], budget_s: float) -> T:
    """The probe's observation; error when nothing could be measured (with the driver's evidence if setup failed)."""
    try:
        return sync_probe.run_blocking(probe, budget_s)
    except runner.DriverFailed as exc:
        summary = f"could not set up the conversation: {exc}"
        # A driver may have saved a credential (a login's token): scrub what it learned.
        check.conclude(runner.scrubbed(Finding("error", summary, observed=type(exc).__name__, evidence=exc.evidence()), ctx.redactor()))
        raise  # not reached: an error finding raises
    except ProbeError as exc:
        check.conclude(runner.scrubbed(Finding("error", str(exc), observed=type(exc).__name__, evidence={"url": exc.url}), ctx.redactor()))
        raise  # not reached


@pytest.mark.check("business.collaboration")
def test_collaboration(
    check: CheckRecorder,
    request: pytest.FixtureRequest,
    target: LoadedTarget,
    policy: Gates,
    http_settings: HttpSettings,
    scenario_suite: ScenarioSuite,
) -> None:
    settings = _settings(target)
    limits = policy.thresholds.collaboration
    members = _members(check, target, [settings.identities[i % len(settings.identities)] for i in range(limits.clients)])

    ctx = runner.context_for(target, http_settings)
    per_client = limits.rounds * len(settings.actions)
    options = sync_probe.WsOptions(timeout_s=policy.probe.timeout_s)
    probe_s = sync_probe.probe_budget_s(per_client, interval_ms=limits.interval_ms, timeout_ms=limits.timeout_ms, options=options)
    setup_s, budget_s = _budgets_s(request.config, scenario_suite, settings, probe_s)

    async def probe() -> sync_probe.CollaborationObservation:
        seq_of = _seq_reader(settings)
        room = await _prepare(target, scenario_suite, ctx, policy, settings, setup_s)
        return await sync_probe.collaborate(
            room.url,
            members,
            list(settings.actions),
            room.compose,
            rounds=limits.rounds,
            interval_ms=limits.interval_ms,
            timeout_ms=limits.timeout_ms,
            options=room.options,
            seq_of=seq_of,
            seq_path=settings.seq_path,
        )

    observation = _observe(check, ctx, probe, budget_s)
    check.conclude(runner.scrubbed(sync_probe.judge_collaboration(observation), ctx.redactor()))


@pytest.mark.check("business.sync_latency")
def test_sync_latency(
    check: CheckRecorder,
    request: pytest.FixtureRequest,
    target: LoadedTarget,
    policy: Gates,
    http_settings: HttpSettings,
    scenario_suite: ScenarioSuite,
) -> None:
    settings = _settings(target)
    limits = policy.thresholds.sync_latency
    identities = settings.identities
    sender, receiver = _members(check, target, [identities[0], identities[1 % len(identities)]])

    ctx = runner.context_for(target, http_settings)
    options = sync_probe.WsOptions(timeout_s=policy.probe.timeout_s)
    probe_s = sync_probe.probe_budget_s(limits.round_trips, interval_ms=limits.interval_ms, timeout_ms=limits.timeout_ms, options=options)
    setup_s, budget_s = _budgets_s(request.config, scenario_suite, settings, probe_s)

    async def probe() -> sync_probe.LatencyObservation:
        room = await _prepare(target, scenario_suite, ctx, policy, settings, setup_s)
        return await sync_probe.round_trips(
            room.url,
            sender,
            receiver,
            lambda marker: room.compose(settings.latency_action, marker),
            count=limits.round_trips,
            interval_ms=limits.interval_ms,
            timeout_ms=limits.timeout_ms,
            options=room.options,
        )

    observation = _observe(check, ctx, probe, budget_s)
    check.conclude(runner.scrubbed(sync_probe.judge_sync_latency(observation, limits), ctx.redactor()))
