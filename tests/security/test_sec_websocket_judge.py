"""The WebSocket family's judges and URL/token helpers: plain data in, one finding out, no network."""

from __future__ import annotations

import json
import ssl

import pytest

from releasegate.config import Target
from releasegate.probes import websocket
from releasegate.probes.websocket import ConnectionLimitObservation, Handshake, Held, MessageSizeObservation
from releasegate.results import Finding

URL = "wss://app.example.test/ws/sync"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MX0.c2lnbmF0dXJlLW9mLXRoZS12YWxpZC10b2tlbg"


def hs(label: str, status: int | None = None, **fields: object) -> Handshake:
    return Handshake(label=label, url=URL, status=status, **fields)  # type: ignore[arg-type]


def accepted(label: str) -> Handshake:
    return hs(label, 101)


def serialisable(finding: Finding) -> str:
    return json.dumps({"observed": finding.observed, "expected": finding.expected, "evidence": finding.evidence})


# --- auth -----------------------------------------------------------------------------------------


def test_auth_passes_when_both_bad_attempts_are_refused_and_the_token_is_accepted() -> None:
    finding = websocket.judge_auth(hs("no credentials", 401), hs("invalid token", 403), accepted("valid token"))
    assert finding.outcome == "passed"
    assert finding.observed == {"no credentials": "401 (refused)", "invalid token": "403 (refused)", "valid token": "101 (accepted)"}
    assert "note" not in finding.summary
    serialisable(finding)


@pytest.mark.parametrize("which", ["anonymous", "invalid"])
def test_auth_fails_when_a_bad_attempt_is_upgraded_even_if_the_control_is_refused(which: str) -> None:
    anonymous = accepted("no credentials") if which == "anonymous" else hs("no credentials", 401)
    invalid = accepted("invalid token") if which == "invalid" else hs("invalid token", 401)
    finding = websocket.judge_auth(anonymous, invalid, hs("valid token", 401))
    assert finding.outcome == "failed"
    assert ("no credentials" if which == "anonymous" else "invalid token") + ": 101" in finding.summary


def test_auth_cannot_judge_when_the_gate_token_is_refused() -> None:
    finding = websocket.judge_auth(hs("no credentials", 401), hs("invalid token", 401), hs("valid token", 401))
    assert finding.outcome == "error"
    assert "control" in finding.summary and "token" in finding.summary


def test_auth_cannot_judge_a_bad_attempt_that_got_no_answer() -> None:
    timed_out = hs("no credentials", problem="timed out during opening handshake", timed_out=True)
    finding = websocket.judge_auth(timed_out, hs("invalid token", 401), accepted("valid token"))
    assert finding.outcome == "error"
    assert "timed out" in finding.summary


def test_auth_passes_an_unusual_refusal_with_a_note() -> None:
    finding = websocket.judge_auth(hs("no credentials", 400), hs("invalid token", 401), accepted("valid token"))
    assert finding.outcome == "passed"
    assert "note: refused with an unusual status: no credentials: 400" in finding.summary


def browser(tampered: int | None, valid: int | None) -> tuple[Handshake, Handshake]:
    return hs("invalid token via subprotocol (bearer, <token>)", tampered), hs("valid token via subprotocol", valid)


def test_auth_passes_when_the_browser_subprotocol_refuses_the_tampered_token_and_takes_the_valid_one() -> None:
    finding = websocket.judge_auth(hs("no credentials", 401), hs("invalid token", 401), accepted("valid token"), browser(401, 101))
    assert finding.outcome == "passed", finding.summary
    assert "invalid token via subprotocol (bearer, <token>) (401)" in finding.summary
    assert finding.observed["valid token via subprotocol"] == "101 (accepted)"
    assert finding.expected["invalid token via subprotocol (bearer, <token>)"] == "refused: 401 or 403"


def test_auth_fails_when_the_tampered_token_is_accepted_as_a_subprotocol() -> None:
    finding = websocket.judge_auth(hs("no credentials", 401), hs("invalid token", 401), accepted("valid token"), browser(101, 101))
    assert finding.outcome == "failed"
    assert "invalid token via subprotocol (bearer, <token>): 101" in finding.summary


def test_an_accepted_tampered_subprotocol_fails_even_if_the_valid_one_is_refused() -> None:
    finding = websocket.judge_auth(hs("no credentials", 401), hs("invalid token", 401), accepted("valid token"), browser(101, 401))
    assert finding.outcome == "failed"


def test_a_target_without_subprotocol_auth_skips_that_half_with_a_note() -> None:
    finding = websocket.judge_auth(hs("no credentials", 401), hs("invalid token", 401), accepted("valid token"), browser(401, 401))
    assert finding.outcome == "passed"
    assert "subprotocol auth not judged: valid token via subprotocol was 401 (refused)" in finding.summary
    assert finding.expected["invalid token via subprotocol (bearer, <token>)"].startswith("not judged")
    assert len(finding.evidence["attempts"]) == 5


def test_the_subprotocol_tampered_token_unanswered_is_an_error_when_the_valid_one_works() -> None:
    finding = websocket.judge_auth(hs("no credentials", 401), hs("invalid token", 401), accepted("valid token"), browser(None, 101))
    assert finding.outcome == "error"


# --- origin ---------------------------------------------------------------------------------------


def test_origin_passes_when_every_foreign_origin_gets_403() -> None:
    foreign = [hs("Origin https://evil.example.test", 403), hs("Origin https://localhost.evil.example.test", 403)]
    finding = websocket.judge_origin(foreign, accepted("no Origin"))
    assert finding.outcome == "passed"
    assert finding.expected["Origin https://evil.example.test"] == "refused: 403"


def test_origin_fails_when_one_foreign_origin_is_upgraded() -> None:
    foreign = [hs("Origin https://evil.example.test", 403), accepted("Origin https://localhost.evil.example.test")]
    finding = websocket.judge_origin(foreign, accepted("no Origin"))
    assert finding.outcome == "failed"
    assert "localhost.evil.example.test: 101" in finding.summary


def test_origin_cannot_judge_without_an_accepted_control() -> None:
    assert websocket.judge_origin([hs("Origin x", 403)], hs("no Origin", 429)).outcome == "error"


def test_origin_null_accepted_fails() -> None:
    foreign = [hs("Origin https://evil.example.test", 403), accepted("valid token, Origin null")]
    finding = websocket.judge_origin(foreign, accepted("no Origin"))
    assert finding.outcome == "failed" and "Origin null: 101" in finding.summary


def test_origin_refused_with_401_passes_with_a_note() -> None:
    finding = websocket.judge_origin([hs("Origin x", 401)], accepted("no Origin"))
    assert (finding.outcome, "unusual" in finding.summary) == ("passed", True)


# --- plaintext ------------------------------------------------------------------------------------


PLAIN = "ws://app.example.test:80/ws/sync"


def plain(status: int | None = None, **fields: object) -> Handshake:
    return Handshake(label="no credentials (plaintext)", url=PLAIN, status=status, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("attempt", "outcome", "words"),
    [
        (plain(101), "failed", "accepted (101)"),
        (plain(401, headers={"www-authenticate": "Bearer"}), "failed", "asks for credentials"),
        (plain(308, headers={"location": "https://app.example.test/ws/sync"}), "passed", "redirected with 308 to https://"),
        (plain(301), "passed", "redirected with 301"),
        (plain(403), "passed", "refused with 403"),
        (plain(426), "passed", "refused with 426"),
        (plain(problem="connection refused", connection_refused=True), "passed", "nothing listens"),
        (plain(problem="InvalidMessage: did not receive a valid HTTP response"), "passed", "not completed"),
        (plain(problem="timed out during opening handshake", timed_out=True), "error", "within the timeout"),
    ],
)
def test_plaintext_judgement(attempt: Handshake, outcome: str, words: str) -> None:
    finding = websocket.judge_plaintext(attempt, ws_url=URL)
    assert finding.outcome == outcome
    assert words in finding.summary
    serialisable(finding)


def test_a_plaintext_ws_url_fails_without_probing() -> None:
    finding = websocket.check_plaintext("ws://app.example.test/ws", None, settings())
    assert finding.outcome == "failed"
    assert "ws://" in finding.observed


# --- message size ---------------------------------------------------------------------------------


def size(**fields: object) -> MessageSizeObservation:
    return MessageSizeObservation(handshake=accepted("valid token"), sent_bytes=65_537, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("observation", "outcome", "observed"),
    [
        (size(server_close_code=1009, server_close_reason="too big"), "passed", "close 1009"),
        (size(server_close_code=1008, server_close_reason="policy"), "failed", "close 1008"),
        (size(server_close_code=1000), "failed", "close 1000"),
        (size(closed_without_frame=True), "failed", "closed without a close frame (1006)"),
        (size(frames_received=1, waited_ms=500.0), "failed", "still open"),
        (size(probe_close_code=1009), "error", "probe closed 1009"),
    ],
)
def test_message_size_judgement(observation: MessageSizeObservation, outcome: str, observed: str) -> None:
    finding = websocket.judge_message_size(observation, limit=65_536)
    assert (finding.outcome, finding.observed) == (outcome, observed)
    assert finding.expected == "close 1009 after a 65537-byte message"
    serialisable(finding)


def test_message_size_cannot_judge_without_an_accepted_connection() -> None:
    finding = websocket.judge_message_size(MessageSizeObservation(handshake=hs("valid token", 401)), limit=100)
    assert finding.outcome == "error"


def test_message_size_refuses_to_send_an_unbounded_message() -> None:
    finding = websocket.check_message_size(URL, websocket.MAX_PROBE_MESSAGE_BYTES, settings(token=JWT))
    assert finding.outcome == "error"
    assert "above what the probe sends" in finding.summary


# --- connection limit -----------------------------------------------------------------------------


def attempts(*statuses: int | None) -> tuple[Handshake, ...]:
    return tuple(hs(f"connection {i}", status, problem=None if status else "reset") for i, status in enumerate(statuses, 1))


def all_held(cap: int) -> tuple[Held, ...]:
    return tuple(Held(i, "open") for i in range(1, cap + 1))


def limit(*statuses: int | None, close: int | None = None, held: tuple[Held, ...] | None = None) -> ConnectionLimitObservation:
    """An observation of ``len(statuses) - 1`` as the cap; the first ones all held open unless ``held`` says otherwise."""
    cap = len(statuses) - 1
    return ConnectionLimitObservation(
        cap=cap, attempts=attempts(*statuses), extra_close_code=close, held=all_held(cap) if held is None else held
    )


def test_connection_limit_passes_when_the_extra_connection_gets_429() -> None:
    finding = websocket.judge_connection_limit(limit(101, 101, 101, 429))
    assert finding.outcome == "passed"
    assert finding.observed == "3 accepted; connection 4: 429 (refused)"
    assert finding.evidence["statuses"] == [101, 101, 101, 429]
    assert finding.evidence["held_open"] == 3 and finding.evidence["held_lost"] == []


def test_connection_limit_fails_when_every_connection_is_accepted() -> None:
    finding = websocket.judge_connection_limit(limit(101, 101, 101, 101))
    assert finding.outcome == "failed"
    assert "cap of 3 is not enforced" in finding.summary


@pytest.mark.parametrize(("code", "outcome"), [(1008, "passed"), (1013, "passed"), (4029, "passed"), (1000, "failed"), (1001, "failed")])
def test_an_accept_then_close_counts_only_with_a_code_that_says_limit(code: int, outcome: str) -> None:
    finding = websocket.judge_connection_limit(limit(101, 101, 101, close=code))
    assert finding.outcome == outcome, finding.summary
    assert f"closed {code}" in finding.observed


@pytest.mark.parametrize("code", [1006, 1011, 1002])
def test_an_accept_then_close_with_a_code_that_says_something_else_is_no_verdict(code: int) -> None:
    assert websocket.judge_connection_limit(limit(101, 101, 101, close=code)).outcome == "error"


@pytest.mark.parametrize(
    ("statuses", "close"),
    [((101, 101, 101, 101), 1000), ((101, 101, 101, 101), 1008), ((101, 101, 101, 429), None), ((101, 101, 101, 101), None)],
)
def test_a_server_that_closed_one_of_the_first_connections_is_never_judged_on_the_extra_one(
    statuses: tuple[int, ...], close: int | None
) -> None:
    # Given a server that closes idle connections (or evicts the oldest): connection 2 did not stay open
    held = (Held(1, "open"), Held(2, "closed", 1000), Held(3, "silent"))
    finding = websocket.judge_connection_limit(limit(*statuses, close=close, held=held))
    # Then whatever happened to connection 4, it shows nothing about a per-user cap
    assert finding.outcome == "error"
    assert "2 of the first 3 connections did not stay open" in finding.summary
    assert "connection 2: closed 1000; connection 3: no pong" in finding.summary
    assert finding.evidence["held_lost"] == ["connection 2: closed 1000", "connection 3: no pong"]


def test_unchecked_first_connections_are_no_verdict() -> None:
    observation = ConnectionLimitObservation(cap=2, attempts=attempts(101, 101, 429))
    assert websocket.judge_connection_limit(observation).outcome == "error"


@pytest.mark.parametrize(
    ("statuses", "outcome"),
    [
        ((101, 429), "warned"),  # a cap lower than the target names
        ((101, 503), "warned"),
        ((401,), "error"),  # the token itself is refused
        ((101, 500), "error"),
        ((101, None), "error"),
    ],
)
def test_connection_limit_stopped_within_the_cap(statuses: tuple[int | None, ...], outcome: str) -> None:
    assert websocket.judge_connection_limit(ConnectionLimitObservation(cap=3, attempts=attempts(*statuses))).outcome == outcome


@pytest.mark.parametrize(
    ("statuses", "outcome"),
    [
        ((101, 101, 101, 401), "error"),  # the extra one refused for another reason
        ((101, 101, 101, 500), "error"),
        ((101, 101, 101, None), "error"),
        ((101, 101, 101, 503), "passed"),
        ((101, 101, 101, 403), "passed"),
    ],
)
def test_connection_limit_other_answers(statuses: tuple[int | None, ...], outcome: str) -> None:
    assert websocket.judge_connection_limit(limit(*statuses)).outcome == outcome


def test_connection_limit_without_attempts_is_an_error() -> None:
    assert websocket.judge_connection_limit(ConnectionLimitObservation(cap=3, attempts=())).outcome == "error"


# --- URLs and tokens ------------------------------------------------------------------------------


def target(ws_url: str | None, query: str | None = None) -> Target:
    return Target.model_validate({"name": "t", "base_url": "https://app.example.test", "ws_url": ws_url, "websocket": {"query": query}})


@pytest.mark.parametrize(
    ("ws_url", "query", "expected"),
    [
        (URL, None, URL),
        (URL, "conversation=c1", URL + "?conversation=c1"),
        (URL, "?conversation=c1", URL + "?conversation=c1"),
        (URL + "?v=2", "conversation=c1", URL + "?v=2&conversation=c1"),
        (None, "conversation=c1", None),
    ],
)
def test_endpoint_appends_the_query(ws_url: str | None, query: str | None, expected: str | None) -> None:
    assert websocket.endpoint(target(ws_url, query)) == expected


@pytest.mark.parametrize(
    ("endpoint", "http_url", "expected"),
    [
        ("wss://localhost:8443/ws/sync?c=1", "http://localhost:8080", "ws://localhost:8080/ws/sync?c=1"),
        ("wss://app.example.test/ws", None, "ws://app.example.test:80/ws"),
        ("wss://app.example.test/ws", "http://plain.example.test", "ws://plain.example.test:80/ws"),
        ("wss://[::1]:8443/ws", None, "ws://[::1]:80/ws"),
        ("wss://app.example.test", None, "ws://app.example.test:80/"),
    ],
)
def test_plaintext_url_takes_host_and_port_of_the_plain_endpoint(endpoint: str, http_url: str | None, expected: str) -> None:
    assert websocket.plaintext_url(endpoint, http_url) == expected


def test_invalid_token_keeps_the_jwt_claims_but_replaces_the_whole_signature() -> None:
    bad = websocket.invalid_token(JWT)
    header, claims, signature = bad.split(".")
    assert bad != JWT and [header, claims] == JWT.split(".")[:2]
    assert signature == "A" * len(JWT.split(".")[2])
    assert websocket.invalid_token("h.c." + "A" * 10).endswith("B" * 10)
    assert websocket.invalid_token("opaque-token-0123456789") == "releasegate-invalid-token-0000000000000000"


def test_scrub_removes_the_token_and_its_jwt_parts_and_bounds_the_text() -> None:
    header, claims, _ = JWT.split(".")
    text = f"bad token {JWT}; claims {claims}; header {header}"
    cleaned = websocket.scrub(text, [JWT])
    assert JWT not in cleaned and claims not in cleaned and header not in cleaned
    assert cleaned.count("[redacted]") == 3
    assert len(websocket.scrub("x" * 5000, [])) == websocket.EVIDENCE_TEXT_CHARS


def settings(token: str | None = None) -> websocket.WsSettings:
    return websocket.WsSettings(timeout_s=1.0, ssl=ssl.create_default_context(), max_frame_bytes=1024, token=token)


def test_settings_never_show_the_token() -> None:
    assert JWT not in repr(settings(JWT))
    assert settings(JWT).secrets == (JWT, websocket.invalid_token(JWT))


def test_foreign_origins_include_a_name_that_begins_with_the_target_host() -> None:
    assert websocket.foreign_origins("wss://localhost:1234/ws") == (
        "https://evil.example.test",
        "https://localhost.evil.example.test",
        "null",
    )
