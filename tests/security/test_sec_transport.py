"""security.transport.https: the plain-HTTP probe against loopback servers, and its judge."""

from __future__ import annotations

import socket

import pytest

from loopback import Route, refused_port, serve
from releasegate._exceptions import ProbeError, ProbeTimeout
from releasegate.probes import transport
from releasegate.probes.http import HttpObservation

HTTPS = "https://127.0.0.1:8443"


def judged(routes: dict[str, Route], https_url: str = HTTPS, path: str = "") -> tuple[str, str, dict[str, object]]:
    with serve(dict(routes)) as server:
        answer = transport.probe(server.base_url + path, timeout_s=2)
    finding = transport.judge(answer, https_url=https_url)
    return finding.outcome, finding.summary, finding.evidence


def test_refused_connection_passes() -> None:
    url = f"http://127.0.0.1:{refused_port()}"
    answer = transport.probe(url, timeout_s=2)
    assert isinstance(answer, transport.Refused)
    assert transport.judge(answer, https_url=HTTPS).outcome == "passed"


@pytest.mark.parametrize("status", [301, 308])
def test_permanent_redirect_to_https_on_the_same_host_passes(status: int) -> None:
    outcome, summary, evidence = judged({"/": Route(status, headers={"Location": HTTPS + "/"})})
    assert (outcome, summary) == ("passed", f"HTTP {status} to {HTTPS}/")
    assert evidence["status"] == status


@pytest.mark.parametrize("status", [302, 307])
def test_temporary_redirect_warns(status: int) -> None:
    outcome, summary, _ = judged({"/": Route(status, headers={"Location": HTTPS + "/"})})
    assert outcome == "warned"
    assert "not permanent" in summary


def test_api_content_over_http_fails_and_its_body_is_not_kept() -> None:
    outcome, summary, evidence = judged({"/": Route(200, {"service": "api", "secret-ish": "x" * 100})})
    assert outcome == "failed"
    assert summary.startswith("API content over http: HTTP 200 with")
    assert "body_excerpt" not in evidence


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("https://evil.example/", "another host"),
        ("http://127.0.0.1:8443/", "http://, not https"),
        ("/login", "relative location"),
    ],
)
def test_redirects_off_host_or_staying_on_http_fail(location: str, reason: str) -> None:
    outcome, summary, _ = judged({"/": Route(301, headers={"Location": location})})
    assert outcome == "failed"
    assert reason in summary


def test_redirect_without_location_fails() -> None:
    assert judged({"/": Route(308)})[0] == "failed"


def test_redirect_to_another_port_than_the_service_warns() -> None:
    outcome, summary, _ = judged({"/": Route(308, headers={"Location": "https://127.0.0.1/"})})
    assert outcome == "warned"
    assert "port 443" in summary


def test_upgrade_required_passes_and_an_error_page_warns() -> None:
    assert judged({"/": Route(426)})[0] == "passed"
    assert judged({"/": Route(404, "nope")})[0] == "warned"


def test_the_probe_never_sends_credentials() -> None:
    with serve({"/": Route(308, headers={"Location": HTTPS + "/"})}) as server:
        transport.probe(server.base_url, timeout_s=2)
        ((path, headers),) = server.requests
    assert path == "/"
    assert "authorization" not in headers and "cookie" not in headers


def test_a_silent_server_is_a_timeout_not_a_refusal() -> None:
    # Given an endpoint that accepts the connection but never answers
    with serve({"/": Route(200, "late", delay_s=1)}) as server, pytest.raises(ProbeTimeout):
        transport.probe(server.base_url, timeout_s=0.3)


def test_a_tcp_connect_timeout_is_a_probe_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    def silent(*_args: object, **_kwargs: object) -> socket.socket:
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "create_connection", silent)
    with pytest.raises(ProbeTimeout, match="neither refused nor accepted"):
        transport.probe("http://127.0.0.1:9/", timeout_s=0.1)


def test_only_plain_http_urls_are_probed() -> None:
    with pytest.raises(ProbeError, match="not a plain http"):
        transport.probe("https://127.0.0.1:1/", timeout_s=0.1)


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("https://app.example.test:8443", "http://app.example.test"),
        ("https://app.example.test/api", "http://app.example.test/api"),
        ("https://[::1]:8443", "http://[::1]"),
    ],
)
def test_default_http_url_is_port_80_of_the_same_host(base_url: str, expected: str) -> None:
    assert transport.default_http_url(base_url) == expected


def test_judge_on_a_hand_built_answer() -> None:
    answer = HttpObservation(
        url="http://app.example.test/",
        status=301,
        reason="Moved Permanently",
        headers={"Location": "https://APP.example.test/"},
        body=b"",
        truncated=False,
        latency_ms=1.0,
    )
    assert transport.judge(answer, https_url="https://app.example.test").outcome == "passed"
