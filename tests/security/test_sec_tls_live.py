"""The TLS and transport checks against the live reference deployment, through `releasegate run`.

Healthy, all four pass; each proving fault fails its own check and no other. The service is
started directly (server.start) with a minimal target file: the TLS checks need no token, and
`demo.running` cannot log in to a service whose certificate is expired or names another host.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from loopback import refused_port, serve
from releasegate.cli import main
from releasegate.probes import tls
from releasegate.reference import server
from releasegate.reference.settings import ServiceSettings

IDS = ["security.transport.https", "security.tls.protocols", "security.tls.ciphers", "security.tls.certificate"]
GATES = "probe: {timeout_s: 5, retry: {timeout_s: 0}}\n"


@contextmanager
def reference(tmp_path: Path, *faults: str) -> Iterator[Path]:
    """The reference deployment with ``faults``; yields the path of a target file describing it."""
    data = tmp_path / "service"
    with server.start(ServiceSettings(data_dir=data, faults=frozenset(faults))) as service:
        target = tmp_path / "target.yaml"
        target.write_text(
            f"name: tls-live\nbase_url: {service.base_url}\nhttp_url: {service.http_url}\ntls: {{ca_bundle: {service.ca_path}}}\n",
            encoding="utf-8",
        )
        yield target


def gate(tmp_path: Path, target: Path) -> tuple[dict[str, Any], float]:
    gates = tmp_path / "gates.yaml"
    gates.write_text(GATES, encoding="utf-8")
    report = tmp_path / "report"
    started = time.perf_counter()
    code = main(
        ["run", "--stage", "pre-deploy", "--target", str(target), "--gates", str(gates), "--only", *IDS, "--report-dir", str(report)]
    )
    wall = time.perf_counter() - started
    verdict: dict[str, Any] = json.loads((report / "verdict.json").read_text(encoding="utf-8"))
    assert verdict["exit_code"] == code
    return verdict, wall


def outcomes(verdict: dict[str, Any]) -> dict[str, str]:
    return {c["id"]: c["outcome"] for c in verdict["checks"]}


def test_healthy_reference_passes_all_four(tmp_path: Path) -> None:
    with reference(tmp_path) as target:
        verdict, wall = gate(tmp_path, target)
    assert outcomes(verdict) == dict.fromkeys(IDS, "passed"), verdict["reasons"]
    assert verdict["decision"] == "pass"
    # Not a benchmark (bench/ has that), only a guard against a scan that went badly slow.
    assert wall < 15, wall


@pytest.mark.parametrize(
    ("fault", "proven", "summary"),
    [
        ("http-no-redirect", "security.transport.https", "API content over http"),
        ("tls-legacy", "security.tls.protocols", "TLSv1.0, TLSv1.1 accepted"),
        ("tls-weak-ciphers", "security.tls.ciphers", "TLS_RSA_WITH_AES_128_CBC_SHA (static RSA, no forward secrecy, CBC)"),
        ("cert-expired", "security.tls.certificate", "certificate expired 1 day(s) ago"),
        ("cert-expiring", "security.tls.certificate", "certificate expires in 5 day(s), fewer than 14"),
        ("cert-wrong-host", "security.tls.certificate", "certificate names wrong-host.example.test, not localhost"),
    ],
)
def test_a_fault_fails_its_check_and_no_other(tmp_path: Path, fault: str, proven: str, summary: str) -> None:
    # Given the reference deployment with one TLS or transport fault
    with reference(tmp_path, fault) as target:
        verdict, _ = gate(tmp_path, target)
    checks = {c["id"]: c for c in verdict["checks"]}
    # Then the check it proves fails, saying why
    assert checks[proven]["outcome"] == "failed"
    assert summary in checks[proven]["summary"]
    # And the other three pass (under tls-legacy the cipher check warns about the TLS 1.0 suites
    # that OpenSSL also offers on TLS 1.2; the protocols check fails the cause)
    others = {i: "warned" if (fault, i) == ("tls-legacy", "security.tls.ciphers") else "passed" for i in IDS if i != proven}
    assert {i: o for i, o in outcomes(verdict).items() if i != proven} == others
    assert verdict["decision"] == "rollback"


def test_an_unreachable_tls_endpoint_holds_the_gate(tmp_path: Path) -> None:
    # Given a target whose HTTPS port refuses connections and whose HTTP port is a plain HTTP server
    target = tmp_path / "target.yaml"
    with serve({}) as plain:
        target.write_text(f"name: down\nbase_url: https://127.0.0.1:{refused_port()}\nhttp_url: {plain.base_url}\n", encoding="utf-8")
        verdict, _ = gate(tmp_path, target)
    # Then every TLS check could not judge (error), never passed, and the gate holds
    found = outcomes(verdict)
    assert {i: found[i] for i in IDS[1:]} == dict.fromkeys(IDS[1:], "error")
    assert verdict["decision"] == "hold"


def test_scanning_a_plain_http_port_is_a_failed_scan() -> None:
    with serve({}) as plain:
        result = tls.scan("127.0.0.1", plain.port, ca_file=None, timeout_s=1, commands=tls.COMMANDS_NEEDED["protocols"])
    assert isinstance(result, tls.ScanFailed)
    assert "cannot connect over TLS" in result.reason


def test_a_scan_over_its_budget_is_abandoned() -> None:
    result = tls.scan("127.0.0.1", refused_port(), ca_file=None, timeout_s=1, commands={"certificate_info"}, budget_s=0.0)
    assert isinstance(result, tls.ScanFailed)
    assert "scan budget" in result.reason or "cannot connect" in result.reason


def test_an_unresolvable_host_is_a_failed_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    def nxdomain(*_args: object, **_kwargs: object) -> list[Any]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", nxdomain)  # no DNS from tests
    result = tls.scan("no-such-host.invalid", 443, ca_file=None, timeout_s=1, commands={"certificate_info"})
    assert isinstance(result, tls.ScanFailed)
    assert "cannot resolve" in result.reason


@pytest.mark.parametrize(("host", "ip"), [("localhost", "127.0.0.1"), ("127.0.0.1", "127.0.0.1"), ("[::1]", "::1")])
def test_resolve_pins_loopback(host: str, ip: str) -> None:
    assert tls.resolve(host, 443) == ip


# --- why a scan could not connect --------------------------------------------------------------


@contextmanager
def raw_tls_peer(after_client_hello: str) -> Iterator[int]:
    """A TCP peer that reads the ClientHello, then "stalls" (says nothing) or "resets" (RST); its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)
    done = threading.Event()

    def serve_one() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            try:
                conn.recv(4096)
                if after_client_hello == "resets":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                else:
                    done.wait(5)
            except OSError:
                pass

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        done.set()
        listener.close()
        thread.join(6)


@pytest.mark.parametrize(
    ("behaviour", "said"),
    [
        ("stalls", "the server accepted the TCP connection but did not answer the TLS ClientHello within 0.5 s"),
        ("resets", "the server reset the connection during the TLS handshake"),
    ],
)
def test_a_handshake_that_stalls_or_resets_is_named_as_such(behaviour: str, said: str) -> None:
    # sslyze alone says "could not find a TLS version and cipher suite supported by the server",
    # which sends the reader to the TLS configuration when the server never answered at all
    with raw_tls_peer(behaviour) as port:
        started = time.monotonic()
        assert tls.handshake_problem("127.0.0.1", "127.0.0.1", port, timeout_s=0.5) == said
        assert time.monotonic() - started < 3


def test_a_server_that_answers_in_tls_has_no_handshake_problem(tmp_path: Path) -> None:
    # Whatever the certificate: the handshake completes, so sslyze's own account of a failure stands
    with server.start(ServiceSettings(data_dir=tmp_path / "service")) as service:
        parts = urlsplit(service.base_url)
        assert parts.hostname is not None and parts.port is not None
        assert tls.handshake_problem(parts.hostname, "127.0.0.1", parts.port, timeout_s=2) is None


def test_a_plain_http_port_is_named_as_not_tls() -> None:
    with serve({}) as plain:
        assert (
            tls.handshake_problem("127.0.0.1", "127.0.0.1", plain.port, timeout_s=1)
            == "the server does not answer in TLS (WRONG_VERSION_NUMBER)"
        )
