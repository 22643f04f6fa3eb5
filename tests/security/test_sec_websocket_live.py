"""The WebSocket checks against the live reference deployment (loopback, TLS from a fresh CA).

Healthy, every check passes; under each proving fault its check fails and the family's other
checks do not. The transport faults are also shown from the reference's side: ws-plaintext
upgrades ws:// (with a valid token) while plain HTTP is still redirected, and http-no-redirect
serves plain HTTP while ws:// upgrades are still refused.
"""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from releasegate import registry
from releasegate.cli import main
from releasegate.config import load_gates, load_target
from releasegate.probes import credentials, websocket
from releasegate.reference.demo import TOKEN_ENV, DemoDeployment, running

FAMILY = sorted(spec.id for spec in registry.CHECKS if spec.family == "websocket")
FAST_GATES = "probe: {timeout_s: 5, retry: {timeout_s: 0}}\n"


@pytest.fixture(scope="module")
def healthy() -> Iterator[DemoDeployment]:
    with running() as deployment:
        yield deployment


def gate(deployment: DemoDeployment, tmp_path: Path) -> dict[str, Any]:
    gates = tmp_path / "gates.yaml"
    gates.write_text(FAST_GATES, encoding="utf-8")
    report_dir = tmp_path / "report"
    args = ["run", "--stage", "pre-deploy", "--target", str(deployment.target_path), "--gates", str(gates)]
    code = main([*args, "--only", "security.websocket", "--report-dir", str(report_dir)])
    verdict: dict[str, Any] = json.loads((report_dir / "verdict.json").read_text(encoding="utf-8"))
    assert verdict["exit_code"] == code
    # The token never reaches any report file.
    token = os.environ[TOKEN_ENV]
    for path in report_dir.rglob("*"):
        if path.is_file():
            assert token not in path.read_text(encoding="utf-8", errors="replace"), path
    return verdict


def test_the_family_is_the_five_issue_ids() -> None:
    assert [f"security.websocket.{name}" for name in ("auth", "connection_limit", "message_size", "origin", "tls")] == FAMILY


def test_healthy_deployment_passes_every_websocket_check(healthy: DemoDeployment, tmp_path: Path) -> None:
    verdict = gate(healthy, tmp_path)
    assert verdict["decision"] == "pass", verdict["reasons"]
    assert {c["id"]: c["outcome"] for c in verdict["checks"]} == dict.fromkeys(FAMILY, "passed")
    durations = {c["id"]: c["duration_s"] for c in verdict["checks"]}
    assert sum(durations.values()) < 5, durations  # generous: ~0.25 s on loopback; a regression to timeouts shows here


def test_probes_called_directly_pass_on_the_healthy_deployment(healthy: DemoDeployment) -> None:
    target = load_target(healthy.target_path)
    settings = websocket.settings_for(target, load_gates(healthy.gates_path).gates)
    url = websocket.endpoint(target.target)
    assert url is not None
    cap = target.target.websocket.max_connections_per_user
    assert cap is not None
    findings = [
        websocket.check_auth(url, settings),
        websocket.check_origin(url, settings),
        websocket.check_plaintext(url, target.target.http_url, settings),
        websocket.check_message_size(url, target.target.websocket.max_message_bytes, settings),
        websocket.check_connection_limit(url, cap, settings),
        # Again, at once: the connections the limit probe just closed must not linger against the controls.
        websocket.check_auth(url, settings),
    ]
    assert [f.outcome for f in findings] == ["passed"] * len(findings), [f.summary for f in findings]
    assert findings[4].evidence["statuses"] == [101] * cap + [429]
    assert findings[4].evidence["held_open"] == cap  # the first `cap` still answer a ping after the refusal
    # The browser's way in: the tampered token as a subprotocol refused, the valid one accepted (as "bearer")
    assert findings[0].observed["invalid token via subprotocol (bearer, <token>)"] == "401 (refused)"
    assert findings[0].observed["valid token via subprotocol"] == "101 (accepted)"
    assert "not judged" not in findings[0].summary
    assert findings[1].observed["valid token, Origin null"] == "403 (refused)"
    for finding in findings:
        text = json.dumps({"summary": finding.summary, "observed": finding.observed, "evidence": finding.evidence})
        assert os.environ[TOKEN_ENV] not in text
        assert "Bearer ey" not in text


@pytest.mark.parametrize("check_id", FAMILY)
def test_each_proving_fault_fails_its_check_and_no_other_in_the_family(check_id: str, tmp_path: Path) -> None:
    fault = registry.get(check_id).fault
    assert fault is not None
    with running([fault]) as deployment:
        verdict = gate(deployment, tmp_path)
    outcomes = {c["id"]: c["outcome"] for c in verdict["checks"]}
    assert outcomes[check_id] == "failed", verdict["checks"]
    assert {i: o for i, o in outcomes.items() if i != check_id} == dict.fromkeys(set(FAMILY) - {check_id}, "passed")


def test_http_no_redirect_leaves_the_websocket_family_passing(tmp_path: Path) -> None:
    with running(["http-no-redirect"]) as deployment:
        verdict = gate(deployment, tmp_path)
    assert {c["id"]: c["outcome"] for c in verdict["checks"]} == dict.fromkeys(FAMILY, "passed")


# --- the reference's plain-HTTP port under the transport faults ------------------------------------


def plain_ws_status(deployment: DemoDeployment, *, token: bool) -> int:
    """The status of a ws:// upgrade on the plain-HTTP port (101 when it upgrades); loopback only."""
    target = load_target(deployment.target_path).target
    assert target.http_url is not None and target.http_url.startswith("http://localhost:")
    url = websocket.plaintext_url(websocket.endpoint(target) or "", target.http_url)
    headers = credentials.bearer(os.environ[TOKEN_ENV]) if token else None
    try:
        with connect(url, additional_headers=headers, open_timeout=5, close_timeout=2, proxy=None) as ws:
            return 101 if ws.response is not None and ws.response.status_code == 101 else -1
    except InvalidStatus as exc:
        return exc.response.status_code


def plain_http_status(deployment: DemoDeployment) -> int:
    target = load_target(deployment.target_path).target
    with httpx.Client(timeout=5, follow_redirects=False, trust_env=False) as client:
        return client.get(f"{target.http_url}/healthz").status_code


def test_healthy_plain_port_redirects_http_and_refuses_websocket(healthy: DemoDeployment) -> None:
    assert plain_http_status(healthy) == 308
    assert plain_ws_status(healthy, token=True) == 403


def test_ws_plaintext_upgrades_ws_but_still_redirects_http(tmp_path: Path) -> None:
    with running(["ws-plaintext"]) as deployment:
        assert plain_ws_status(deployment, token=True) == 101
        assert plain_ws_status(deployment, token=False) == 401  # what the gate's credential-free probe sees
        assert plain_http_status(deployment) == 308


def test_http_no_redirect_serves_http_but_still_refuses_websocket(tmp_path: Path) -> None:
    with running(["http-no-redirect"]) as deployment:
        assert plain_http_status(deployment) == 200
        assert plain_ws_status(deployment, token=True) == 403


def test_wss_still_needs_the_ca(healthy: DemoDeployment) -> None:
    # The probe trusts the target's CA: without it the control cannot connect, and the check says so.
    target = load_target(healthy.target_path)
    url = websocket.endpoint(target.target) or ""
    untrusting = websocket.WsSettings(timeout_s=5, ssl=ssl.create_default_context(), max_frame_bytes=1 << 20, token=target.token())
    finding = websocket.check_auth(url, untrusting)
    assert finding.outcome == "error"
    assert "TLS failure" in json.dumps(finding.evidence)
