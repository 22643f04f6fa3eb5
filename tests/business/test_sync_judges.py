"""The sync judges on synthetic observations: what counts as lost, duplicated, out of order, late.

No network: each test builds what the clients would have seen, changes one thing, and reads the
finding. The baseline is a healthy conversation: every client receives every action (its own as
the acknowledgement) in one global order, numbered 1, 2, 3, ...
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence

import pytest

from releasegate.config import SyncLatencyThresholds
from releasegate.probes import sync
from releasegate.probes.sync import Action, ClientLog, CollaborationObservation, LatencyObservation, Receipt, RoundTrip

IDENTITIES = ("primary", "second", "primary")
URL = "wss://app.example.test/ws/sync?conversation=c1"


def healthy(clients: int = 3, kinds: tuple[str, ...] = ("message", "typing"), rounds: int = 2) -> CollaborationObservation:
    """Each client sends each kind ``rounds`` times; the server orders them round-robin and delivers to all."""
    actions: list[Action] = []
    for n in range(rounds * len(kinds)):
        for client in range(clients):
            actions.append(Action(sync.nonce("run1", client, n), kinds[n % len(kinds)], client, n, sent_at=len(actions) * 0.01))
    logs = tuple(
        ClientLog(
            index=c,
            identity=IDENTITIES[c % len(IDENTITIES)],
            receipts=tuple(Receipt(a.nonce, a.sent_at + 0.005, seq) for seq, a in enumerate(actions, start=1)),
            seqs=tuple(range(1, len(actions) + 1)),
            frames=len(actions),
        )
        for c in range(clients)
    )
    return CollaborationObservation(
        url=URL,
        clients=logs,
        actions=tuple(actions),
        kinds=kinds,
        rounds=rounds,
        interval_ms=30,
        timeout_ms=3000,
        waited_ms=5,
        seq_checked=True,
    )


def with_client(observation: CollaborationObservation, index: int, **changes: object) -> CollaborationObservation:
    clients = list(observation.clients)
    clients[index] = dataclasses.replace(clients[index], **changes)  # type: ignore[arg-type]
    return dataclasses.replace(observation, clients=tuple(clients))


def test_a_healthy_conversation_passes_with_counts_per_kind_and_client() -> None:
    finding = sync.judge_collaboration(healthy())

    assert finding.outcome == "passed", finding.summary
    assert finding.observed["deliveries"] == "24/24"
    assert finding.evidence["samples"] == 24
    assert finding.evidence["actions"]["typing"] == {"sent": 6, "expected_deliveries": 12, "delivered": 12, "duplicated": 0}
    assert [c["identity"] for c in finding.evidence["clients"]] == ["primary", "second", "primary"]
    assert finding.evidence["clients"][1]["own_echoes"] == 4
    assert "problems" not in finding.evidence or finding.evidence["problems"] == {}
    json.dumps(finding.evidence)  # a report can write it


def test_a_server_that_does_not_echo_to_the_sender_still_passes() -> None:
    # Given each client received every action but its own (acknowledgement is optional), so its
    # sequence skips exactly the numbers of its own actions
    base = healthy()
    observation = base
    for client in base.clients:
        own = {a.nonce for a in base.actions if a.client == client.index}
        seqs = tuple(r.seq for r in client.receipts if r.nonce not in own and r.seq is not None)
        observation = with_client(observation, client.index, receipts=tuple(r for r in client.receipts if r.nonce not in own), seqs=seqs)
    finding = sync.judge_collaboration(observation)
    assert finding.outcome == "passed", finding.summary
    assert finding.observed["seq_gaps"] == 0


def test_an_action_one_client_never_received_is_lost() -> None:
    base = healthy()
    missing = base.actions[3]  # client 0's second action
    receipts = tuple(r for r in base.clients[1].receipts if r.nonce != missing.nonce)

    finding = sync.judge_collaboration(dataclasses.replace(with_client(base, 1, receipts=receipts), seq_checked=False))

    assert finding.outcome == "failed"
    assert finding.observed["lost"] == 1
    assert finding.observed["deliveries"] == "23/24"
    assert "client 1 (second) never received client 0's action #1 (typing)" in finding.summary
    assert finding.evidence["actions"]["typing"]["delivered"] == 11


def test_an_action_received_twice_is_duplicated() -> None:
    base = healthy()
    receipts = base.clients[2].receipts
    twice = (*receipts[:5], receipts[4], *receipts[5:])

    finding = sync.judge_collaboration(dataclasses.replace(with_client(base, 2, receipts=twice), seq_checked=False))

    assert finding.outcome == "failed"
    assert finding.observed["duplicated"] == 1
    assert "received client 1's action #1 (typing) 2 times" in finding.summary


def test_one_senders_actions_out_of_send_order_fail() -> None:
    # Given client 2 saw client 0's action #1 before its action #0 (with the others in between)
    base = healthy()
    receipts = list(base.clients[2].receipts)
    receipts[0], receipts[3] = receipts[3], receipts[0]

    finding = sync.judge_collaboration(dataclasses.replace(with_client(base, 2, receipts=tuple(receipts)), seq_checked=False))

    assert finding.outcome == "failed"
    assert finding.observed["out_of_order"] == 1
    assert "client 2 (primary) received client 0's action #0 (message) after #1" in finding.evidence["problems"]["out_of_order"]


def test_two_clients_that_disagree_on_the_global_order_fail_even_when_each_sender_is_in_order() -> None:
    # Given client 1 saw client 0's and client 2's first actions in the other order than everyone else
    base = healthy()
    receipts = list(base.clients[1].receipts)
    receipts[0], receipts[2] = receipts[2], receipts[0]

    finding = sync.judge_collaboration(dataclasses.replace(with_client(base, 1, receipts=tuple(receipts)), seq_checked=False))

    assert finding.outcome == "failed"
    assert finding.observed["out_of_order"] == 0
    assert finding.observed["order_disagreements"] == 2  # with client 0 and with client 2
    assert (
        "client 0 (primary) and client 1 (second) disagree at shared position 0" in finding.evidence["problems"]["order_disagreements"][0]
    )


@pytest.mark.parametrize(
    ("seqs", "problem"),
    [
        ((1, 2, 3, 2, 4), "client 0 (primary) received seq 2 after 3"),
        ((1, 2, 2, 3), "client 0 (primary) received seq 2 twice in a row"),
    ],
)
def test_a_sequence_number_that_goes_back_or_repeats_fails(seqs: tuple[int, ...], problem: str) -> None:
    finding = sync.judge_collaboration(with_client(healthy(), 0, seqs=seqs))

    assert finding.outcome == "failed"
    assert finding.observed["seq_regressions"] == 1
    assert finding.evidence["problems"]["seq_regressions"] == [problem]


def test_a_sequence_gap_warns_an_event_never_delivered_that_was_not_the_probes() -> None:
    # Given the 24 actions took seq 1..24, then two assistant replies (25, 26) reached every client
    # but client 0, and a third (27) reached everyone
    base = healthy()
    observation = base
    for client in base.clients:
        seqs = (*range(1, 25), 27) if client.index == 0 else tuple(range(1, 28))
        observation = with_client(observation, client.index, seqs=seqs)

    finding = sync.judge_collaboration(observation)

    assert finding.outcome == "warned"
    assert finding.observed["seq_gaps"] == 1
    assert "client 0 (primary) never received seq 25..26 (went from 24 to 27)" in finding.summary


def test_one_action_with_different_numbers_at_two_clients_is_a_disagreement() -> None:
    base = healthy()
    receipts = tuple(dataclasses.replace(r, seq=99) if i == 0 else r for i, r in enumerate(base.clients[2].receipts))

    finding = sync.judge_collaboration(with_client(base, 2, receipts=receipts))

    assert finding.outcome == "failed"
    assert any(
        "has seq 1 at client 0 (primary) but 99 at client 2 (primary)" in p for p in finding.evidence["problems"]["order_disagreements"]
    )


def test_without_a_seq_path_sequence_numbers_are_not_judged() -> None:
    observation = dataclasses.replace(with_client(healthy(), 0, seqs=(3, 2, 1)), seq_checked=False)
    finding = sync.judge_collaboration(observation)
    assert finding.outcome == "passed"
    assert "seq_regressions" not in finding.observed


def test_everything_lost_fails_with_a_bounded_list_and_complete_counts() -> None:
    # Given every client received only its own actions (the fault sync-drop)
    base = healthy(clients=3, rounds=10)
    sender = {a.nonce: a.client for a in base.actions}
    observation = base
    for client in base.clients:
        own = tuple(r for r in client.receipts if sender[r.nonce] == client.index)
        observation = with_client(observation, client.index, receipts=own, unmatched=('{"type": "error", "data": {"detail": "x"}}',))

    finding = sync.judge_collaboration(dataclasses.replace(observation, seq_checked=False))

    assert finding.outcome == "failed"
    assert finding.observed["lost"] == 120
    assert len(finding.evidence["problems"]["lost"]) == sync.MAX_PROBLEMS
    assert finding.evidence["clients"][0]["other_frames"] == ['{"type": "error", "data": {"detail": "x"}}']


def test_a_connection_the_server_closed_mid_probe_is_an_error_not_a_verdict() -> None:
    observation = with_client(healthy(), 1, closed="closed by the server with 1008 (more than 50 messages per second)")
    finding = sync.judge_collaboration(observation)
    assert finding.outcome == "error"
    assert "client 1 (second): closed by the server with 1008" in finding.summary


# --------------------------------------------------------------------------- sync latency

SENDER = ClientLog(index=0, identity="primary")
RECEIVER = ClientLog(index=1, identity="second")


def trips(latencies_ms: Sequence[float | None], *, interval_ms: float = 30, echo_ms: float | None = 1.0) -> LatencyObservation:
    """Round trips sent every interval_ms; None = never received."""
    made = []
    for i, latency in enumerate(latencies_ms):
        sent = 100 + i * interval_ms / 1000
        received = None if latency is None else sent + latency / 1000
        acked = None if echo_ms is None else sent + echo_ms / 1000
        made.append(RoundTrip(sync.nonce("run1", 0, i), sent, sent, received, acked, copies=0 if latency is None else 1))
    return LatencyObservation(URL, SENDER, RECEIVER, tuple(made), planned=len(made), interval_ms=interval_ms, timeout_ms=2000)


def test_fast_round_trips_pass_with_percentiles_samples_and_the_acknowledgement() -> None:
    finding = sync.judge_sync_latency(trips([5.0] * 59 + [20.0]), SyncLatencyThresholds())

    assert finding.outcome == "passed", finding.summary
    assert finding.evidence["samples"] == 60  # what gates.yaml min_samples compares
    assert (finding.evidence["p50_ms"], finding.evidence["p95_ms"], finding.evidence["max_ms"]) == (5.0, 5.0, 20.0)
    assert finding.evidence["slowest"][0] == {"round_trip": 59, "latency_ms": 20.0}
    assert finding.evidence["sender_ack"]["p50_ms"] == 1.0
    assert finding.expected == {"p95_ms": "<= 250"}
    json.dumps(finding.evidence)


def test_slow_round_trips_fail_on_the_percentile_over_its_budget() -> None:
    finding = sync.judge_sync_latency(trips([405.0] * 60, echo_ms=None), SyncLatencyThresholds())

    assert finding.outcome == "failed"
    assert "p95 405.0 ms > 250.0 ms" in finding.summary
    assert finding.evidence["sender_ack"].startswith("the sender received none of its own events")


def test_every_budget_set_is_judged() -> None:
    thresholds = SyncLatencyThresholds(p50_ms=10, p95_ms=None, max_ms=100)
    finding = sync.judge_sync_latency(trips([5.0] * 59 + [150.0]), thresholds)
    assert finding.outcome == "failed"
    assert "max 150.0 ms > 100.0 ms" in finding.summary
    assert finding.expected == {"p50_ms": "<= 10", "max_ms": "<= 100"}


def test_a_few_lost_events_are_infinitely_late_and_push_the_percentiles() -> None:
    # Given 3 of 60 lost: the 57th value (p95) is still a real one; a 4th loss makes p95 infinite
    three = sync.judge_sync_latency(trips([5.0] * 57 + [None] * 3), SyncLatencyThresholds())
    four = sync.judge_sync_latency(trips([5.0] * 56 + [None] * 4), SyncLatencyThresholds())

    assert three.outcome == "passed" and "3 lost" in three.summary
    assert four.outcome == "failed" and "p95 lost (never arrived) > 250.0 ms" in four.summary
    assert four.evidence["p95_ms"] is None and four.evidence["lost"] == 4


def test_an_event_later_than_the_timeout_counts_as_lost() -> None:
    observation = trips([5.0] * 59 + [2500.0])
    assert sync.latencies_ms(observation)[-1] == math.inf
    assert sync.judge_sync_latency(observation, SyncLatencyThresholds()).evidence["lost"] == 1


def test_every_event_lost_fails_and_says_so() -> None:
    finding = sync.judge_sync_latency(trips([None] * 60), SyncLatencyThresholds())
    assert finding.outcome == "failed"
    assert finding.summary == "every one of 60 events was lost: none reached client 1 (second) within 2000 ms"


def test_a_closed_connection_makes_the_latency_inconclusive() -> None:
    observation = dataclasses.replace(trips([5.0] * 10), sender=dataclasses.replace(SENDER, closed="closed by the server with 1008"))
    finding = sync.judge_sync_latency(observation, SyncLatencyThresholds())
    assert finding.outcome == "error"
    assert "client 0 (primary): closed by the server with 1008" in finding.summary


def test_action_templates_are_checked_before_anyone_connects() -> None:
    templates = {"edit": '{"type": "edit", "nonce": "NONCE"}', "typing": '{"type": "typing"}'}

    def compose(kind: str, marker: str) -> str:
        if kind == "broken":
            raise KeyError("undefined variable ${doc_id}")
        return templates[kind].replace("NONCE", marker)

    assert sync.composer_problem(compose, ["edit"]) is None
    assert "sync.actions.typing has no ${nonce}" in str(sync.composer_problem(compose, ["edit", "typing"]))
    assert "sync.actions.broken cannot be composed" in str(sync.composer_problem(compose, ["broken"]))


def test_nonces_have_one_width_so_none_is_a_prefix_of_another() -> None:
    assert len(sync.nonce("abcd1234", 1, 1)) == len(sync.nonce("abcd1234", 49, 9999))
    assert sync.nonce("abcd1234", 1, 1) not in sync.nonce("abcd1234", 1, 10)


def test_a_send_held_up_by_the_server_counts_from_its_scheduled_time() -> None:
    # Given a server that stopped reading: each send left 300 ms after its schedule, and then
    # the event reached B 10 ms after it was finally sent
    made = tuple(
        RoundTrip(sync.nonce("run1", 0, i), scheduled_at=100 + i * 0.03, sent_at=100.3 + i * 0.03, received_at=100.31 + i * 0.03, copies=1)
        for i in range(60)
    )
    observation = LatencyObservation(URL, SENDER, RECEIVER, made, planned=60, interval_ms=30, timeout_ms=2000)

    finding = sync.judge_sync_latency(observation, SyncLatencyThresholds())

    # Then the stall shows: 310 ms per event, not the 10 ms after the late send
    assert finding.outcome == "failed", finding.summary
    assert finding.evidence["p50_ms"] == pytest.approx(310.0)
    assert finding.evidence["max_send_slip_ms"] == pytest.approx(300.0)


def test_a_policy_without_any_budget_judges_nothing_and_cannot_pass() -> None:
    # The policy model refuses every budget null; a hand-built one must not slip through as a pass
    thresholds = SyncLatencyThresholds.model_construct(p50_ms=None, p95_ms=None, p99_ms=None, max_ms=None)
    finding = sync.judge_sync_latency(trips([5.0] * 60), thresholds)
    assert finding.outcome == "error"
    assert "no latency budget is set" in finding.summary
