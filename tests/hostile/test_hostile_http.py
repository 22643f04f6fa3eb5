"""HTTP targets that misbehave: the gate ends in time, reads bounded bodies, says why, never promotes.

Each case runs the real gate (``python -m releasegate run``, harness.run_gate) against a hostile
loopback server (http_servers.py) with a short probe timeout, no retry window, and ``--only``
the checks the misbehaviour affects. Mostly the health checks (health.* after deploy, and the
readiness checks before it that read the same version document); readiness.rollback where the
gate follows redirects itself (its previous_artifact_url probe).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from harness import GateResult, assert_fails_closed, record_row, run_gate
from http_servers import HostileServer, Seen, answer, drip, endless_chunked, http, huge_length, reset

TIMEOUT_S = 2
DEADLINE_S = 30
MAX_BODY = 65_536
GATES = f"deadline_s: {DEADLINE_S}\nprobe: {{timeout_s: {TIMEOUT_S}, max_body_bytes: {MAX_BODY}, retry: {{timeout_s: 0}}}}\n"
TOKEN_ENV = "HOSTILE_GATE_TOKEN"
TOKEN = "tok-hostile-0123456789abcdef"
# Starting Python, collecting the suite, writing reports: what a run costs beside its probes.
STARTUP_S = 10.0


def target(base_url: str, *, health: str, extra: str = "") -> str:
    return f"name: hostile\nbase_url: {base_url}\nauth: {{token_env: {TOKEN_ENV}}}\nhealth: {health}\n{extra}"


def gate(tmp_path: Path, base_url: str, *, health: str, stage: str, only: list[str], extra: str = "") -> GateResult:
    return run_gate(
        tmp_path,
        target=target(base_url, health=health, extra=extra),
        gates=GATES,
        stage=stage,
        only=only,
        env={TOKEN_ENV: TOKEN},
    )


def assert_no_secret(result: GateResult) -> None:
    """The token may travel to the target; it never lands in a report."""
    for path in result.report_dir.rglob("*"):
        if path.is_file():
            assert TOKEN not in path.read_text(encoding="utf-8", errors="replace"), path
    assert TOKEN not in result.stdout + result.stderr


OK_PLAIN = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
HEALTH_JSON = "application/health+json"


@pytest.mark.parametrize(
    ("stage", "check", "cause"),
    [
        pytest.param("post-deploy", "health.liveness", f"^no complete answer within {TIMEOUT_S} s$", id="health"),
        # The header checks' own client (probes/headers.py): the site root is asked first, and dripped too.
        pytest.param("pre-deploy", "security.headers", f"^GET: no complete answer within {TIMEOUT_S} s$", id="security-headers"),
    ],
)
def test_headers_dripped_one_byte_a_second_end_at_the_probe_timeout(tmp_path: Path, stage: str, check: str, cause: str) -> None:
    # Given an endpoint that sends its status line and headers one byte a second (~70 s in all):
    # httpx's read timeout restarts with every byte, so only a deadline on the whole exchange ends it
    with HostileServer(http(drip(OK_PLAIN, every_s=1.0))) as server:
        result = gate(tmp_path, server.base_url, health="{liveness: /healthz}", stage=stage, only=[check])
    # Then the check ends at probe.timeout_s in total, not per byte, and holds the gate
    assert_fails_closed(result, affected=[check], deadline_s=DEADLINE_S, cause=cause)
    assert result.check(check)["duration_s"] < TIMEOUT_S + 1
    assert result.seconds < TIMEOUT_S + STARTUP_S
    record_row(
        "HTTP",
        f"headers sent one byte a second ({check})",
        result,
        checks=[check],
        outcome=f"error: no complete answer within {TIMEOUT_S} s",
    )


def test_a_body_that_never_ends_is_read_up_to_the_cap(tmp_path: Path) -> None:
    # Given a deep-health endpoint that answers 200 health+json with a chunked body that never ends
    with HostileServer(http(endless_chunked(HEALTH_JSON))) as server:
        result = gate(tmp_path, server.base_url, health="{deep: /health}", stage="post-deploy", only=["health.deep"])
    # Then the gate reads max_body_bytes, stops, and refuses to judge a cut document
    assert_fails_closed(result, affected=["health.deep"], deadline_s=DEADLINE_S, cause=f"larger than {MAX_BODY} bytes; refusing to judge")
    assert result.seconds < TIMEOUT_S + STARTUP_S
    record_row(
        "HTTP", "a chunked body that never ends", result, checks=["health.deep"], outcome=f"error: body larger than the {MAX_BODY}-byte cap"
    )


@pytest.mark.parametrize(
    ("then", "cause", "outcome"),
    [
        ("hold", f"no complete answer within {TIMEOUT_S} s", f"error: no complete answer within {TIMEOUT_S} s"),
        ("close", r"malformed or aborted HTTP answer: .*expected 5000000000", "error: connection closed 5 GB short"),
    ],
)
def test_a_5_gb_content_length_is_not_allocated(tmp_path: Path, then: str, cause: str, outcome: str) -> None:
    # Given a deep-health endpoint announcing Content-Length: 5 GB and sending 17 bytes, then holding or closing
    first = b'{"status": "pass"'
    with HostileServer(http(huge_length(5_000_000_000, first, HEALTH_JSON, then=then))) as server:
        result = gate(tmp_path, server.base_url, health="{deep: /health}", stage="post-deploy", only=["health.deep"])
    # Then nothing near 5 GB is allocated (assert_fails_closed bounds peak memory) and the check is an error
    assert_fails_closed(result, affected=["health.deep"], deadline_s=DEADLINE_S, cause=cause)
    assert result.seconds < TIMEOUT_S + STARTUP_S
    record_row("HTTP", f"Content-Length: 5 GB, 17 bytes sent, connection {'held' if then == 'hold' else 'closed'}", result,
               checks=["health.deep"], outcome=outcome)  # fmt: skip


BAD_UTF8 = b'{"status": "pass", "checks": {"db:responseTime": [{"status": "pass", "output": "\xff\xfe\xc3"}]}}'
DEEP_JSON = b'{"status": "pass", "checks": {"db": ' + b"[" * 10_000 + b"]" * 10_000 + b"}}"


@pytest.mark.parametrize(
    ("case", "body", "cause", "outcome"),
    [
        ("invalid UTF-8 in a health+json answer", BAD_UTF8, "body is not valid UTF-8", "error: body is not valid UTF-8"),
        ("10,000-deep nested JSON in a health answer", DEEP_JSON, "JSON nested too deeply to judge", "error: JSON nested too deeply"),
    ],
)
def test_an_unreadable_health_document_is_an_error_not_a_traceback(
    tmp_path: Path, case: str, body: bytes, cause: str, outcome: str
) -> None:
    # Given deep health and the version document (the same path) answering 200 health+json that cannot be read
    with HostileServer(http(answer("200 OK", body, HEALTH_JSON))) as server:
        result = gate(
            tmp_path,
            server.base_url,
            health="{deep: /health}",
            extra="expected_release: 2026.1.0\n",
            stage="post-deploy",
            only=["health.deep", "health.release_id"],
        )
    # Then both checks say what is wrong with the body, with no RecursionError traceback anywhere
    affected = ["health.deep", "health.release_id"]
    assert_fails_closed(result, affected=affected, deadline_s=DEADLINE_S, cause=cause)
    assert "RecursionError" not in result.stdout + result.stderr
    record_row("HTTP", case, result, checks=affected, outcome=outcome)


HTML = b"<!DOCTYPE html><html><head><title>Welcome to nginx!</title></head><body><h1>It works</h1></body></html>"


def test_an_html_page_where_json_is_expected_is_not_health(tmp_path: Path) -> None:
    # Given a proxy's 200 HTML page where the deep-health document and the version document should be
    with HostileServer(http(answer("200 OK", HTML, "text/html; charset=utf-8"))) as server:
        result = gate(
            tmp_path,
            server.base_url,
            health="{deep: /health, version: /version}",
            extra="expected_release: 2026.1.0\n",
            stage="post-deploy",
            only=["health.deep", "health.release_id"],
        )
    # Then neither is read as a pass: deep health cannot tell, the release cannot be read
    assert_fails_closed(result, affected=["health.deep", "health.release_id"], deadline_s=DEADLINE_S)
    assert "text/html without a health status" in result.check("health.deep")["summary"]
    assert "not valid JSON" in result.check("health.release_id")["summary"]
    record_row("HTTP", "200 with an HTML page where JSON is expected", result, checks=["health.deep", "health.release_id"],
               outcome="error: text/html where a health document was expected; release body not JSON")  # fmt: skip


def test_a_redirect_loop_on_a_health_endpoint_fails_without_following(tmp_path: Path) -> None:
    # Given a liveness endpoint that redirects to itself, forever
    with HostileServer(http(answer("302 Found", headers={"Location": "/healthz"}))) as server:
        result = gate(tmp_path, server.base_url, health="{liveness: /healthz}", stage="post-deploy", only=["health.liveness"])
        requests = len(server.seen)
    # Then the health probe does not follow it (one request): a 3xx from liveness is a failed check, and
    # a failed blocking check rolls back
    assert_fails_closed(
        result, affected=["health.liveness"], deadline_s=DEADLINE_S, outcomes=("failed",), cause=r"HTTP 302 Found -> /healthz"
    )
    assert requests == 1
    record_row("HTTP", "redirect loop (302 to itself) on liveness", result, checks=["health.liveness"],
               outcome="failed: answered HTTP 302 -> itself (not followed)")  # fmt: skip


def test_a_redirect_loop_on_the_rollback_artifact_ends_after_five_hops(tmp_path: Path) -> None:
    # Given a previous_artifact_url (the one probe that follows redirects) that redirects A -> B -> A -> ...
    routes = {"/a": answer("302 Found", headers={"Location": "/b"}), "/b": answer("302 Found", headers={"Location": "/a"})}
    with HostileServer(http(answer("404 Not Found"), routes)) as server:
        rollback = f"rollback: {{previous_artifact_url: {server.url('/a')}}}\n"
        result = gate(tmp_path, server.base_url, health="{}", extra=rollback, stage="pre-deploy", only=["readiness.rollback"])
        requests = len(server.seen)
    # Then the probe stops after its five redirects and cannot say whether the artifact exists
    assert_fails_closed(
        result, affected=["readiness.rollback"], deadline_s=DEADLINE_S, cause="redirects more than the 5 times the gate follows"
    )
    assert requests == 6
    record_row("HTTP", "redirect loop (A -> B -> A) on the rollback artifact", result, checks=["readiness.rollback"],
               outcome="error: more than 5 redirects")  # fmt: skip


def test_a_redirect_to_another_host_does_not_carry_the_token(tmp_path: Path) -> None:
    # Given a liveness endpoint that redirects to another host (127.0.0.2), which would gladly read a token
    with HostileServer(http(answer("200 OK", b"ok")), host="127.0.0.2") as other:
        elsewhere = other.url("/collect")
        with HostileServer(http(answer("302 Found", headers={"Location": elsewhere}))) as server:
            result = gate(tmp_path, server.base_url, health="{liveness: /healthz}", stage="post-deploy", only=["health.liveness"])
            asked = [seen.headers for seen in server.seen]
        reached = [seen.headers for seen in other.seen]
    # Then the token went to the target only; the other host saw nothing (the redirect is not followed),
    # and liveness failed naming where it was sent
    assert asked and all(headers.get("authorization") == f"Bearer {TOKEN}" for headers in asked)
    assert not any("authorization" in headers for headers in reached)
    assert reached == []
    assert_fails_closed(
        result, affected=["health.liveness"], deadline_s=DEADLINE_S, outcomes=("failed",), cause=f"HTTP 302 Found -> {elsewhere}"
    )
    assert_no_secret(result)
    record_row("HTTP", "redirect to another host (liveness)", result, checks=["health.liveness"],
               outcome="failed: answered HTTP 302 -> the other host (not followed, no token sent)")  # fmt: skip


def test_a_redirect_of_the_rollback_artifact_to_another_host_leaves_the_token_behind(tmp_path: Path) -> None:
    # Given a previous_artifact_url on the target that redirects to a storage host (127.0.0.2) which
    # serves the artifact only to a bearer token
    def storage(conn: socket.socket, server: HostileServer, request: Seen) -> None:
        served = answer("200 OK", b"artifact") if "authorization" in request.headers else answer("401 Unauthorized")
        served(conn, server, request)

    with HostileServer(http(storage), host="127.0.0.2") as other:
        with HostileServer(http(answer("302 Found", headers={"Location": other.url("/artifact.tar.gz")}))) as server:
            rollback = f"rollback: {{previous_artifact_url: {server.url('/artifact')}}}\n"
            result = gate(tmp_path, server.base_url, health="{}", extra=rollback, stage="pre-deploy", only=["readiness.rollback"])
            asked = [seen.headers for seen in server.seen]
        reached = [seen.headers for seen in other.seen]
    # Then the token went to the target's own origin, not to the other host; the artifact cannot be
    # seen there, so the check is an error that says the token is not sent there
    assert asked and all(headers.get("authorization") == f"Bearer {TOKEN}" for headers in asked)
    assert reached and not any("authorization" in headers for headers in reached)
    assert_fails_closed(
        result,
        affected=["readiness.rollback"],
        deadline_s=DEADLINE_S,
        cause=r"HTTP 401 without credentials \(the token is not sent there\)",
    )
    assert_no_secret(result)
    record_row("HTTP", "redirect to another host (rollback artifact)", result, checks=["readiness.rollback"],
               outcome="error: 401 there, token not sent to the other host")  # fmt: skip


def test_a_connection_reset_after_the_request_is_an_error(tmp_path: Path) -> None:
    # Given a liveness endpoint that reads the request and then resets the connection (RST, SO_LINGER 0)
    with HostileServer(http(reset())) as server:
        result = gate(tmp_path, server.base_url, health="{liveness: /healthz}", stage="post-deploy", only=["health.liveness"])
        requests = len(server.seen)
    # Then liveness could not be measured: an error naming the reset, not a failure of the service
    assert requests == 1
    assert_fails_closed(result, affected=["health.liveness"], deadline_s=DEADLINE_S, cause="(?i)reset")
    assert result.seconds < TIMEOUT_S + STARTUP_S
    record_row("HTTP", "connection reset after the request is read", result, checks=["health.liveness"], outcome="error: connection reset")


def test_a_host_name_that_does_not_resolve_is_an_error_naming_dns(tmp_path: Path) -> None:
    # Given a base_url whose host name does not resolve (.invalid never does, RFC 6761)
    result = gate(tmp_path, "https://does-not-exist.invalid", health="{liveness: /healthz}", stage="post-deploy", only=["health.liveness"])
    # Then the check says the name does not resolve, at once
    assert_fails_closed(result, affected=["health.liveness"], deadline_s=DEADLINE_S, cause="(?i)resol")
    assert "does-not-exist.invalid" in result.check("health.liveness")["summary"]
    assert result.seconds < TIMEOUT_S + STARTUP_S
    record_row("HTTP", "host name that does not resolve", result, checks=["health.liveness"], outcome="error: cannot resolve the host name")
