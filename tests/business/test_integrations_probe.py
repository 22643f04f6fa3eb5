"""business.integrations: the judges on synthetic health documents, then measure() against
loopback servers (a deep health document, a URL that answers 503, a refused port)."""

from __future__ import annotations

from typing import Any

import pytest

from loopback import Handler, Route, refused_port, serve
from releasegate.config import Integration, Target
from releasegate.probes import health, integrations
from releasegate.probes.health import Component, HealthDocument
from releasegate.probes.http import HttpObservation, HttpSettings
from releasegate.probes.integrations import DeepHealth

SETTINGS = HttpSettings(timeout_s=2, max_body_bytes=64 * 1024, headers={"Authorization": "Bearer tok-0123456789abcdef"})
HEALTH_JSON = "application/health+json"


def entry(name: str, **spec: Any) -> Integration:
    return Integration.model_validate({"name": name, **spec})


def deep(*components: Component, dialect: health.Dialect = "health+json") -> DeepHealth:
    statuses: list[health.HealthStatus] = [c.status for c in components]
    worst: health.HealthStatus = max(statuses, key=("pass", "warn", "fail").index, default="pass")
    return DeepHealth(url="https://app/health", document=HealthDocument(dialect=dialect, status=worst, components=components))


DB = Component("db:responseTime", "pass")
CACHE_WARN = Component("cache:utilization", "warn", "the cache is full and evicting")


# --- components ---------------------------------------------------------------------------------


def test_a_passing_component_is_ok_with_its_observed_value() -> None:
    document = DeepHealth(url="u", document=deep(DB).document, values={"db:responseTime": "0.2 ms"})
    result = integrations.judge_component(entry("database", component="db:responseTime"), document)
    assert (result.status, result.detail) == ("ok", "status pass, 0.2 ms")
    assert result.observed == {"status": "pass", "value": "0.2 ms"}


def test_a_degraded_component_fails_unless_degraded_is_allowed() -> None:
    strict = integrations.judge_component(entry("suggestion cache", component="cache:utilization"), deep(DB, CACHE_WARN))
    lenient = integrations.judge_component(entry("suggestion cache", component="cache:utilization", allow_degraded=True), deep(CACHE_WARN))
    assert strict.status == "failed"
    assert strict.detail == "status warn: the cache is full and evicting (degraded; set allow_degraded: true to accept this)"
    assert lenient.status == "degraded"


def test_a_failing_component_fails_even_when_degraded_is_allowed() -> None:
    down = Component("db:responseTime", "fail", "database is unreachable")
    result = integrations.judge_component(entry("database", component="db:responseTime", allow_degraded=True), deep(down))
    assert (result.status, result.detail) == ("failed", "status fail: database is unreachable")


def test_a_component_the_document_does_not_have_fails_listing_what_it_has() -> None:
    result = integrations.judge_component(entry("queue", component="queue:depth"), deep(DB, CACHE_WARN))
    assert result.status == "failed"
    assert result.detail == "the deep health document has no component queue:depth; it has db:responseTime, cache:utilization"


def test_several_instances_of_one_component_are_judged_by_the_worst() -> None:
    instances = (Component("db:responseTime[primary]", "pass"), Component("db:responseTime[replica]", "warn", "lagging"))
    result = integrations.judge_component(entry("database", component="db:responseTime"), deep(*instances))
    assert result.status == "failed" and "lagging" in result.detail


def test_without_a_health_document_components_cannot_be_judged() -> None:
    plain = integrations.judge_component(entry("database", component="db:responseTime"), deep(dialect="plain"))
    missing = integrations.judge_component(entry("database", component="db:responseTime"), DeepHealth(url=None, problem="no deep"))
    assert plain.status == "error" and "not a health document" in plain.detail
    assert (missing.status, missing.detail) == ("error", "no deep")


# --- URLs ---------------------------------------------------------------------------------------


def observation(status: int, reason: str = "") -> HttpObservation:
    return HttpObservation("https://x/metrics", status, reason, {}, b"", False, 12.0)


@pytest.mark.parametrize(("status", "verdict"), [(200, "ok"), (302, "ok"), (404, "failed"), (503, "failed")])
def test_a_url_must_answer_2xx_or_3xx(status: int, verdict: str) -> None:
    assert integrations.judge_url(entry("metrics", url="/metrics"), "https://x/metrics", observation(status)).status == verdict


def test_a_url_that_does_not_answer_fails() -> None:
    result = integrations.judge_url(entry("search", url="https://search:9200"), "https://search:9200", None, "cannot connect: refused")
    assert (result.status, result.detail) == ("failed", "does not answer: cannot connect: refused")


# --- the finding --------------------------------------------------------------------------------


def result(name: str, status: integrations.IntegrationStatus, detail: str = "d") -> integrations.IntegrationResult:
    return integrations.IntegrationResult(name, "component", f"{name}:x", status, detail)


def test_all_ok_passes_naming_every_integration() -> None:
    finding = integrations.judge([result("database", "ok"), result("cache", "ok")], deep_url="https://app/health")
    assert finding.outcome == "passed"
    assert finding.summary == "all 2 integrations answer: database, cache"
    assert finding.evidence["samples"] == 2 and finding.evidence["deep_health"] == "https://app/health"


def test_allowed_degradation_warns() -> None:
    finding = integrations.judge([result("database", "ok"), result("cache", "degraded", "status warn")], deep_url=None)
    assert finding.outcome == "warned" and finding.summary == "degraded but allowed: cache (cache:x): status warn"


def test_a_failure_decides_over_what_could_not_be_judged() -> None:
    finding = integrations.judge([result("a", "error", "unreadable"), result("b", "failed", "status fail")], deep_url=None)
    assert finding.outcome == "failed" and finding.summary == "b (b:x): status fail"


def test_what_could_not_be_judged_is_an_error_never_a_pass() -> None:
    finding = integrations.judge([result("a", "ok"), result("b", "error", "no deep health")], deep_url=None)
    assert finding.outcome == "error" and finding.summary == "could not judge b (b:x): no deep health"
    assert finding.evidence["samples"] == 1


# --- measure() against loopback servers ---------------------------------------------------------


def health_route(**components: str) -> Route:
    checks = {
        name: [{"status": status, "observedValue": 42, "observedUnit": "percent", **({"output": "degraded"} if status != "pass" else {})}]
        for name, status in components.items()
    }
    return Route(200, {"status": "pass", "checks": checks}, content_type=HEALTH_JSON)


def target(base_url: str, *entries: dict[str, Any], deep_path: str | None = "/health") -> Target:
    health_paths = {"deep": deep_path} if deep_path else None
    return Target.model_validate({"name": "t", "base_url": base_url, "health": health_paths, "integrations": list(entries)})


def test_a_healthy_service_with_components_and_a_url_passes() -> None:
    routes: dict[str, Route | Handler] = {
        "/health": health_route(**{"db:responseTime": "pass", "cache:utilization": "pass"}),
        "/metrics": Route(200, "# metrics"),
    }
    with serve(routes) as server:
        finding = integrations.measure(
            target(
                server.base_url,
                {"name": "database", "component": "db:responseTime"},
                {"name": "cache", "component": "cache:utilization"},
                {"name": "metrics", "url": "/metrics"},
            ),
            SETTINGS,
        )
        deep_requests = [path for path, _ in server.requests if path == "/health"]
    assert finding.outcome == "passed", finding.summary
    assert deep_requests == ["/health"]  # fetched once for both components
    assert finding.evidence["integrations"][1] == {
        "name": "cache",
        "component": "cache:utilization",
        "status": "ok",
        "detail": "status pass, 42 percent",
        "observed": {"status": "pass", "value": "42 percent"},
    }


def test_a_degraded_cache_fails_and_a_503_url_fails_too() -> None:
    routes: dict[str, Route | Handler] = {"/health": health_route(**{"cache:utilization": "warn"}), "/search": Route(503, "down")}
    with serve(routes) as server:
        finding = integrations.measure(
            target(server.base_url, {"name": "cache", "component": "cache:utilization"}, {"name": "search", "url": "/search"}),
            SETTINGS,
        )
    assert finding.outcome == "failed"
    assert "cache (cache:utilization): status warn, 42 percent: degraded" in finding.summary
    assert "search (http://127.0.0.1:" in finding.summary and "answered HTTP 503 Service Unavailable" in finding.summary


def test_a_refused_dependency_fails() -> None:
    url = f"http://127.0.0.1:{refused_port()}/ping"
    with serve({}) as server:
        finding = integrations.measure(target(server.base_url, {"name": "billing", "url": url}, deep_path=None), SETTINGS)
    assert finding.outcome == "failed"
    assert finding.summary.startswith(f"billing ({url}): does not answer: cannot connect")


def test_an_unreachable_deep_health_document_is_an_error_for_its_components() -> None:
    base = f"http://127.0.0.1:{refused_port()}"
    finding = integrations.measure(target(base, {"name": "database", "component": "db:responseTime"}), SETTINGS)
    assert finding.outcome == "error"
    assert "the deep health document (" in finding.summary and "could not be fetched" in finding.summary


def test_components_without_health_deep_say_how_to_fix_the_target() -> None:
    finding = integrations.measure(target("https://app.test", {"name": "database", "component": "db"}, deep_path=None), SETTINGS)
    assert finding.outcome == "error"
    assert "names no health.deep; set health.deep to the deep health path" in finding.summary


def test_the_token_goes_to_the_deployment_but_not_to_a_third_party_url() -> None:
    with serve({"/metrics": Route(200, "ok")}) as own, serve({"/status": Route(200, "ok")}) as other:
        finding = integrations.measure(
            target(own.base_url, {"name": "metrics", "url": "/metrics"}, {"name": "vendor", "url": other.url("/status")}, deep_path=None),
            SETTINGS,
        )
        own_headers, other_headers = own.requests[0][1], other.requests[0][1]
    assert finding.outcome == "passed"
    assert own_headers["authorization"] == "Bearer tok-0123456789abcdef"
    assert "authorization" not in other_headers
