"""health.parse and the judges, fed by real answers from loopback servers (not hand-built observations)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from loopback import Route, healthy_routes, serve
from releasegate._exceptions import ProbeError
from releasegate.probes import health, http
from releasegate.probes.http import HttpObservation, HttpSettings

SETTINGS = HttpSettings(timeout_s=3, max_body_bytes=64 * 1024)
HEALTH_JSON = "application/health+json"


def observe(route: Route, settings: HttpSettings = SETTINGS) -> HttpObservation:
    """Serve ``route`` on loopback and GET it once."""
    with serve({"/h": route}) as server:
        return http.get(server.url("/h"), settings)


def document(body: dict[str, Any] | str | bytes, content_type: str = HEALTH_JSON, status: int = 200) -> HttpObservation:
    return observe(Route(status, body, content_type=content_type))


# --- liveness / readiness ------------------------------------------------------------------------


def test_plain_200_passes() -> None:
    finding = health.judge_endpoint(observe(Route(200, "ok")), max_latency_ms=2000)
    assert finding.outcome == "passed"
    assert finding.expected == "HTTP 2xx within 2000 ms"
    assert finding.evidence["status"] == 200


def test_plain_503_fails() -> None:
    finding = health.judge_endpoint(observe(Route(503, "unavailable")), max_latency_ms=None)
    assert finding.outcome == "failed"
    assert "HTTP 503 Service Unavailable" in finding.summary


def test_503_with_a_json_body_that_is_no_health_document_still_fails() -> None:
    # The status code alone says "not ready"; an unreadable body must not turn that into "could not judge".
    finding = health.judge_endpoint(document({"error": "warming up"}, "application/json", status=503), max_latency_ms=None)
    assert finding.outcome == "failed"
    assert "503" in finding.summary


def test_redirect_fails_naming_the_location() -> None:
    finding = health.judge_endpoint(observe(Route(302, "", headers={"Location": "https://login.example.test/"})), max_latency_ms=None)
    assert finding.outcome == "failed"
    assert "302" in finding.summary
    assert "https://login.example.test/" in finding.summary


def test_health_json_pass_passes() -> None:
    finding = health.judge_endpoint(document({"status": "pass"}), max_latency_ms=2000)
    assert finding.outcome == "passed"
    assert "status pass" in finding.observed


def test_health_json_fail_with_http_200_fails() -> None:
    finding = health.judge_endpoint(document({"status": "fail"}), max_latency_ms=None)
    assert finding.outcome == "failed"
    assert "body says fail" in finding.summary


def test_health_json_warn_warns() -> None:
    finding = health.judge_endpoint(document({"status": "warn"}), max_latency_ms=None)
    assert finding.outcome == "warned"


def test_over_the_latency_budget_fails() -> None:
    finding = health.judge_endpoint(observe(Route(200, "ok", delay_s=0.3)), max_latency_ms=100)
    assert finding.outcome == "failed"
    assert "over the 100 ms budget" in finding.summary


def test_zero_latency_budget_is_stated() -> None:
    finding = health.judge_endpoint(observe(Route(200, "ok")), max_latency_ms=0)
    assert finding.expected == "HTTP 2xx within 0 ms"
    assert finding.outcome == "failed"


def test_large_plain_body_is_judged_on_the_status_alone() -> None:
    # A liveness page bigger than the body cap: the body is not read in the plain dialect, so no error.
    observation = observe(
        Route(200, "<html>" + "x" * 5000 + "</html>", content_type="text/html"), HttpSettings(timeout_s=3, max_body_bytes=1024)
    )
    assert observation.truncated is True
    assert health.judge_endpoint(observation, max_latency_ms=None).outcome == "passed"


def test_truncated_health_document_is_an_error() -> None:
    body = {"status": "pass", "checks": {f"c{i}:up": [{"status": "pass", "output": "x" * 100}] for i in range(50)}}
    observation = observe(Route(200, body, content_type=HEALTH_JSON), HttpSettings(timeout_s=3, max_body_bytes=1024))
    finding = health.judge_endpoint(observation, max_latency_ms=None)
    assert finding.outcome == "error"
    assert "truncated" in finding.summary


def test_healthy_routes_pass() -> None:
    with serve(healthy_routes("r-1")) as server:
        live, ready, deep, version = (http.get(server.url(p), SETTINGS) for p in ("/healthz", "/readyz", "/health", "/version"))
    assert health.judge_endpoint(live, max_latency_ms=2000).outcome == "passed"
    assert health.judge_endpoint(ready, max_latency_ms=2000).outcome == "passed"
    assert health.judge_deep(deep).outcome == "passed"
    assert health.judge_release(version, "r-1").outcome == "passed"
    assert health.judge_release(deep, "r-1").outcome == "passed"


# --- parse: dialects and aliases -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("pass", "pass"),
        ("ok", "pass"),
        ("up", "pass"),
        ("OK", "pass"),
        ("warn", "warn"),
        ("fail", "fail"),
        ("error", "fail"),
        ("down", "fail"),
    ],
)
def test_health_json_status_and_aliases(raw: str, expected: str) -> None:
    parsed = health.parse(document({"status": raw}))
    assert parsed.dialect == "health+json"
    assert parsed.status == expected


@pytest.mark.parametrize(("raw", "expected"), [("UP", "pass"), ("DOWN", "fail"), ("OUT_OF_SERVICE", "fail"), ("UNKNOWN", "warn")])
def test_spring_statuses(raw: str, expected: str) -> None:
    parsed = health.parse(document({"status": raw}, "application/vnd.spring-boot.actuator.v3+json"))
    assert parsed.dialect == "spring"
    assert parsed.status == expected


@pytest.mark.parametrize(
    "content_type",
    [
        "application/health+json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
        "application/problem+json",
        "application/vnd.spring-boot.actuator.v2+json",
    ],
)
def test_json_content_types_with_parameters_are_read_as_json(content_type: str) -> None:
    assert health.parse(document({"status": "fail"}, content_type)).status == "fail"


def test_text_answer_is_plain_and_judged_by_http_status() -> None:
    assert health.parse(observe(Route(200, '{"status": "fail"}', content_type="text/plain"))) == health.HealthDocument(
        dialect="plain", status="pass"
    )
    assert health.parse(observe(Route(500, "boom"))).status == "fail"


def test_health_json_components_are_named_by_key_or_by_component_id() -> None:
    body = {
        "status": "pass",
        "version": "1.4.0",
        "releaseId": "r-7",
        "checks": {
            "db:responseTime": [{"status": "pass"}],
            "cache:connections": [
                {"componentId": "redis-a", "status": "pass"},
                {"componentId": "redis-b", "status": "warn", "output": "slow"},
            ],
            "disk:utilization": [{"status": "pass"}, {"status": "ok"}],
            "queue:depth": {"status": "pass"},
        },
    }
    parsed = health.parse(document(body))
    assert [(c.name, c.status) for c in parsed.components] == [
        ("db:responseTime", "pass"),
        ("cache:connections[redis-a]", "pass"),
        ("cache:connections[redis-b]", "warn"),
        ("disk:utilization[0]", "pass"),
        ("disk:utilization[1]", "pass"),
        ("queue:depth", "pass"),
    ]
    assert parsed.components[2].output == "slow"
    assert (parsed.version, parsed.release_id) == ("1.4.0", "r-7")


def test_health_json_with_springs_uppercase_alias_still_reads_checks() -> None:
    # The draft allows "UP"/"DOWN" as aliases; a failing check under them must not be skipped.
    body = {"status": "UP", "checks": {"db:responseTime": [{"status": "fail", "output": "timeout"}]}}
    parsed = health.parse(document(body))
    assert parsed.status == "pass"
    assert [(c.name, c.status) for c in parsed.components] == [("db:responseTime", "fail")]
    assert health.judge_deep(document(body)).outcome == "failed"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"status": 1}, "'status' is int"),
        ({"status": "green"}, "unknown health status"),
        ({"status": "pass", "checks": []}, "'checks' must be an object"),
        ({"status": "pass", "checks": {"db": [{"output": "x"}]}}, "no string 'status'"),
        ({"status": "pass", "checks": {"db": [{"status": "meh"}]}}, "unknown status 'meh'"),
    ],
)
def test_malformed_health_documents_are_probe_errors(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ProbeError, match=message):
        health.parse(document(body))


# --- deep health ---------------------------------------------------------------------------------


def test_deep_pass_passes() -> None:
    finding = health.judge_deep(document({"status": "pass", "checks": {"db:up": [{"status": "pass"}], "cache:up": [{"status": "pass"}]}}))
    assert finding.outcome == "passed"
    assert "2 components pass" in finding.summary
    assert finding.evidence["components"] == {"db:up": "pass", "cache:up": "pass"}


def test_deep_failed_component_fails_and_is_named() -> None:
    body = {
        "status": "fail",
        "checks": {"db:responseTime": [{"status": "fail", "output": "connection refused"}], "cache:up": [{"status": "pass"}]},
    }
    finding = health.judge_deep(document(body, status=503))
    assert finding.outcome == "failed"
    assert "db:responseTime (fail: connection refused)" in finding.summary
    assert "cache:up" not in finding.summary
    assert finding.observed["http_status"] == 503


def test_deep_failed_component_under_an_overall_pass_still_fails() -> None:
    finding = health.judge_deep(document({"status": "pass", "checks": {"db:up": [{"status": "down"}]}}))
    assert finding.outcome == "failed"
    assert "db:up" in finding.summary


def test_deep_warn_component_warns() -> None:
    finding = health.judge_deep(document({"status": "warn", "checks": {"disk:utilization": [{"status": "warn", "output": "91%"}]}}))
    assert finding.outcome == "warned"
    assert "disk:utilization (warn: 91%)" in finding.summary


def test_deep_warn_without_components_warns() -> None:
    finding = health.judge_deep(document({"status": "warn"}))
    assert finding.outcome == "warned"
    assert "overall status warn" in finding.summary


def test_deep_overall_fail_without_components_fails() -> None:
    finding = health.judge_deep(document({"status": "fail"}))
    assert finding.outcome == "failed"
    assert "overall status fail" in finding.summary


def test_deep_pass_document_with_http_500_fails() -> None:
    finding = health.judge_deep(document({"status": "pass"}, status=500))
    assert finding.outcome == "failed"
    assert "HTTP 500" in finding.summary


SPRING_NESTED = {
    "status": "DOWN",
    "components": {
        "db": {"status": "DOWN", "details": {"error": "Connection refused"}},
        "diskSpace": {"status": "UP", "details": {"free": 1}},
        "redis": {"status": "DOWN", "components": {"primary": {"status": "UP"}, "replica": {"status": "OUT_OF_SERVICE"}}},
        "mail": {"status": "UNKNOWN"},
        "ping": "not an object",
    },
}


def test_spring_nested_components_fail_naming_each_leaf() -> None:
    observation = document(SPRING_NESTED, "application/vnd.spring-boot.actuator.v3+json", status=503)
    parsed = health.parse(observation)
    assert {c.name: c.status for c in parsed.components} == {
        "db": "fail",
        "diskSpace": "pass",
        "redis.primary": "pass",
        "redis.replica": "fail",
        "mail": "warn",
    }
    finding = health.judge_deep(observation)
    assert finding.outcome == "failed"
    assert "db (fail: {'error': 'Connection refused'})" in finding.summary
    assert "redis.replica (fail)" in finding.summary
    assert "diskSpace" not in finding.summary


def test_spring_up_with_unknown_component_warns() -> None:
    finding = health.judge_deep(
        document({"status": "UP", "components": {"db": {"status": "UP"}, "mail": {"status": "UNKNOWN"}}}, "application/json")
    )
    assert finding.outcome == "warned"
    assert "mail" in finding.summary


def test_spring_deeply_nested_components_do_not_crash() -> None:
    body: dict[str, Any] = {"status": "UP"}
    for _ in range(300):
        body = {"status": "UP", "components": {"n": body}}
    finding = health.judge_deep(document(body, "application/json"))
    assert finding.outcome in {"passed", "error"}


def test_deep_html_200_is_an_error_not_a_pass() -> None:
    finding = health.judge_deep(observe(Route(200, "<html>fine</html>", content_type="text/html")))
    assert finding.outcome == "error"
    assert "text/html" in finding.summary


def test_deep_invalid_utf8_is_an_error() -> None:
    finding = health.judge_deep(document(b'{"status": "pass", "x": "\xff\xfe"}'))
    assert finding.outcome == "error"
    assert "UTF-8" in finding.summary


def test_deep_invalid_json_is_an_error() -> None:
    finding = health.judge_deep(document(b'{"status": "pass",'))
    assert finding.outcome == "error"
    assert "not valid JSON" in finding.summary


@pytest.mark.parametrize("opening", ["[", '{"a":'])
def test_deep_ten_thousand_levels_of_nesting_is_an_error(opening: str) -> None:
    closing = "]" if opening == "[" else "}"
    body = (opening * 10_000 + "1" + closing * 10_000).encode()
    finding = health.judge_deep(document(body))
    assert finding.outcome == "error"
    assert "nested too deeply" in finding.summary


def test_deep_json_without_status_is_an_error() -> None:
    finding = health.judge_deep(document({"checks": {"db:up": [{"status": "pass"}]}}))
    assert finding.outcome == "error"
    assert "status" in finding.summary


def test_deep_json_array_is_an_error() -> None:
    assert health.judge_deep(document(b'["pass"]')).outcome == "error"


def test_deep_evidence_is_serialisable() -> None:
    finding = health.judge_deep(document(SPRING_NESTED, "application/json"))
    json.dumps(finding.evidence)
    json.dumps(finding.observed)


# --- release identity ----------------------------------------------------------------------------


def test_release_id_match_passes() -> None:
    finding = health.judge_release(document({"status": "pass", "version": "1.4.0", "releaseId": "2026.11.26-1"}), "2026.11.26-1")
    assert finding.outcome == "passed"
    assert finding.observed == {"releaseId": "2026.11.26-1", "version": "1.4.0"}


def test_release_id_mismatch_fails_with_observed_and_expected() -> None:
    finding = health.judge_release(document({"version": "1.4.0", "releaseId": "2026.11.25-3"}, "application/json"), "2026.11.26-1")
    assert finding.outcome == "failed"
    assert finding.summary == "deployed release is 2026.11.25-3, expected 2026.11.26-1"
    assert finding.observed == {"releaseId": "2026.11.25-3", "version": "1.4.0"}
    assert finding.expected == "2026.11.26-1"


def test_version_from_text_plain() -> None:
    observation = observe(Route(200, "  1.4.0\nbuilt 2026-11-26\n"))
    assert health.judge_release(observation, "1.4.0").outcome == "passed"
    finding = health.judge_release(observation, "1.5.0")
    assert finding.outcome == "failed"
    assert finding.observed == {"version": "1.4.0"}


def test_spring_info_build_version() -> None:
    finding = health.judge_release(document({"build": {"version": "3.2.1", "name": "app"}}, "application/json"), "3.2.1")
    assert finding.outcome == "passed"
    assert finding.observed == {"build.version": "3.2.1"}


@pytest.mark.parametrize(
    "route",
    [Route(200, {"name": "app"}), Route(200, {"version": "  "}), Route(200, "\n\n")],
    ids=["no-fields", "blank-version", "empty-text"],
)
def test_release_missing_fields_is_an_error(route: Route) -> None:
    finding = health.judge_release(observe(route), "1.4.0")
    assert finding.outcome == "error"
    assert "names no version or releaseId" in finding.summary


@pytest.mark.parametrize("status", [404, 503, 302])
def test_release_non_2xx_is_an_error(status: int) -> None:
    finding = health.judge_release(document({"releaseId": "1.4.0"}, "application/json", status=status), "1.4.0")
    assert finding.outcome == "error"
    assert f"HTTP {status}" in finding.summary


def test_release_from_unreadable_body_is_an_error() -> None:
    assert health.judge_release(document(b"[1, 2]", "application/json"), "1").outcome == "error"
    assert health.judge_release(observe(Route(200, "<html>1.4.0</html>", content_type="text/html")), "1.4.0").outcome == "error"


def test_json_without_a_health_status_is_judged_by_http_status_for_liveness() -> None:
    # {"alive": true} is no health dialect: a 2xx answer is alive, a 503 is not.
    assert health.judge_endpoint(document({"alive": True}), max_latency_ms=None).outcome == "passed"
    assert health.judge_endpoint(document({"alive": False}, status=503), max_latency_ms=None).outcome == "failed"


def test_deep_plain_answers_are_judged_by_http_status() -> None:
    assert health.judge_deep(observe(Route(200, "ok"))).outcome == "passed"
    assert health.judge_deep(observe(Route(503, "down"))).outcome == "failed"
