"""The sync probes against the live reference deployment: healthy, slow-sync and sync-drop.

One service start per deployment (a module-scoped fixture, parametrized; pytest runs every test of
one deployment before starting the next). A test about one deployment only skips the others rather
than re-parametrizing the fixture, which would start that deployment a second time. The probe core is driven directly, with a conversation
set up by plain API calls, so these tests do not depend on the scenario engine; one gate run per
deployment then goes through ``releasegate run`` end to end, driver scenario and all.

Timing is asserted only as behaviour with a wide tolerance: slow-sync holds every event back by
400 ms, so the measured p50 must move by about that much, not be fast.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from releasegate._exceptions import ProbeError
from releasegate.cli import main
from releasegate.config import LoadedTarget, SyncLatencyThresholds, load_target
from releasegate.probes import sync
from releasegate.probes.api import ApiClient
from releasegate.probes.http import HttpSettings, ssl_context
from releasegate.reference.demo import SECOND_TOKEN_ENV, TOKEN_ENV, running

# The demo target's actions (reference/demo.py BUSINESS_SECTIONS), composed without the template engine.
ACTIONS = {
    "message": {"type": "message", "text": "releasegate sync NONCE"},
    "typing": {"type": "typing", "typing": True, "nonce": "NONCE"},
    "presence": {"type": "presence", "status": "online", "nonce": "NONCE"},
    "edit": {"type": "edit", "doc": "main.py", "text": "marker = 'NONCE'", "nonce": "NONCE"},
}
SECOND_USER = "bob"  # the demo's second identity
# Backstop of run_blocking in these tests: far beyond what any probe here needs.
BUDGET_S = 30.0


def compose(kind: str, marker: str) -> str:
    return json.dumps(ACTIONS[kind]).replace("NONCE", marker)


def seq_of(event: Any) -> Any:
    return event["seq"]


@dataclass(frozen=True)
class Expected:
    collaboration: str
    sync_latency: str
    p50_ms: tuple[float, float] | None  # None: every event lost


EXPECTED = {
    "healthy": Expected("passed", "passed", (0.0, 400.0)),
    "slow-sync": Expected("passed", "failed", (400.0, 600.0)),  # +400 ms per event; collaboration's 3 s window absorbs it
    "sync-drop": Expected("failed", "failed", None),  # events reach only their sender
}


@dataclass(frozen=True)
class Live:
    fault: str
    target_path: Path
    gates_path: Path
    target: LoadedTarget
    primary: sync.Member
    second: sync.Member
    http: HttpSettings

    @property
    def expected(self) -> Expected:
        return EXPECTED[self.fault]

    def options(self) -> sync.WsOptions:
        return sync.WsOptions(timeout_s=5.0, ssl=ssl_context(self.target.ca_bundle))

    async def conversation(self) -> str:
        """A new conversation owned by primary with second taking part: its WebSocket URL."""
        async with ApiClient(self.target.target.base_url, self.http) as api:
            created = await api.request("POST", "/api/v1/conversations", token=self.primary.token, json={"title": "sync probe test"})
            assert created.status == 201, created.text()
            cid = created.json()["id"]
            added = await api.request(
                "POST", f"/api/v1/conversations/{cid}/participants", token=self.primary.token, json={"username": SECOND_USER}
            )
            assert added.status == 200, added.text()
        return f"{self.target.target.ws_url}?conversation={cid}"


@pytest.fixture(scope="module", params=list(EXPECTED))
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    fault: str = request.param
    with running([] if fault == "healthy" else [fault]) as deployment:
        target = load_target(deployment.target_path)
        gates = tmp_path_factory.mktemp("gates") / "gates.yaml"
        # Short windows keep the lost-everything runs quick; the default min_samples (50) is lowered with them.
        gates.write_text(
            "probe: {timeout_s: 5, retry: {timeout_s: 0}}\n"
            "min_samples: {business.sync_latency: 30}\n"
            "thresholds:\n"
            "  collaboration: {timeout_ms: 1000}\n"
            "  sync_latency: {round_trips: 30, timeout_ms: 1000}\n",
            encoding="utf-8",
        )
        yield Live(
            fault=fault,
            target_path=deployment.target_path,
            gates_path=gates,
            target=target,
            primary=sync.Member("primary", os.environ[TOKEN_ENV]),
            second=sync.Member("second", os.environ[SECOND_TOKEN_ENV]),
            http=HttpSettings(timeout_s=5.0, max_body_bytes=1_048_576, verify=ssl_context(target.ca_bundle)),
        )


def test_collaboration_of_three_clients(live: Live) -> None:
    # Given three clients (primary, second, primary) in one conversation
    async def probe() -> sync.CollaborationObservation:
        url = await live.conversation()
        members = [live.primary, live.second, live.primary]
        return await sync.collaborate(
            url, members, list(ACTIONS), compose, rounds=2, interval_ms=30, timeout_ms=1500, options=live.options(), seq_of=seq_of
        )

    # When each sends every kind of action twice
    finding = sync.judge_collaboration(sync.run_blocking(probe, BUDGET_S))

    # Then the verdict is the deployment's
    assert finding.outcome == live.expected.collaboration, finding.summary
    assert finding.evidence["samples"] == 3 * 8 * 2
    if live.fault == "sync-drop":
        assert finding.observed["lost"] == 48  # nobody saw anyone else's action...
        assert all(client["own_echoes"] == 8 for client in finding.evidence["clients"])  # ...only their own
    else:
        assert finding.observed["deliveries"] == "48/48"
        assert finding.evidence["actions"]["message"] == {"sent": 6, "expected_deliveries": 12, "delivered": 12, "duplicated": 0}
        # The assistant's replies took sequence numbers too; every client saw one unbroken sequence.
        assert all(c["seq_last"] - c["seq_first"] + 1 == c["frames"] for c in finding.evidence["clients"])


def test_sync_latency_open_loop(live: Live) -> None:
    # Given client A (primary) and client B (second) in one conversation
    async def probe() -> sync.LatencyObservation:
        url = await live.conversation()
        return await sync.round_trips(
            url,
            live.primary,
            live.second,
            lambda marker: compose("edit", marker),
            count=40,
            interval_ms=30,
            timeout_ms=1000,
            options=live.options(),
        )

    # When A sends an edit every 30 ms, 40 times
    finding = sync.judge_sync_latency(sync.run_blocking(probe, BUDGET_S), SyncLatencyThresholds())

    # Then the p95 budget (250 ms) decides, and the median shows the deployment's delay
    assert finding.outcome == live.expected.sync_latency, finding.summary
    assert finding.evidence["samples"] == 40
    expected_p50 = live.expected.p50_ms
    if expected_p50 is None:
        assert finding.evidence["lost"] == 40
    else:
        low, high = expected_p50
        assert low <= finding.evidence["p50_ms"] <= high, finding.evidence
        assert finding.evidence["lost"] == 0
    # The sender's own copies are timed too, best effort (the probe stops once B has everything).
    assert finding.evidence["sender_ack"]["samples"] >= 20


@pytest.mark.parametrize("live", ["healthy"], indirect=True)
def test_a_connection_closed_for_sending_too_fast_is_an_error_naming_the_close(live: Live) -> None:

    # Given a sender far above the reference's 50 messages per second
    async def probe() -> sync.LatencyObservation:
        url = await live.conversation()
        compose_edit = lambda marker: compose("edit", marker)  # noqa: E731
        return await sync.round_trips(
            url, live.primary, live.second, compose_edit, count=200, interval_ms=1, timeout_ms=1000, options=live.options()
        )

    finding = sync.judge_sync_latency(sync.run_blocking(probe, BUDGET_S), SyncLatencyThresholds())

    # Then it cannot judge, and says what the server said
    assert finding.outcome == "error"
    assert "closed by the server with 1008" in finding.summary


@pytest.mark.parametrize("live", ["healthy"], indirect=True)
def test_a_refused_join_is_a_probe_error_naming_the_client(live: Live) -> None:

    async def probe() -> sync.CollaborationObservation:
        url = await live.conversation()
        stranger = sync.Member("second", "not-a-valid-token-at-all")
        return await sync.collaborate(
            url, [live.primary, stranger], ["edit"], compose, rounds=1, interval_ms=30, timeout_ms=500, options=live.options()
        )

    with pytest.raises(ProbeError, match=r"client 1 \(second\) could not join: HTTP 401"):
        sync.run_blocking(probe, BUDGET_S)


def test_the_gate_run_end_to_end(live: Live, tmp_path: Path) -> None:
    # Given the demo target (sync.setup: the shared_conversation driver) and a fast policy
    code = main(
        [
            "run",
            "--stage",
            "post-deploy",
            "--target",
            str(live.target_path),
            "--gates",
            str(live.gates_path),
            "--report-dir",
            str(tmp_path),
            "--only",
            "business.collaboration",
            "business.sync_latency",
        ]
    )
    verdict = json.loads((tmp_path / "verdict.json").read_text(encoding="utf-8"))
    checks = {c["id"]: c for c in verdict["checks"]}

    # Then each check concludes as the deployment deserves, and the decision follows
    outcomes = {check_id: c["outcome"] for check_id, c in checks.items()}
    assert outcomes == {"business.collaboration": live.expected.collaboration, "business.sync_latency": live.expected.sync_latency}, [
        c["summary"] for c in checks.values()
    ]
    assert (code, verdict["decision"]) == ((0, "promote") if live.fault == "healthy" else (1, "rollback"))
    assert checks["business.collaboration"]["evidence"]["identities"] == ["primary", "second", "primary"]
    assert checks["business.sync_latency"]["evidence"]["samples"] == 30


@pytest.mark.parametrize("live", ["healthy"], indirect=True)
def test_a_missing_second_token_is_an_error_never_a_pass(live: Live, tmp_path: Path) -> None:
    # Given a target that names no second identity, while sync joins as primary and second
    target = tmp_path / "target.yaml"
    text = live.target_path.read_text(encoding="utf-8")
    assert f"  second_token_env: {SECOND_TOKEN_ENV}\n" in text
    target.write_text(text.replace(f"  second_token_env: {SECOND_TOKEN_ENV}\n", ""), encoding="utf-8")

    # When the gate runs both checks
    args = ["--target", str(target), "--gates", str(live.gates_path), "--report-dir", str(tmp_path / "report")]
    code = main(["run", "--stage", "post-deploy", *args, "--only", "business.collaboration", "business.sync_latency"])
    verdict = json.loads((tmp_path / "report" / "verdict.json").read_text(encoding="utf-8"))

    # Then neither passes: they could not join as second, and the gate holds
    assert (code, verdict["decision"]) == (2, "hold")
    assert [(c["outcome"], c["summary"]) for c in verdict["checks"]] == [
        ("error", "acts as second but auth.second_token_env is not set: sync.identities needs a token for second")
    ] * 2


@pytest.mark.parametrize("live", ["healthy"], indirect=True)
def test_a_target_without_a_sync_section_skips_both_checks(live: Live, tmp_path: Path) -> None:
    text = live.target_path.read_text(encoding="utf-8")
    start, end = text.index("\nsync:\n"), text.index("\nconsistency:")
    target = tmp_path / "target.yaml"
    target.write_text(text[:start] + text[end:], encoding="utf-8")

    args = ["--target", str(target), "--gates", str(live.gates_path), "--report-dir", str(tmp_path / "report")]
    main(["run", "--stage", "post-deploy", *args, "--only", "business.collaboration", "business.sync_latency"])
    verdict = json.loads((tmp_path / "report" / "verdict.json").read_text(encoding="utf-8"))

    assert [(c["outcome"], c["summary"]) for c in verdict["checks"]] == [("skipped", "the target names no sync section (key: sync)")] * 2


@pytest.mark.parametrize("live", ["healthy"], indirect=True)
def test_the_probe_is_cut_at_the_runs_deadline_not_after_it(live: Live, tmp_path: Path) -> None:
    # Given a run deadline of 5 s and a latency plan that needs 8 s of sending alone
    gates = tmp_path / "gates.yaml"
    gates.write_text(
        "deadline_s: 5\nprobe: {timeout_s: 5, retry: {timeout_s: 0}}\nthresholds:\n  sync_latency: {round_trips: 80, interval_ms: 100}\n",
        encoding="utf-8",
    )

    args = ["--target", str(live.target_path), "--gates", str(gates), "--report-dir", str(tmp_path / "report")]
    main(["run", "--stage", "post-deploy", *args, "--only", "business.sync_latency"])
    verdict = json.loads((tmp_path / "report" / "verdict.json").read_text(encoding="utf-8"))

    # Then the check could not judge (a healthy service measured past the deadline would have passed)
    (row,) = verdict["checks"]
    assert row["outcome"] == "error", row["summary"]
    assert "did not finish within its total budget" in row["summary"]
