"""WebSocket sync as its users meet it: several clients in one conversation.

    business.collaboration  N clients join; each sends every kind of action (message, typing, presence, edit)
                            ``rounds`` times. Every action must reach every OTHER client exactly once, each
                            sender's actions in the order sent, all clients in one global order; where events
                            carry a sequence number, each client's numbers strictly increase. Once everything
                            has arrived the clients keep listening for a short grace (min(timeout_ms, 500 ms)),
                            so a late duplicate is counted rather than missed.
    business.sync_latency   client A sends one action every interval_ms on a fixed schedule (open loop: it
                            never waits for delivery, which would hide a stall), K times; each is timed on
                            one monotonic clock from its *scheduled* send time until client B receives it
                            (a server that stops reading blocks the send, and the stall must show). One not
                            at B within timeout_ms is lost and counts as infinitely late (:mod:`releasegate.stats`).

How an event is recognised: every action carries a nonce unique to the run, client and action, and
an event is that action's delivery when the nonce appears anywhere in the frame. Events without one
of our nonces (other users, the assistant's replies) are not ours to judge, but they do take
sequence numbers, so they count for the sequence check.

Shape: the probe core takes plain arguments (a rendered URL, who joins with which token, a function
that composes an action's frame), so it needs neither the scenario engine nor pytest; it returns an
observation, and the judges (pure: observation in, one :class:`Finding` out) decide. Bounded: at most
:data:`MAX_CLIENTS` clients, frames up to ``max_frame_bytes``, frames kept per client capped, every
handshake under the probe timeout, the whole probe under one budget, every connection closed in
``finally``, and :func:`run_blocking` adds an outer backstop. A refused handshake is a
:class:`ProbeError`, and so is a token that would travel over plain ws:// to a host that is not
loopback. A connection the server closes mid-probe (e.g. 1008 for too many messages), or a reader
that crashed on a hostile frame, is in the observation and makes the judge say ``error``: never
"every event lost".
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import math
import re
import secrets
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, TypeVar
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from releasegate import stats
from releasegate._exceptions import ProbeError, ProbeTimeout
from releasegate.config import LOOPBACK_HOSTS, SyncLatencyThresholds
from releasegate.probes.websocket import FailFastConnection
from releasegate.results import Finding

T = TypeVar("T")
Clock = Callable[[], float]
# (action kind, nonce) -> the text frame that performs the action.
Compose = Callable[[str, str], str]
# A parsed event -> its sequence number (anything but an int, or an exception: it has none).
SeqOf = Callable[[Any], Any]

MAX_CLIENTS = 50
USER_AGENT = "releasegate-sync-probe"
# Problems listed one by one in evidence (the counts are always complete).
MAX_PROBLEMS = 10
SLOWEST_SHOWN = 5
EXCERPT_CHARS = 200
# Frames that carried none of our nonces, kept as excerpts: an "unknown message type" notice says
# at once why every action was lost.
UNMATCHED_SHOWN = 3
# Frames one client keeps beyond those it is expected to see: a busy conversation must not grow the
# probe's memory without bound (later frames are counted, not kept).
EXTRA_FRAMES = 1_000
# Beyond connect + sending + waiting, the probe may take this long (task switches, the last close).
BUDGET_SLACK_S = 1.0
# Once everything expected has arrived, keep reading this long (at most timeout_ms): a duplicate
# delivered a little late must be counted, not missed because the probe hung up first.
DUPLICATE_GRACE_MS = 500.0
# A nonce per run, client and action; fixed width, so no nonce is a prefix of another.
_NONCE = "rg-{run}-{client:02d}-{n:05d}"
_NONCE_PATTERN = r"rg-{run}-\d{{2}}-\d{{5}}"
_PROBE_NONCE = "rg-00000000-00-00000"


def nonce(run: str, client: int, n: int) -> str:
    """The marker of client ``client``'s ``n``-th action in run ``run``."""
    return _NONCE.format(run=run, client=client, n=n)


# --------------------------------------------------------------------------- plain inputs


@dataclass(frozen=True)
class Member:
    """Who one client joins as: an identity name for reports, and its token (never shown)."""

    identity: str
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class WsOptions:
    """How every client connects: handshake/close timeout, trust for wss://, the largest frame accepted."""

    timeout_s: float
    max_frame_bytes: int = 1_048_576
    ssl: ssl.SSLContext | None = None


def composer_problem(compose: Compose, kinds: Iterable[str]) -> str | None:
    """Why the action templates cannot work (a missing variable, no ${nonce}), or None; before any connection."""
    for kind in kinds:
        try:
            text = compose(kind, _PROBE_NONCE)
        except (KeyError, ValueError) as exc:  # the template engine's undefined variable or malformed ${
            return f"sync.actions.{kind} cannot be composed: {exc}"
        if _PROBE_NONCE not in text:
            return f"sync.actions.{kind} has no ${{nonce}}: its events could not be told apart from anyone else's"
    return None


# --------------------------------------------------------------------------- observations


@dataclass(frozen=True)
class Action:
    """One action sent: by client ``client``, its ``index``-th (send order), at ``sent_at`` (monotonic s)."""

    nonce: str
    kind: str
    client: int
    index: int
    sent_at: float


@dataclass(frozen=True)
class Receipt:
    """One of our nonces in a frame received at ``at`` (monotonic s); ``seq`` if the event had one."""

    nonce: str
    at: float
    seq: int | None = None


@dataclass(frozen=True)
class ClientLog:
    """What one client saw, in arrival order."""

    index: int
    identity: str
    receipts: tuple[Receipt, ...] = ()
    seqs: tuple[int, ...] = ()  # every sequence number seen, ours or not
    frames: int = 0
    closed: str | None = None  # the connection ended mid-probe: the server's code and reason, or the reader crashed
    unmatched: tuple[str, ...] = ()  # excerpts of the first frames without one of our nonces

    def label(self) -> str:
        return f"client {self.index} ({self.identity})"


@dataclass(frozen=True)
class CollaborationObservation:
    url: str
    clients: tuple[ClientLog, ...]
    actions: tuple[Action, ...]
    kinds: tuple[str, ...]
    rounds: int
    interval_ms: float
    timeout_ms: float
    waited_ms: float  # after the last action, until everything arrived or timeout_ms
    seq_checked: bool  # sequence numbers were asked for AND some event carried one
    seq_path: str | None = None  # where they were looked for (None: not asked)
    grace_ms: float = 0.0  # listened on after everything arrived, for late duplicates


@dataclass(frozen=True)
class RoundTrip:
    """One timed action: due at ``scheduled_at``, sent by A at ``sent_at``, first seen by B at ``received_at``
    (and by A, its ack). Latency counts from ``scheduled_at``: a send that slipped is the server's delay too."""

    nonce: str
    scheduled_at: float
    sent_at: float
    received_at: float | None = None
    acked_at: float | None = None
    copies: int = 0  # times B received it (more than one: duplicated)


@dataclass(frozen=True)
class LatencyObservation:
    url: str
    sender: ClientLog
    receiver: ClientLog
    round_trips: tuple[RoundTrip, ...]
    planned: int
    interval_ms: float
    timeout_ms: float
    grace_ms: float = 0.0  # listened on after everything arrived, for late duplicates


# --------------------------------------------------------------------------- judges (pure)


@dataclass
class _Problems:
    """Every violation of one kind: counted in full, listed up to MAX_PROBLEMS."""

    count: int = 0
    shown: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.count += 1
        if len(self.shown) < MAX_PROBLEMS:
            self.shown.append(text)


def _closed(clients: Iterable[ClientLog]) -> list[str]:
    return [f"{c.label()}: {c.closed}" for c in clients if c.closed is not None]


def judge_collaboration(observation: CollaborationObservation) -> Finding:
    """Every action at every other client exactly once, per sender in send order, one global order, seq increasing.

    A sequence gap alone (a client never got some event that was not ours, e.g. an assistant
    reply) warns: it is a lost delivery, but one this probe did not cause and cannot attribute.
    """
    clients, actions = observation.clients, observation.actions
    evidence = _collaboration_evidence(observation)
    closed = _closed(clients)
    if closed:
        return Finding(
            "error",
            f"could not judge: a connection ended mid-probe ({'; '.join(closed)})",
            observed={"closed": closed},
            expected="every connection open until the probe ends",
            evidence=evidence,
        )
    if not actions:
        return Finding("error", "could not judge: no action was sent", evidence=evidence)

    by_nonce = {a.nonce: a for a in actions}
    lost, duplicated, reordered, disagree, seq_broken, gaps = (_Problems() for _ in range(6))
    for client in clients:
        copies = Counter(r.nonce for r in client.receipts)
        for action in actions:
            if action.client == client.index:
                continue
            seen = copies[action.nonce]
            if seen == 0:
                lost.add(f"{client.label()} never received {_name(action)}")
            elif seen > 1:
                duplicated.add(f"{client.label()} received {_name(action)} {seen} times")
        _per_sender_order(client, by_nonce, reordered)
    for first, second in combinations(clients, 2):
        _global_order(first, second, by_nonce, disagree)
    if observation.seq_checked:
        own = _own_seqs(clients, by_nonce)
        for client in clients:
            _sequence(client, own[client.index], seq_broken, gaps)
        _same_seq_everywhere(clients, by_nonce, disagree)

    expected_deliveries = len(actions) * (len(clients) - 1)
    delivered = expected_deliveries - lost.count
    observed = {
        "deliveries": f"{delivered}/{expected_deliveries}",
        "lost": lost.count,
        "duplicated": duplicated.count,
        "out_of_order": reordered.count,
        "order_disagreements": disagree.count,
    }
    if observation.seq_checked:
        observed |= {"seq_regressions": seq_broken.count, "seq_gaps": gaps.count}
    evidence["problems"] = {
        name: problems.shown
        for name, problems in (
            ("lost", lost),
            ("duplicated", duplicated),
            ("out_of_order", reordered),
            ("order_disagreements", disagree),
            ("seq_regressions", seq_broken),
            ("seq_gaps", gaps),
        )
        if problems.count
    }
    if lost.count:
        # What the server sent instead (an "unknown message type" notice says why at once).
        for record, client in zip(evidence["clients"], clients, strict=True):
            if client.unmatched:
                record["other_frames"] = list(client.unmatched)
    expected = "every action at every other client exactly once, each sender's in send order, one global order"
    if observation.seq_checked:
        expected += ", sequence numbers strictly increasing without gaps"
    who = f"{len(clients)} clients, {len(actions)} actions ({', '.join(observation.kinds)})"
    failures = [
        (lost.count, f"{lost.count} of {expected_deliveries} deliveries lost"),
        (duplicated.count, f"{duplicated.count} duplicated"),
        (reordered.count, f"{reordered.count} out of their sender's order"),
        (disagree.count, f"{disagree.count} disagreements on the global order"),
        (seq_broken.count, f"{seq_broken.count} sequence regressions"),
    ]
    stated = [text for count, text in failures if count]
    if stated:
        example = next(p.shown[0] for p in (lost, duplicated, reordered, disagree, seq_broken) if p.count)
        return Finding("failed", f"{who}: {'; '.join(stated)} (first: {example})", observed=observed, expected=expected, evidence=evidence)
    if gaps.count:
        return Finding(
            "warned",
            f"{who}: every action delivered in order, but {gaps.count} sequence gaps: some clients missed events "
            f"that were not the probe's (first: {gaps.shown[0]})",
            observed=observed,
            expected=expected,
            evidence=evidence,
        )
    how = "; sequence numbers strictly increasing" if observation.seq_checked else ""
    if "seq_note" in evidence:
        how = f" ({evidence['seq_note']})"
    return Finding(
        "passed",
        f"{who}: every action reached every other client exactly once, in send order and one global order{how}",
        observed=observed,
        expected=expected,
        evidence=evidence,
    )


def _name(action: Action) -> str:
    return f"client {action.client}'s action #{action.index} ({action.kind})"


def _firsts(client: ClientLog) -> list[str]:
    """Our nonces in the order this client first saw them."""
    seen: dict[str, None] = {}
    for receipt in client.receipts:
        seen.setdefault(receipt.nonce, None)
    return list(seen)


def _per_sender_order(client: ClientLog, by_nonce: Mapping[str, Action], problems: _Problems) -> None:
    last: dict[int, Action] = {}
    for nonce_seen in _firsts(client):
        action = by_nonce.get(nonce_seen)
        if action is None:
            continue
        before = last.get(action.client)
        if before is not None and action.index < before.index:
            problems.add(f"{client.label()} received {_name(action)} after #{before.index}")
        if before is None or action.index > before.index:
            last[action.client] = action


def _global_order(first: ClientLog, second: ClientLog, by_nonce: Mapping[str, Action], problems: _Problems) -> None:
    """Both clients must see the actions they both received in the same order."""
    order_a, order_b = _firsts(first), _firsts(second)
    shared = set(order_a) & set(order_b)
    common_a = [n for n in order_a if n in shared]
    common_b = [n for n in order_b if n in shared]
    for position, (a, b) in enumerate(zip(common_a, common_b, strict=True)):
        if a != b:
            problems.add(
                f"{first.label()} and {second.label()} disagree at shared position {position}: {_name(by_nonce[a])} vs {_name(by_nonce[b])}"
            )
            return


def _sequence(client: ClientLog, own: set[int], broken: _Problems, gaps: _Problems) -> None:
    """Strictly increasing; a skipped number is a gap unless it is the client's own action (not echoed back)."""
    previous: int | None = None
    for seq in client.seqs:
        if previous is not None:
            if seq == previous:
                broken.add(f"{client.label()} received seq {seq} twice in a row")
            elif seq < previous:
                broken.add(f"{client.label()} received seq {seq} after {previous}")
            else:
                missing = [n for n in range(previous + 1, seq) if n not in own]
                if missing:
                    shown = str(missing[0]) if len(missing) == 1 else f"{missing[0]}..{missing[-1]}"
                    gaps.add(f"{client.label()} never received seq {shown} (went from {previous} to {seq})")
        previous = seq if previous is None else max(previous, seq)


def _own_seqs(clients: Sequence[ClientLog], by_nonce: Mapping[str, Action]) -> dict[int, set[int]]:
    """Per client, the sequence numbers its own actions got (as any client saw them)."""
    own: dict[int, set[int]] = {c.index: set() for c in clients}
    for client in clients:
        for receipt in client.receipts:
            action = by_nonce.get(receipt.nonce)
            if action is not None and receipt.seq is not None and action.client in own:
                own[action.client].add(receipt.seq)
    return own


def _same_seq_everywhere(clients: Sequence[ClientLog], by_nonce: Mapping[str, Action], problems: _Problems) -> None:
    """One event, one number: an action must carry the same seq at every client that got it."""
    numbered: dict[str, tuple[int, ClientLog]] = {}
    for client in clients:
        for receipt in client.receipts:
            if receipt.seq is None:
                continue
            known = numbered.setdefault(receipt.nonce, (receipt.seq, client))
            if known[0] != receipt.seq and receipt.nonce in by_nonce:
                problems.add(
                    f"{_name(by_nonce[receipt.nonce])} has seq {known[0]} at {known[1].label()} but {receipt.seq} at {client.label()}"
                )


def _collaboration_evidence(observation: CollaborationObservation) -> dict[str, Any]:
    clients, actions = observation.clients, observation.actions
    per_kind: dict[str, dict[str, int]] = {}
    for kind in observation.kinds:
        sent = [a for a in actions if a.kind == kind]
        nonces = {a.nonce: a.client for a in sent}
        copies = Counter((c.index, r.nonce) for c in clients for r in c.receipts if r.nonce in nonces)
        pairs = [(c.index, n) for c in clients for n, sender in nonces.items() if sender != c.index]
        per_kind[kind] = {
            "sent": len(sent),
            "expected_deliveries": len(pairs),
            "delivered": sum(1 for pair in pairs if copies[pair] > 0),
            "duplicated": sum(1 for pair in pairs if copies[pair] > 1),
        }
    return {
        "samples": len(actions) * max(0, len(clients) - 1),  # deliveries judged
        "url": observation.url,
        "clients": [_client_evidence(c, actions) for c in clients],
        "identities": [c.identity for c in clients],
        "actions": per_kind,
        "rounds": observation.rounds,
        "interval_ms": observation.interval_ms,
        "timeout_ms": observation.timeout_ms,
        "waited_ms": round(observation.waited_ms, 1),
        "grace_ms": round(observation.grace_ms, 1),
        "seq_checked": observation.seq_checked,
    } | _seq_note(observation)


def _seq_note(observation: CollaborationObservation) -> dict[str, str]:
    """Why sequence numbers were not checked although the target names a path for them."""
    if observation.seq_path is None or observation.seq_checked:
        return {}
    return {"seq_note": f"no event carried {observation.seq_path}: sequence numbers not checked"}


def _client_evidence(client: ClientLog, actions: Sequence[Action]) -> dict[str, Any]:
    own = {a.nonce for a in actions if a.client == client.index}
    received = {r.nonce for r in client.receipts}
    record: dict[str, Any] = {
        "client": client.index,
        "identity": client.identity,
        "sent": len(own),
        "received_from_others": len(received - own),
        "expected_from_others": len(actions) - len(own),
        "own_echoes": len(received & own),
        "frames": client.frames,
    }
    if client.seqs:
        record["seq_first"], record["seq_last"] = client.seqs[0], client.seqs[-1]
    if client.closed is not None:
        record["closed"] = client.closed
    return record


def latencies_ms(observation: LatencyObservation) -> list[float]:
    """One sample per round trip attempted: A's scheduled send to B's first receipt; inf when later than timeout_ms or never."""
    samples: list[float] = []
    for trip in observation.round_trips:
        latency = math.inf if trip.received_at is None else (trip.received_at - trip.scheduled_at) * 1000
        samples.append(latency if latency <= observation.timeout_ms else math.inf)
    return samples


def judge_sync_latency(observation: LatencyObservation, thresholds: SyncLatencyThresholds) -> Finding:
    """p50/p95/p99/max of the round trips (lost = infinitely late) within the budgets of the policy."""
    closed = _closed((observation.sender, observation.receiver))
    budgets: dict[str, float | None] = {
        "p50_ms": thresholds.p50_ms,
        "p95_ms": thresholds.p95_ms,
        "p99_ms": thresholds.p99_ms,
        "max_ms": thresholds.max_ms,
    }
    expected = {name: f"<= {budget:g}" for name, budget in budgets.items() if budget is not None}
    base: dict[str, Any] = {
        "samples": len(observation.round_trips),
        "url": observation.url,
        "planned": observation.planned,
        "interval_ms": observation.interval_ms,
        "timeout_ms": observation.timeout_ms,
        "sender": observation.sender.label(),
        "receiver": observation.receiver.label(),
    }
    if closed:
        return Finding(
            "error",
            f"could not judge: a connection ended mid-probe ({'; '.join(closed)})",
            observed={"closed": closed},
            expected=expected,
            evidence=base | {"round_trips_sent": len(observation.round_trips)},
        )
    samples = latencies_ms(observation)
    if not samples:
        return Finding("error", "could not judge: no round trip was sent", expected=expected, evidence=base)
    summary = stats.summarize(samples)
    evidence = base | _latency_evidence(observation, samples, summary)
    observed = {name: evidence[name] for name in ("p50_ms", "p95_ms", "p99_ms", "max_ms", "lost")}
    over = stats.over_budget(summary, budgets)
    trips = f"{summary.samples} round trips {observation.sender.label()} -> {observation.receiver.label()}"
    if summary.lost == summary.samples:
        return Finding(
            "failed",
            f"every one of {summary.samples} events was lost: none reached {observation.receiver.label()} "
            f"within {observation.timeout_ms:g} ms",
            observed=observed,
            expected=expected,
            evidence=evidence,
        )
    figures = f"p50 {stats.format_ms(summary.p50_ms)}, p95 {stats.format_ms(summary.p95_ms)}"
    lost = f", {summary.lost} lost" if summary.lost else ""
    if over:
        worst = "; ".join(f"{name.removesuffix('_ms')} {text}" for name, text in over.items())
        return Finding(
            "failed", f"sync latency over budget: {worst} ({trips}{lost})", observed=observed, expected=expected, evidence=evidence
        )
    if not expected:
        # The policy model refuses this; a check that judged nothing must not pass all the same.
        reason = "no latency budget is set (thresholds.sync_latency p50_ms, p95_ms, p99_ms, max_ms): nothing was judged"
        return Finding("error", f"could not judge: {reason} ({trips}: {figures}{lost})", observed=observed, evidence=evidence)
    return Finding("passed", f"{trips}: {figures}{lost}", observed=observed, expected=expected, evidence=evidence)


def _latency_evidence(observation: LatencyObservation, samples: Sequence[float], summary: stats.LatencySummary) -> dict[str, Any]:
    trips = observation.round_trips
    order = sorted(range(len(trips)), key=lambda i: samples[i], reverse=True)[:SLOWEST_SHOWN]
    slowest = [{"round_trip": i, "latency_ms": None if math.isinf(samples[i]) else round(samples[i], 2)} for i in order]
    slips = [(t.sent_at - t.scheduled_at) * 1000 for t in trips]
    record: dict[str, Any] = summary.evidence() | {
        "slowest": slowest,
        "duplicated": sum(1 for t in trips if t.copies > 1),
        # How late a send left its schedule; it is inside every latency above (timed from the
        # schedule). A large slip with fast acknowledgements: the probe fell behind; with slow
        # ones or none: the server stopped reading.
        "max_send_slip_ms": round(max(slips), 2),
        "grace_ms": round(observation.grace_ms, 1),
    }
    # From the actual send: the server's echo time alone, beside the slip.
    acks = [(t.acked_at - t.sent_at) * 1000 for t in trips if t.acked_at is not None]
    record["sender_ack"] = (
        stats.summarize(acks).evidence() if acks else "the sender received none of its own events (no acknowledgement echo)"
    )
    if summary.lost and observation.receiver.unmatched:
        record["receiver_other_frames"] = list(observation.receiver.unmatched)
    return record


# --------------------------------------------------------------------------- I/O


class _Connect(connect):
    """``connect`` that reports a 3xx instead of following it: the token must not travel to another origin."""

    def process_redirect(self, exc: Exception) -> Exception | str:
        return exc


class _Client:
    """One joined client: its connection, its reader task, and what it saw so far."""

    def __init__(self, index: int, member: Member, connection: ClientConnection) -> None:
        self.index = index
        self.member = member
        self.connection = connection
        self.receipts: list[Receipt] = []
        self.seqs: list[int] = []
        self.frames = 0
        self.closed: str | None = None
        self.unmatched: list[str] = []
        self.reader: asyncio.Task[None] | None = None

    def log(self) -> ClientLog:
        return ClientLog(
            index=self.index,
            identity=self.member.identity,
            receipts=tuple(self.receipts),
            seqs=tuple(self.seqs),
            frames=self.frames,
            closed=self.closed,
            unmatched=tuple(self.unmatched),
        )


class _Room:
    """The clients of one probe: joined together, read concurrently, closed together.

    ``expect`` registers deliveries still awaited; ``settled`` is set once sending is over and
    nothing is awaited any more, or as soon as a connection is lost (the result is error then).
    """

    def __init__(self, url: str, members: Sequence[Member], options: WsOptions, *, seq_of: SeqOf | None, clock: Clock) -> None:
        if not 1 <= len(members) <= MAX_CLIENTS:
            raise ValueError(f"between 1 and {MAX_CLIENTS} clients, got {len(members)}")
        self.url = url
        self.members = list(members)
        self.options = options
        self.clock = clock
        self.run = secrets.token_hex(4)
        self._pattern = re.compile(_NONCE_PATTERN.format(run=self.run))
        self._seq_of = seq_of
        self.clients: list[_Client] = []
        self.sent: set[str] = set()
        self.missing: set[tuple[int, str]] = set()
        self.sending = True
        self.settled = asyncio.Event()
        self.frame_cap = EXTRA_FRAMES

    async def join(self) -> None:
        """Connect every member at once; ProbeError naming the first refused one (the others are closed)."""
        results = await asyncio.gather(*(self._open(i, m) for i, m in enumerate(self.members)), return_exceptions=True)
        self.clients.sort(key=lambda c: c.index)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            await self.leave()
            for error in failed:
                if not isinstance(error, Exception):
                    raise error  # cancellation and the like are not the target's answer
            raise failed[0]
        for client in self.clients:
            client.reader = asyncio.create_task(self._read(client))

    async def _open(self, index: int, member: Member) -> _Client:
        who = f"client {index} ({member.identity})"
        if member.token and not _token_may_travel(self.url):
            host = urlsplit(self.url).hostname
            raise ProbeError(f"{who} would send its token unencrypted over ws:// to {host}: use a wss:// URL (sync.url)", url=self.url)
        headers = {"Authorization": f"Bearer {member.token}"} if member.token else None
        try:
            connection = await _Connect(
                self.url,
                ssl=self.options.ssl if self.url.startswith("wss:") else None,
                additional_headers=headers,
                compression=None,
                proxy=None,  # never through an environment proxy: the probe talks to the target itself
                user_agent_header=USER_AGENT,
                open_timeout=self.options.timeout_s,
                close_timeout=self.options.timeout_s,
                ping_interval=None,  # the probe is short; a keepalive ping would only add frames
                max_size=self.options.max_frame_bytes,
                create_connection=FailFastConnection,  # a refused frame ends the connection now, not after close_timeout
            )
        except InvalidStatus as exc:
            body = exc.response.body.decode("utf-8", errors="replace")[:EXCERPT_CHARS] if exc.response.body else ""
            raise ProbeError(f"{who} could not join: HTTP {exc.response.status_code} {body}".rstrip(), url=self.url) from None
        except TimeoutError:
            raise ProbeTimeout(f"{who} could not join within {self.options.timeout_s:g} s", url=self.url) from None
        except (OSError, InvalidHandshake, InvalidURI) as exc:
            raise ProbeError(f"{who} could not join: {type(exc).__name__}: {exc}", url=self.url) from None
        client = _Client(index, member, connection)
        # Registered at once, not when every client has joined: a probe cut short still closes it.
        self.clients.append(client)
        return client

    async def _read(self, client: _Client) -> None:
        try:
            while True:
                frame = await client.connection.recv()
                self._received(client, self.clock(), frame)
        except ConnectionClosed as exc:
            client.closed = _close_text(exc)
            self.settled.set()
        except Exception as exc:  # whatever a hostile frame did, this client sees nothing more
            # Recorded like a lost connection, so the judge says error: a crashed reader is not "every event lost".
            client.closed = f"reader crashed: {type(exc).__name__}"
            self.settled.set()

    def _received(self, client: _Client, at: float, frame: str | bytes) -> None:
        client.frames += 1
        if client.frames > self.frame_cap + len(self.sent) * len(self.clients):
            return
        text = frame if isinstance(frame, str) else frame.decode("utf-8", errors="replace")
        seq = self._seq(text)
        if seq is not None:
            client.seqs.append(seq)
        # A frame may carry a nonce more than once (an edit's text and its echo field): one receipt per frame.
        found = [n for n in dict.fromkeys(self._pattern.findall(text)) if n in self.sent]
        if not found and len(client.unmatched) < UNMATCHED_SHOWN:
            client.unmatched.append(text[:EXCERPT_CHARS])
        for marker in found:
            client.receipts.append(Receipt(marker, at, seq))
            self.missing.discard((client.index, marker))
        if found and not self.sending and not self.missing:
            self.settled.set()

    def _seq(self, text: str) -> int | None:
        if self._seq_of is None:
            return None
        try:
            value = self._seq_of(json.loads(text))
        except (ValueError, LookupError, TypeError, RecursionError):  # not JSON, no such path, nested too deep
            return None
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def expect(self, marker: str, receivers: Iterable[int]) -> None:
        self.sent.add(marker)
        self.missing.update((r, marker) for r in receivers)

    async def send(self, client: _Client, text: str) -> bool:
        """False when the connection is gone (recorded on the client)."""
        if client.closed is not None:
            return False
        try:
            await client.connection.send(text)
        except ConnectionClosed as exc:
            client.closed = client.closed or _close_text(exc)
            self.settled.set()
            return False
        return True

    async def settle(self, deadline: float) -> None:
        """Wait until everything expected arrived, a connection was lost, or ``deadline`` (monotonic) passed."""
        self.sending = False
        if not self.missing:
            self.settled.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.settled.wait(), timeout=max(0.0, deadline - self.clock()))

    async def linger(self, grace_s: float) -> float:
        """Everything arrived: keep reading ``grace_s`` longer, so a late duplicate is counted; the time lingered."""
        if self.missing or any(c.closed is not None for c in self.clients):
            return 0.0  # something is missing or gone anyway: the verdict does not hang on a duplicate
        await asyncio.sleep(grace_s)
        return grace_s

    async def leave(self) -> None:
        """Stop reading, then close every connection (in parallel, each bounded by close_timeout)."""
        readers = [c.reader for c in self.clients if c.reader is not None]
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await asyncio.gather(*(c.connection.close() for c in self.clients), return_exceptions=True)
        for client in self.clients:
            if not client.connection.transport.is_closing():
                client.connection.transport.abort()


def _token_may_travel(url: str) -> bool:
    """A bearer token goes over wss://, or over ws:// to this machine only."""
    parts = urlsplit(url)
    if parts.scheme != "ws":
        return True
    host = (parts.hostname or "").lower()
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _close_text(exc: ConnectionClosed) -> str:
    if exc.rcvd is None and exc.sent is not None:
        # The probe failed the connection itself (a frame over max_frame_bytes: 1009, a protocol
        # error: 1002): say so, rather than blame a lost connection.
        reason = f" ({exc.sent.reason[:EXCERPT_CHARS]})" if exc.sent.reason else ""
        return f"closed by the probe with {exc.sent.code}{reason}"
    if exc.rcvd is None:
        return "the connection was lost without a close frame"
    reason = f" ({exc.rcvd.reason[:EXCERPT_CHARS]})" if exc.rcvd.reason else ""
    return f"closed by the server with {exc.rcvd.code}{reason}"


async def _sleep_until(at: float, clock: Clock) -> None:
    delay = at - clock()
    if delay > 0:
        await asyncio.sleep(delay)


async def _within(budget_s: float, what: str, url: str, work: Callable[[], Awaitable[None]]) -> None:
    try:
        async with asyncio.timeout(budget_s):
            await work()
    except TimeoutError:
        raise ProbeTimeout(f"the {what} probe did not finish within its budget of {budget_s:.1f} s", url=url) from None


def grace_ms(timeout_ms: float) -> float:
    """How long the clients keep listening after everything arrived (late duplicates)."""
    return min(timeout_ms, DUPLICATE_GRACE_MS)


def probe_budget_s(actions_per_client: int, *, interval_ms: float, timeout_ms: float, options: WsOptions) -> float:
    """The longest one probe may take: joining, sending on schedule, waiting, the grace, and closing."""
    sending = actions_per_client * interval_ms / 1000
    return options.timeout_s + sending + (timeout_ms + grace_ms(timeout_ms)) / 1000 + BUDGET_SLACK_S + options.timeout_s


async def collaborate(
    url: str,
    members: Sequence[Member],
    kinds: Sequence[str],
    compose: Compose,
    *,
    rounds: int,
    interval_ms: float,
    timeout_ms: float,
    options: WsOptions,
    seq_of: SeqOf | None = None,
    seq_path: str | None = None,
    clock: Clock = time.monotonic,
) -> CollaborationObservation:
    """All ``members`` join ``url``; then each sends every kind ``rounds`` times, interval_ms apart, all at once.

    After the last action the probe waits up to timeout_ms for what has not arrived yet, then
    lingers for :func:`grace_ms` if everything did. ``seq_path`` names what ``seq_of`` reads, for
    evidence. ProbeError when a client cannot join or the probe outlives its budget.
    """
    if len(members) < 2:
        raise ValueError("collaboration needs at least two clients")
    room = _Room(url, members, options, seq_of=seq_of, clock=clock)
    interval_s = interval_ms / 1000
    per_client = rounds * len(kinds)
    actions: list[Action] = []
    waited, lingered = [0.0], [0.0]

    async def client_sends(client: _Client, start: float) -> None:
        others = [c.index for c in room.clients if c is not client]
        for n in range(per_client):
            kind = kinds[n % len(kinds)]
            marker = nonce(room.run, client.index, n)
            text = compose(kind, marker)
            await _sleep_until(start + n * interval_s, clock)
            room.expect(marker, others)
            actions.append(Action(marker, kind, client.index, n, clock()))
            if not await room.send(client, text):
                return

    async def work() -> None:
        await room.join()
        start = clock()
        await asyncio.gather(*(client_sends(c, start) for c in room.clients))
        last = clock()
        await room.settle(last + timeout_ms / 1000)
        waited[0] = (clock() - last) * 1000
        lingered[0] = await room.linger(grace_ms(timeout_ms) / 1000) * 1000

    # Closing is bounded on its own (close_timeout), after the work.
    budget = probe_budget_s(per_client, interval_ms=interval_ms, timeout_ms=timeout_ms, options=options) - options.timeout_s
    try:
        await _within(budget, "collaboration", url, work)
    finally:
        await room.leave()
    clients = tuple(c.log() for c in room.clients)
    return CollaborationObservation(
        url=url,
        clients=clients,
        actions=tuple(sorted(actions, key=lambda a: a.sent_at)),
        kinds=tuple(kinds),
        rounds=rounds,
        interval_ms=interval_ms,
        timeout_ms=timeout_ms,
        waited_ms=waited[0],
        # Claimed only with data: a protocol without the number must not read as "checked, fine".
        seq_checked=seq_of is not None and any(c.seqs for c in clients),
        seq_path=None if seq_of is None else (seq_path or "a sequence number"),
        grace_ms=lingered[0],
    )


async def round_trips(
    url: str,
    sender: Member,
    receiver: Member,
    compose: Callable[[str], str],
    *,
    count: int,
    interval_ms: float,
    timeout_ms: float,
    options: WsOptions,
    clock: Clock = time.monotonic,
) -> LatencyObservation:
    """A sends ``compose(nonce)`` every interval_ms on a fixed schedule, ``count`` times; B's receipts are timed.

    Open loop: a send never waits for an earlier delivery. Each action's scheduled time and its
    actual send time are kept (latency counts from the schedule), each receipt's time is read the
    moment its frame is read, all on ``clock``. After everything arrived, the clients linger for
    :func:`grace_ms` so late duplicates are counted.
    """
    room = _Room(url, [sender, receiver], options, seq_of=None, clock=clock)
    interval_s = interval_ms / 1000
    plan: list[tuple[str, float, float]] = []  # nonce, scheduled, sent
    lingered = [0.0]

    async def work() -> None:
        await room.join()
        a, b = room.clients
        start = clock()
        for n in range(count):
            marker = nonce(room.run, 0, n)
            text = compose(marker)
            scheduled = start + n * interval_s
            await _sleep_until(scheduled, clock)
            room.expect(marker, [b.index])
            plan.append((marker, scheduled, clock()))
            if not await room.send(a, text):
                return
        await room.settle(clock() + timeout_ms / 1000)
        lingered[0] = await room.linger(grace_ms(timeout_ms) / 1000) * 1000

    budget = probe_budget_s(count, interval_ms=interval_ms, timeout_ms=timeout_ms, options=options) - options.timeout_s
    try:
        await _within(budget, "sync latency", url, work)
    finally:
        await room.leave()
    a_log, b_log = (c.log() for c in room.clients)
    first_at_b: dict[str, float] = {}
    copies: Counter[str] = Counter()
    for receipt in b_log.receipts:
        first_at_b.setdefault(receipt.nonce, receipt.at)
        copies[receipt.nonce] += 1
    first_at_a: dict[str, float] = {}
    for receipt in a_log.receipts:
        first_at_a.setdefault(receipt.nonce, receipt.at)
    trips = tuple(
        RoundTrip(marker, scheduled, sent, first_at_b.get(marker), first_at_a.get(marker), copies[marker])
        for marker, scheduled, sent in plan
    )
    return LatencyObservation(
        url=url,
        sender=a_log,
        receiver=b_log,
        round_trips=trips,
        planned=count,
        interval_ms=interval_ms,
        timeout_ms=timeout_ms,
        grace_ms=lingered[0],
    )


def run_blocking(work: Callable[[], Awaitable[T]], budget_s: float) -> T:
    """``work()`` on a fresh event loop, for a (synchronous) check; ProbeTimeout after ``budget_s``.

    ``work`` bounds itself; ``budget_s`` is the backstop should anything below ignore its own
    timeout (and the place a check clamps the probe to the run's remaining deadline). Not
    asyncio.run(): it joins the default executor on the way out, so a getaddrinfo() stuck in a
    slow resolver would hold the check past its deadline (as in probes.http.get).
    """
    if budget_s <= 0:
        raise ProbeTimeout("no time left for the sync probe: the run's deadline has passed")
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(asyncio.wait_for(work(), budget_s))
    except TimeoutError:
        raise ProbeTimeout(f"the sync probe did not finish within its total budget of {budget_s:.1f} s") from None
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
