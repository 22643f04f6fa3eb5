"""TLS endpoints that misbehave: the TLS checks and an ordinary HTTPS health check end in time and never promote.

Each misbehaviour meets two clients of the gate: the pre-deploy TLS checks (security.tls.*, one
sslyze scan shared by the three; see probes/tls.py) and a post-deploy health check over HTTPS
(httpx through probes/http.py). A scan that cannot complete makes every TLS check ``error``; a
handshake the health probe cannot finish is an ``error`` too; a chain nobody trusts *fails* the
certificate check (the server really presents an untrusted certificate).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import GateResult, assert_fails_closed, record_row, run_gate
from http_servers import HostileServer, answer, chain_of, http, tls_reset_mid_handshake, tls_stall

TIMEOUT_S = 2
# sslyze's scan has its own budget (20 x probe.timeout_s); the run's deadline leaves room for it.
DEADLINE_S = 60
GATES = f"deadline_s: {DEADLINE_S}\nprobe: {{timeout_s: {TIMEOUT_S}, retry: {{timeout_s: 0}}}}\n"
TLS_CHECKS = ["security.tls.protocols", "security.tls.ciphers", "security.tls.certificate"]
STARTUP_S = 10.0

# (client, stage, checks): who meets the misbehaving endpoint.
CLIENTS = [
    pytest.param("sslyze scan", "pre-deploy", TLS_CHECKS, id="tls-checks"),
    pytest.param("HTTPS health check", "post-deploy", ["health.liveness"], id="https-health"),
]


def gate(tmp_path: Path, base_url: str, *, stage: str, only: list[str], extra: str = "") -> GateResult:
    return run_gate(
        tmp_path,
        target=f"name: hostile-tls\nbase_url: {base_url}\nhealth: {{liveness: /healthz}}\n{extra}",
        gates=GATES,
        stage=stage,
        only=only,
    )


STALL = {
    "pre-deploy": (
        f"did not answer the TLS ClientHello within {TIMEOUT_S} s",
        f"error: TLS scan incomplete, no answer to the ClientHello within {TIMEOUT_S} s",
    ),
    "post-deploy": (f"no complete answer within {TIMEOUT_S} s", f"error: no complete answer within {TIMEOUT_S} s"),
}


@pytest.mark.parametrize(("client", "stage", "checks"), CLIENTS)
def test_a_handshake_that_stalls_ends_at_the_timeout(tmp_path: Path, client: str, stage: str, checks: list[str]) -> None:
    # Given an endpoint that accepts TCP, reads the ClientHello and never answers it
    with HostileServer(tls_stall()) as server:
        result = gate(tmp_path, f"https://127.0.0.1:{server.port}", stage=stage, only=checks)
    # Then the client gives up on its own timeout (sslyze: per connection and version tried, within
    # the scan budget of 20 x probe.timeout_s; httpx: the whole exchange) and every affected check is
    # an error that names the stall and holds the gate
    cause, outcome = STALL[stage]
    assert_fails_closed(result, affected=checks, deadline_s=DEADLINE_S, cause=cause)
    assert result.seconds < 20 * TIMEOUT_S + STARTUP_S
    record_row("TLS", f"handshake stalls after the ClientHello ({client})", result, checks=checks, outcome=outcome)


RESET = {
    "pre-deploy": ("the server reset the connection during the TLS handshake", "error: TLS scan incomplete, reset during the handshake"),
    "post-deploy": ("cannot connect: .*Connection reset by peer", "error: cannot connect, connection reset by peer"),
}


@pytest.mark.parametrize(("client", "stage", "checks"), CLIENTS)
def test_a_reset_in_the_middle_of_the_handshake_is_an_error(tmp_path: Path, client: str, stage: str, checks: list[str]) -> None:
    # Given an endpoint that reads the ClientHello, sends the first bytes of a ServerHello, then resets (RST)
    with HostileServer(tls_reset_mid_handshake()) as server:
        result = gate(tmp_path, f"https://127.0.0.1:{server.port}", stage=stage, only=checks)
    # Then nothing was measured: an error per check naming the reset, at once, and the gate holds
    cause, outcome = RESET[stage]
    assert_fails_closed(result, affected=checks, deadline_s=DEADLINE_S, cause=cause)
    assert result.seconds < 2 * TIMEOUT_S + STARTUP_S
    record_row("TLS", f"reset in the middle of the handshake ({client})", result, checks=checks, outcome=outcome)


CHAIN_CLIENTS = [
    pytest.param(
        "sslyze scan", "pre-deploy", ["security.tls.certificate"], False, "failed", r"chain not trusted by any store \(.*exceeds max depth",
        "failed: not trusted (chain construction exceeds max depth)", id="tls-certificate",
    ),
    pytest.param(
        "sslyze scan, root given as ca_bundle", "pre-deploy", ["security.tls.certificate"], True, "failed",
        r"chain not trusted by any store \(Supplied CA file: .*exceeds max depth",
        "failed: not trusted even by the supplied CA (exceeds max depth)", id="tls-certificate-own-ca",
    ),
    pytest.param(
        "HTTPS health check", "post-deploy", ["health.liveness"], False, "error", "certificate verify failed: unable to get local issuer",
        "error: cannot connect, certificate verify failed", id="https-health",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("client", "stage", "checks", "own_ca", "verdict", "cause", "outcome"), CHAIN_CLIENTS)
def test_a_chain_of_50_intermediates_is_bounded_and_not_trusted(
    tmp_path: Path, client: str, stage: str, checks: list[str], own_ca: bool, verdict: str, cause: str, outcome: str
) -> None:
    # Given an HTTPS server presenting its leaf plus 50 intermediate CAs (51 certificates, ~30 KB),
    # under a root nobody trusts, or one the target names as its ca_bundle
    chain = chain_of(tmp_path, 50)
    extra = f"tls: {{ca_bundle: {chain.root_file}}}\n" if own_ca else ""
    with HostileServer(http(answer("200 OK", b"ok")), tls=chain.server_context()) as server:
        result = gate(tmp_path / "run", server.base_url, stage=stage, only=checks, extra=extra)
    # Then the run ends, bounded in time and memory. The certificate check *fails*: the server really
    # serves a chain no store validates (sslyze's verifier stops building it at its maximum depth,
    # even from the right root). The health probe cannot finish a verified handshake with an
    # unknown root, so it could not judge liveness (error). Neither promotes.
    assert_fails_closed(result, affected=checks, deadline_s=DEADLINE_S, outcomes=(verdict,), cause=cause)
    assert result.seconds < 2 * TIMEOUT_S + STARTUP_S
    record_row("TLS", f"certificate chain of 50 intermediates ({client})", result, checks=checks, outcome=outcome)
