"""Live proofs of security.transport.https, security.hsts and security.headers.

Against the reference deployment: healthy, all three pass; under each proving fault the proven
check fails and the other two do not. Then the two setups the review found misjudged:

- a plain-HTTP port that redirects ``/`` but serves the API over http (a tiny loopback server
  standing in for a half-done port-80 block that proxies ``/api/``): transport must fail;
- nginx in front of the service without ``proxy_hide_header Strict-Transport-Security``, so
  every answer carries two identical HSTS fields (proxy's and app's): security.hsts must pass.
"""

from __future__ import annotations

import json
import os
import re
import ssl
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest
from nginx_proxy import ProxyConfig, running_nginx

from loopback import Handler, Route, serve
from real import require_binary
from releasegate.cli import main
from releasegate.reference import server
from releasegate.reference.demo import PASSWORD_ENV, TOKEN_ENV, USER_ENV, running
from releasegate.reference.settings import ServiceSettings

IDS = ["security.transport.https", "security.hsts", "security.headers"]
GATES = "probe: {timeout_s: 5, retry: {timeout_s: 0}}\n"

# fault -> the one check it must fail; the other two must pass
PROOFS: dict[str | None, str | None] = {
    None: None,
    "http-no-redirect": "security.transport.https",
    "no-hsts": "security.hsts",
    "short-hsts": "security.hsts",
    "no-security-headers": "security.headers",
}


def run_gate(target: Path, tmp_path: Path, ids: list[str] = IDS) -> dict[str, Any]:
    gates = tmp_path / "gates.yaml"
    gates.write_text(GATES, encoding="utf-8")
    reports = tmp_path / "reports"
    argv = ["run", "--stage", "pre-deploy", "--target", str(target), "--gates", str(gates), "--only", *ids, "--report-dir", str(reports)]
    code = main(argv)
    verdict: dict[str, Any] = json.loads((reports / "verdict.json").read_text(encoding="utf-8"))
    assert verdict["exit_code"] == code
    return verdict


def by_id(verdict: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in verdict["checks"]}


def no_secret_in(reports: Path, secrets: list[str]) -> None:
    leaked = [str(f) for f in reports.rglob("*") if f.is_file() and any(s in f.read_text(errors="replace") for s in secrets)]
    assert leaked == []


@pytest.mark.parametrize("fault", list(PROOFS), ids=lambda f: f or "healthy")
def test_each_fault_fails_its_check_and_no_sibling(fault: str | None, tmp_path: Path) -> None:
    with running([fault] if fault else []) as deployment:
        verdict = run_gate(deployment.target_path, tmp_path)
        secrets = [os.environ[TOKEN_ENV], os.environ[PASSWORD_ENV]]
    checks = by_id(verdict)
    expected = {check_id: "failed" if check_id == PROOFS[fault] else "passed" for check_id in IDS}
    assert {i: c["outcome"] for i, c in checks.items()} == expected, [(i, c["summary"]) for i, c in checks.items()]
    no_secret_in(tmp_path / "reports", secrets)
    transport = checks["security.transport.https"]
    # Every API path the target names was asked over http, not only the root.
    assert sorted(transport["evidence"]["paths"]) == ["/", "/api/v1/conversations", "/api/v1/me"]
    # security.hsts sampled the root, both protected paths and the login path.
    assert sorted(checks["security.hsts"]["observed"]) == ["/", "/api/v1/auth/login", "/api/v1/conversations", "/api/v1/me"]
    if fault == "http-no-redirect":
        assert "the API asks for credentials over plain http" in transport["summary"]


def proxying(upstream_base: str, ca_path: Path) -> Handler:
    """A loopback route that fetches the same path from the HTTPS service (no credentials) and relays it over http."""

    def handle(request: BaseHTTPRequestHandler) -> Route:
        with httpx.Client(verify=ssl.create_default_context(cafile=str(ca_path)), timeout=5, trust_env=False) as client:
            answer = client.get(upstream_base + request.path)
        relayed = {k: v for k, v in answer.headers.items() if k.lower() in ("www-authenticate", "cache-control")}
        return Route(answer.status_code, answer.content, answer.headers.get("content-type"), relayed)

    return handle


def test_a_port_that_redirects_the_root_but_serves_the_api_over_http_fails(tmp_path: Path) -> None:
    with running([]) as deployment:
        text = deployment.target_path.read_text(encoding="utf-8")
        base = re.search(r"^base_url: (\S+)$", text, re.MULTILINE)
        ca = re.search(r"ca_bundle: ([^}\s]+)", text)
        assert base is not None and ca is not None
        https = base.group(1)
        # Given a plain port (on 127.0.0.1) that sends "/" to HTTPS on the same host but relays the API paths over http
        same_host = https.replace("localhost", "127.0.0.1")
        routes: dict[str, Route | Handler] = {"/": Route(308, headers={"Location": same_host + "/"})}
        for path in ("/api/v1/me", "/api/v1/conversations"):
            routes[path] = proxying(https, Path(ca.group(1)))
        with serve(routes) as plain:
            target = tmp_path / "target.yaml"
            target.write_text(re.sub(r"^http_url: \S+$", f"http_url: {plain.base_url}", text, flags=re.MULTILINE), encoding="utf-8")
            verdict = run_gate(target, tmp_path, ["security.transport.https"])
            sent = [path for path, _ in plain.requests]
            carried_credentials = [h for _, h in plain.requests if "authorization" in h or "cookie" in h]
    # Then the check fails on the API paths although the root redirects properly
    (check,) = verdict["checks"]
    assert check["outcome"] == "failed", check["summary"]
    assert check["summary"].startswith("/api/v1/me: the API asks for credentials over plain http: HTTP 401 with WWW-Authenticate: Bearer")
    assert check["observed"]["/"]["status"] == 308
    assert sent == ["/", "/api/v1/me", "/api/v1/conversations"]  # each path once: rate_limit.path repeats /api/v1/me
    assert carried_credentials == []


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[server.RunningService]:
    with server.start(ServiceSettings(data_dir=tmp_path_factory.mktemp("upstream"))) as service:
        yield service


def test_duplicated_identical_hsts_behind_nginx_passes(
    upstream: server.RunningService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nginx = require_binary("nginx")
    # The login flow is named so security.hsts samples its path; its secrets are never used here.
    monkeypatch.setenv(USER_ENV, "unused")
    monkeypatch.setenv(PASSWORD_ENV, "unused")
    config = ProxyConfig(hide_upstream_hsts=False)
    upstream_url = upstream.base_url.replace("localhost", "127.0.0.1")
    with running_nginx(nginx, config, tls=upstream.tls_paths, upstream=upstream_url, workdir=tmp_path / "nginx") as proxy:
        target = tmp_path / "target.yaml"
        target.write_text(
            f"name: behind-nginx\nbase_url: {proxy.base_url}\nhttp_url: {proxy.http_url}\ntls: {{ca_bundle: {upstream.ca_path}}}\n"
            "auth:\n"
            f"  login: {{path: /api/v1/auth/login, username_env: {USER_ENV}, password_env: {PASSWORD_ENV}}}\n"
            "  protected: [/api/v1/me, /api/v1/conversations]\n",
            encoding="utf-8",
        )
        verdict = run_gate(target, tmp_path)
    checks = by_id(verdict)
    hsts = checks["security.hsts"]
    assert hsts["outcome"] == "passed", hsts["summary"]
    # Given two fields really arrived (proxy's and app's) on every sampled answer
    assert all(isinstance(values, list) and len(values) == 2 for values in hsts["observed"].values()), hsts["observed"]
    assert len(hsts["observed"]) == 4
    assert all("2 identical Strict-Transport-Security fields" in note for note in hsts["evidence"]["notes"])
    assert len(hsts["evidence"]["notes"]) == 4
    # and the siblings are not tripped by the proxy either
    assert {i: c["outcome"] for i, c in checks.items()} == dict.fromkeys(IDS, "passed"), [(i, c["summary"]) for i, c in checks.items()]
