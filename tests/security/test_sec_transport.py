"""security.transport.https: the plain-HTTP probe against loopback servers, and its judge.

The single-path tests pin how one answer is judged; the multi-path tests are the half-done
port-80 block (root redirected, API proxied over http) the check exists to catch.
"""

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
    return finding.outcome, finding.summary, finding.evidence["paths"]["/"] if "paths" in finding.evidence else finding.evidence


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
    assert "temporary redirect: clients do not cache it" in summary


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


# --- several paths: the root and the API paths the target names -----------------------------------

REDIRECT = Route(308, headers={"Location": HTTPS + "/"})
CHALLENGE = Route(401, {"detail": "no token"}, headers={"WWW-Authenticate": 'Bearer realm="api"'})


def judged_paths(routes: dict[str, Route], paths: list[str]) -> tuple[str, str, dict[str, object], list[str]]:
    with serve(dict(routes)) as server:
        urls, left_out = transport.plan(server.base_url, paths)
        answers = transport.probe_paths(urls, timeout_s=2)
        sent = [path for path, _ in server.requests]
    finding = transport.judge(answers, https_url=HTTPS, left_out=left_out)
    return finding.outcome, finding.summary, finding.evidence, sent


def test_plan_dedupes_joins_and_caps_the_paths() -> None:
    paths = ["/api/v1/me", "api/v1/me", "/", "/api/v1/me", "/a", "/b", "/c", "/d", "/e"]
    urls, left_out = transport.plan("http://h.test:8080", paths)
    assert urls == [f"http://h.test:8080{p}" for p in ["/", "/api/v1/me", "/a", "/b", "/c", "/d"]]
    assert len(urls) == transport.MAX_PATHS
    assert left_out == ["/e"]
    # an http_url with a path of its own (base_url under a prefix) keeps it
    assert transport.plan("http://h.test/app", ["/api/"])[0] == ["http://h.test/app", "http://h.test/app/api/"]


def test_root_redirected_but_api_served_over_http_fails() -> None:
    # Given a port-80 block that redirects "/" but proxies the API over http
    routes = {"/": REDIRECT, "/api/v1/me": CHALLENGE, "/api/v1/conversations": Route(200, {"items": []})}
    # When the check probes the root and the API paths
    outcome, summary, evidence, sent = judged_paths(routes, ["/api/v1/me", "/api/v1/conversations", "/api/v1/me"])
    # Then it fails, naming both API paths, and keeps evidence per path
    assert outcome == "failed"
    assert summary.startswith("/api/v1/me: the API asks for credentials over plain http: HTTP 401 with WWW-Authenticate: Bearer")
    assert "/api/v1/conversations: API content over http: HTTP 200" in summary
    paths = evidence["paths"]
    assert isinstance(paths, dict)
    assert sorted(paths) == ["/", "/api/v1/conversations", "/api/v1/me"]
    assert "body_excerpt" not in paths["/api/v1/conversations"]
    assert sent == ["/", "/api/v1/me", "/api/v1/conversations"]  # each path once, in order


def test_every_path_redirected_permanently_passes() -> None:
    routes = {"/": REDIRECT, "/api/v1/me": Route(301, headers={"Location": HTTPS + "/api/v1/me"})}
    outcome, summary, evidence, _ = judged_paths(routes, ["/api/v1/me"])
    assert outcome == "passed", summary
    assert summary == "all 2 probed paths redirect permanently to https (HTTP 301/308): /, /api/v1/me"


def test_a_temporary_redirect_on_one_api_path_warns_explaining_why() -> None:
    routes = {"/": REDIRECT, "/api/": Route(307, headers={"Location": HTTPS + "/api/"})}
    outcome, summary, _, _ = judged_paths(routes, ["/api/"])
    assert outcome == "warned"
    assert summary.startswith("/api/: HTTP 307 to https is a temporary redirect: clients do not cache it")


def test_a_401_without_a_challenge_only_warns() -> None:
    # No WWW-Authenticate: nothing invites a client to send its token over http; an error page like any other
    outcome, summary, _, _ = judged_paths({"/": REDIRECT, "/api/": Route(401, "no")}, ["/api/"])
    assert outcome == "warned"
    assert summary.startswith("/api/: answered HTTP 401")


def test_a_path_that_times_out_is_an_error_unless_another_one_fails() -> None:
    slow = Route(308, headers={"Location": HTTPS + "/"}, delay_s=1)
    with serve({"/": REDIRECT, "/slow": slow, "/open": Route(200, "x")}) as server:
        urls, _ = transport.plan(server.base_url, ["/slow"])
        only_slow = transport.judge(transport.probe_paths(urls, timeout_s=0.3), https_url=HTTPS)
        urls, _ = transport.plan(server.base_url, ["/slow", "/open"])
        with_content = transport.judge(transport.probe_paths(urls, timeout_s=0.3), https_url=HTTPS)
    assert only_slow.outcome == "error"
    assert only_slow.summary.startswith("/slow: not measured (no complete answer within 0.3 s")
    assert isinstance(only_slow.observed, dict) and only_slow.observed["/"] == {"status": 308, "location": HTTPS + "/"}
    # a measured failure is certain whatever the other path did
    assert with_content.outcome == "failed"
    assert with_content.summary.startswith("/open: API content over http")


def test_a_refused_port_is_refused_for_every_path() -> None:
    urls, left_out = transport.plan(f"http://127.0.0.1:{refused_port()}", ["/api/"])
    answers = transport.probe_paths(urls, timeout_s=2)
    assert isinstance(answers, transport.Refused)
    finding = transport.judge(answers, https_url=HTTPS, left_out=left_out)
    assert (finding.outcome, finding.observed) == ("passed", "connection refused")


def test_no_credentials_on_any_path() -> None:
    with serve({"/": REDIRECT, "/api/": CHALLENGE}) as server:
        urls, _ = transport.plan(server.base_url, ["/api/"])
        transport.probe_paths(urls, timeout_s=2)
        seen = server.requests
    assert [path for path, _ in seen] == ["/", "/api/"]
    assert all("authorization" not in headers and "cookie" not in headers for _, headers in seen)


def test_probe_paths_needs_a_url() -> None:
    with pytest.raises(ProbeError, match="no URL"):
        transport.probe_paths([], timeout_s=0.1)
