"""infra.capacity: the judgement (pure), the snapshots (the reference's real /metrics, a fake Prometheus)."""

from __future__ import annotations

import json
import math
import ssl
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from loopback import Route, serve
from releasegate._exceptions import ProbeError
from releasegate.config import CapacityRules, LoadedTarget, LoadPolicy, LoadTargetSettings, PrometheusSettings, Target
from releasegate.load import capacity
from releasegate.load.capacity import GIB, MIB, ResourceSnapshot, judge_capacity
from releasegate.probes.http import HttpSettings
from releasegate.reference import server
from releasegate.reference.settings import ServiceSettings
from releasegate.results import Finding

RULES = CapacityRules()  # the guide's defaults: 1 core / 10 conversations, 8 GiB + 200 MiB each, 10 KB/s, 70 %, 80 %


def snap(
    cpu: float | None = 100.0,
    resident: float | None = 1 * GIB,
    sent: float | None = 0.0,
    *,
    in_use: float | None = None,
    size: float | None = None,
    busy: float | None = None,
    processes: int = 1,
    sampled_at: float | None = None,
) -> ResourceSnapshot:
    return ResourceSnapshot(
        at_monotonic=0.0,
        cpu_seconds=cpu,
        resident_bytes=resident,
        bytes_sent=sent,
        pool_in_use=in_use,
        pool_size=size,
        pool_busy_seconds=busy,
        processes=processes,
        source="http://svc/metrics",
        sampled_at=sampled_at,
    )


def judge(before: ResourceSnapshot, after: ResourceSnapshot, **overrides: Any) -> Finding:
    args: dict[str, Any] = {
        "duration_s": 10.0,
        "concurrent_conversations": 10,
        "active_users": 10,
        "p95_ms": 50.0,
        "sla_p95_ms": 200.0,
        "rules": RULES,
        "replicas": 1,
    }
    args.update(overrides)
    return judge_capacity(before, after, **args)


def rule(finding: Finding, name: str) -> dict[str, Any]:
    rows: list[dict[str, Any]] = finding.evidence["rules"]
    return next(row for row in rows if row["rule"] == name)


# --------------------------------------------------------------------------- the judgement


def test_a_light_service_fits_every_rule_and_reports_each_figure() -> None:
    # Given 1 CPU second over 10 s for 10 conversations (0.1 core), 512,000 bytes sent to 10 users
    finding = judge(snap(100.0, 1 * GIB, 0), snap(101.0, 1 * GIB + 50 * MIB, 512_000))
    assert finding.outcome == "passed", finding.summary
    figures = finding.evidence["figures"]
    assert figures["cores_used_per_replica"] == pytest.approx(0.1)
    assert figures["cores_per_10_conversations"] == pytest.approx(0.1)
    assert figures["cpu_percent"] == pytest.approx(10.0)
    assert figures["kb_per_s_per_user"] == pytest.approx(5.0)  # 512,000 B / 10 s / 10 users / 1024
    assert figures["memory_mb_per_conversation"] == pytest.approx(5.0)
    assert figures["resident_mib_per_replica"] == pytest.approx(1074.0)
    assert all(not row["exceeded"] for row in finding.evidence["rules"])
    assert "fits the sizing rules" in finding.summary


def test_cores_per_ten_conversations_over_the_guide_fail() -> None:
    # 15 CPU seconds in 10 s = 1.5 cores for 10 conversations; allowed 1.0 per 10
    finding = judge(snap(100.0), snap(115.0), cores_per_replica=4.0)
    assert finding.outcome == "failed"
    assert rule(finding, "cores per 10 conversations")["exceeded"]
    assert not rule(finding, "CPU trigger")["exceeded"]  # 1.5 of 4 cores is 37.5 %
    assert "cores per 10 conversations 1.5 cores > 1" in finding.summary


def test_memory_over_base_plus_per_conversation_fails() -> None:
    # 10 conversations: 8 GiB + 10 x 200 MiB = 10,192 MiB allowed; 10.5 GiB resident
    finding = judge(snap(100.0, 10 * GIB), snap(100.5, 10.5 * GIB))
    assert finding.outcome == "failed"
    row = rule(finding, "memory")
    assert row["exceeded"] and row["limit"] == pytest.approx(10_192.0)
    assert row["measured"] == pytest.approx(10_752.0)


def test_bandwidth_per_user_over_the_guide_fails() -> None:
    # 11 KB/s for each of 10 users over 10 s
    finding = judge(snap(sent=0), snap(100.5, sent=11 * 1024 * 10 * 10))
    assert finding.outcome == "failed"
    assert rule(finding, "bandwidth per user")["measured"] == pytest.approx(11.0)


def test_cpu_trigger_is_judged_against_the_cores_a_replica_has() -> None:
    # 0.15 core for 30 conversations is cheap per conversation, but 75 % of a 0.2-core replica
    finding = judge(snap(100.0), snap(101.5), concurrent_conversations=30, cores_per_replica=0.2)
    assert finding.outcome == "failed"
    assert not rule(finding, "cores per 10 conversations")["exceeded"]
    assert rule(finding, "CPU trigger")["measured"] == pytest.approx(75.0)
    assert "CPU trigger 75 % > 70" in finding.summary


def test_pool_trigger_uses_the_mean_in_use_from_the_slot_seconds_counter() -> None:
    # 540 slot-seconds in 10 s = 54 of 64 in use on average: 84 %
    before = snap(100.0, in_use=0, size=64, busy=1000.0)
    after = snap(100.5, in_use=0, size=64, busy=1540.0)
    finding = judge(before, after)
    assert finding.outcome == "failed"
    row = rule(finding, "pool trigger")
    assert row["measured"] == pytest.approx(84.375)
    assert row["note"] == "mean in use over the load"


def test_pool_trigger_falls_back_to_the_gauge_at_the_snapshots() -> None:
    finding = judge(snap(100.0, in_use=2, size=10), snap(100.5, in_use=9, size=10))
    row = rule(finding, "pool trigger")
    assert row["exceeded"] and row["measured"] == pytest.approx(90.0)
    assert "lower bound" in row["note"]


def test_without_a_pool_metric_the_pool_trigger_is_not_judged() -> None:
    finding = judge(snap(100.0), snap(100.5))
    row = rule(finding, "pool trigger")
    assert finding.outcome == "passed"
    assert row["judged"] is False and row["measured"] is None
    assert "not measured" in row["note"]


def test_p95_over_the_sla_is_a_scaling_trigger() -> None:
    finding = judge(snap(100.0), snap(100.5), p95_ms=250.0, sla_p95_ms=200.0)
    assert finding.outcome == "failed"
    assert rule(finding, "latency trigger")["exceeded"]
    no_sla = judge(snap(100.0), snap(100.5), p95_ms=250.0, sla_p95_ms=None)
    assert no_sla.outcome == "passed"
    assert rule(no_sla, "latency trigger")["judged"] is False


def test_a_p95_with_lost_samples_exceeds_the_sla_and_stays_json() -> None:
    finding = judge(snap(100.0), snap(100.5), p95_ms=math.inf, sla_p95_ms=200.0)
    row = rule(finding, "latency trigger")
    assert finding.outcome == "failed" and row["exceeded"]
    assert row["measured"] is None and "samples were lost" in row["note"]
    assert "latency trigger infinite ms > 200" in finding.summary
    json.dumps(finding.evidence, allow_nan=False)


def test_headroom_and_replicas_follow_the_measured_cost_per_conversation() -> None:
    # 0.1 core for 10 conversations: 0.01 core each; a replica reaches 70 % of one core at 70
    finding = judge(snap(100.0), snap(101.0))
    headroom = finding.evidence["headroom"]
    assert headroom["capacity_per_replica"]["CPU trigger"] == pytest.approx(70.0)
    assert headroom["conversations_per_replica"] == pytest.approx(70.0)
    assert headroom["bound_by"] == "CPU trigger"
    assert headroom["more_conversations_per_replica"] == pytest.approx(60.0)
    replicas = finding.evidence["recommended_replicas"]
    assert replicas == {"small_team": {"conversations": 50, "replicas": 1}, "enterprise": {"conversations": 500, "replicas": 8}}
    assert "small_team (50): 1, enterprise (500): 8" in finding.summary


def test_replicas_share_the_load_and_processes_share_the_figures() -> None:
    # Given Prometheus summing 2 processes: 2 CPU seconds in 10 s = 0.1 core each, 20 conversations over 2 replicas
    finding = judge(snap(200.0, 2 * GIB, processes=2), snap(202.0, 2 * GIB, processes=2), concurrent_conversations=20, replicas=2)
    figures, headroom = finding.evidence["figures"], finding.evidence["headroom"]
    assert figures["cores_used_per_replica"] == pytest.approx(0.1)
    assert figures["cores_per_10_conversations"] == pytest.approx(0.1)
    assert figures["resident_mib_per_replica"] == pytest.approx(1024.0)
    assert headroom["conversations_now_per_replica"] == pytest.approx(10.0)
    assert headroom["more_conversations_total"] == pytest.approx(120.0)


def test_the_pool_can_bound_the_capacity_before_the_cpu() -> None:
    # 0.01 core per conversation (CPU: 70 per replica), but 5 of 10 pool slots for 10 conversations (pool: 16)
    finding = judge(snap(100.0, in_use=0, size=10, busy=0.0), snap(101.0, in_use=0, size=10, busy=50.0))
    headroom = finding.evidence["headroom"]
    assert headroom["capacity_per_replica"]["pool trigger"] == pytest.approx(16.0)
    assert headroom["bound_by"] == "pool trigger"
    assert finding.evidence["recommended_replicas"]["enterprise"]["replicas"] == math.ceil(500 / 16)


def test_memory_capacity_when_a_conversation_costs_more_than_the_guide_allows() -> None:
    # Idle 1 GiB; 10 conversations grew it by 3,000 MiB: 300 MiB each, 100 over the guide's 200;
    # the 7 GiB left of the 8 GiB base lasts 71.68 conversations.
    finding = judge(snap(100.0, 1 * GIB), snap(100.1, 1 * GIB + 3000 * MIB))
    headroom = finding.evidence["headroom"]
    assert headroom["capacity_per_replica"]["memory"] == pytest.approx(71.7, abs=0.05)
    assert headroom["bound_by"] == "memory"


def test_no_measured_cost_means_no_replica_recommendation() -> None:
    finding = judge(snap(100.0), snap(100.0))
    assert finding.outcome == "passed"
    assert finding.evidence["headroom"]["conversations_per_replica"] is None
    assert finding.evidence["recommended_replicas"]["enterprise"]["replicas"] is None
    assert "no measured cost bounds" in finding.summary


@pytest.mark.parametrize(
    ("before", "after", "named"),
    [
        (snap(cpu=None), snap(), "cpu_seconds (process_cpu_seconds_total)"),
        (snap(), snap(resident=None), "resident_bytes (process_resident_memory_bytes)"),
        (snap(sent=None), snap(sent=None), "bytes_sent"),
    ],
    ids=["cpu", "memory", "bytes"],
)
def test_missing_metrics_are_an_error_naming_them(before: ResourceSnapshot, after: ResourceSnapshot, named: str) -> None:
    finding = judge(before, after)
    assert finding.outcome == "error"
    assert named in finding.summary
    assert "snapshots" in finding.evidence


def test_a_counter_going_backwards_is_an_error() -> None:
    finding = judge(snap(100.0), snap(3.0))
    assert finding.outcome == "error"
    assert "restarted" in finding.summary


def test_a_load_without_conversations_is_an_error() -> None:
    finding = judge(snap(100.0), snap(101.0), concurrent_conversations=0)
    assert finding.outcome == "error"
    assert "nothing to size" in finding.summary


def test_prometheus_sample_times_set_the_span() -> None:
    # The samples are 20 s apart although the load ran 10 s: counters cover 20 s
    finding = judge(snap(100.0, sampled_at=1000.0), snap(102.0, sampled_at=1020.0))
    assert finding.evidence["figures"]["cores_used_per_replica"] == pytest.approx(0.1)
    assert finding.evidence["load"]["span"] == "between the samples' scrape times"
    stale = judge(snap(100.0, sampled_at=1000.0), snap(100.0, sampled_at=1000.0))
    assert stale.outcome == "error" and "scrape interval" in stale.summary


@pytest.mark.parametrize(
    ("thresholds", "expected"),
    [
        ({"http_p95_ms": "<800"}, 800.0),
        ({"http_p95_ms": [">=1", "<=300", "<500"]}, 300.0),
        ({"http_p95_ms": {"condition": "<250", "abort_on_fail": True}}, 250.0),
        ({"fail_ratio": "<0.01"}, None),
        ({"http_p95_ms{GET /api/v1/me}": "<100"}, None),  # scoped to one request: not the service's SLA
    ],
)
def test_the_sla_is_the_tightest_global_http_p95_bound(thresholds: dict[str, Any], expected: float | None) -> None:
    assert capacity.sla_p95_ms(LoadPolicy.model_validate({"thresholds": thresholds})) == expected


# --------------------------------------------------------------------------- snapshots


def test_parse_metrics_sums_label_sets() -> None:
    text = 'x_total{a="1"} 2\nx_total{a="2"} 3\n# TYPE g gauge\ng 7\n'
    assert capacity.parse_metrics(text) == {"x_total": 5.0, "g": 7.0}


def test_parse_metrics_refuses_what_is_not_the_text_format() -> None:
    with pytest.raises(ProbeError, match="not the Prometheus text format"):
        capacity.parse_metrics("<html><body>hello there</body></html>")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[server.RunningService]:
    with server.start(ServiceSettings(data_dir=tmp_path_factory.mktemp("capacity"))) as service:
        yield service


def settings_for(service: server.RunningService) -> HttpSettings:
    return HttpSettings(timeout_s=5.0, max_body_bytes=1_048_576, verify=ssl.create_default_context(cafile=str(service.ca_path)))


def test_snapshot_of_the_reference_metrics_has_every_figure(reference: server.RunningService) -> None:
    url = reference.base_url + "/metrics"
    first = capacity.snapshot(url, settings_for(reference))
    with httpx.Client(verify=ssl.create_default_context(cafile=str(reference.ca_path))) as client:
        client.get(reference.base_url + "/api/v1/me")  # a 401 with a body: bytes sent
    second = capacity.snapshot(url, settings_for(reference))
    for shot in (first, second):
        assert shot.cpu_seconds is not None and shot.cpu_seconds > 0
        assert shot.resident_bytes is not None and shot.resident_bytes > 10 * MIB
        assert shot.pool_size == 64 and shot.pool_in_use == 0
        assert shot.problems == ()
        assert shot.source == url and shot.processes == 1
    assert dict(second.names) == {
        "bytes_sent": "http_response_bytes_total",
        "pool_in_use": "api_requests_in_flight",
        "pool_size": "api_requests_in_flight_limit",
        "pool_busy_seconds": "api_requests_in_flight_seconds_total",
    }
    assert second.bytes_sent is not None and first.bytes_sent is not None and second.bytes_sent > first.bytes_sent
    assert second.pool_busy_seconds is not None and first.pool_busy_seconds is not None
    assert second.pool_busy_seconds > first.pool_busy_seconds
    assert second.at_monotonic > first.at_monotonic


def test_snapshot_without_the_metrics_is_still_a_snapshot_saying_what_lacks() -> None:
    with serve({"/metrics": Route(200, "# TYPE up gauge\nup 1\n")}) as fake:
        shot = capacity.snapshot(fake.url("/metrics"), HttpSettings(timeout_s=5.0, max_body_bytes=65_536))
    assert shot.cpu_seconds is None and shot.bytes_sent is None and shot.pool_size is None
    assert any("process_cpu_seconds_total" in problem for problem in shot.problems)
    finding = judge(shot, shot)
    assert finding.outcome == "error"
    assert "no process_cpu_seconds_total in the metrics" in finding.summary


@pytest.mark.parametrize(
    ("route", "message"),
    [
        (Route(404, "not found"), "HTTP 404"),
        (Route(200, "<html>a page</html>"), "not the Prometheus text format"),
        (Route(200, "x 1\n" * 40_000), "larger than"),
        (Route(200, ""), "no samples"),
    ],
    ids=["404", "html", "huge", "empty"],
)
def test_snapshot_refuses_an_unreadable_metrics_page(route: Route, message: str) -> None:
    with serve({"/metrics": route}) as fake:
        with pytest.raises(ProbeError, match=message) as raised:
            capacity.snapshot(fake.url("/metrics"), HttpSettings(timeout_s=5.0, max_body_bytes=65_536))
    assert raised.value.url == fake.url("/metrics")


def fake_prometheus(series: dict[str, float], *, processes: int = 2, asked: list[str] | None = None) -> Any:
    """A Prometheus API answering sum(...), count(...) and max(timestamp(...)) of known series."""

    def answer(request: BaseHTTPRequestHandler) -> Route:
        query = parse_qs(urlsplit(request.path).query)["query"][0]
        if asked is not None:
            asked.append(query)
        name = query.split("(")[-1].split("{")[0]
        if query.startswith("count("):
            value: float | None = processes if name in series else None
        elif query.startswith("max(timestamp("):
            value = 1_700_000_000.0 if name in series else None
        else:
            value = series.get(name)
        result = [] if value is None else [{"metric": {}, "value": [1_700_000_000.0, str(value)]}]
        return Route(200, {"status": "success", "data": {"resultType": "vector", "result": result}})

    return answer


def test_snapshot_from_prometheus_sums_the_selected_series() -> None:
    series = {
        "process_cpu_seconds_total": 12.5,
        "process_resident_memory_bytes": 3 * GIB,
        "http_response_size_bytes_sum": 4096.0,  # the second-choice bytes metric
        "db_pool_connections_in_use": 3.0,
        "db_pool_connections_max": 20.0,
    }
    queries: list[str] = []
    with serve({"/api/v1/query": fake_prometheus(series, asked=queries)}) as fake:
        shot = capacity.snapshot_prometheus(fake.base_url, 'job="api"', HttpSettings(timeout_s=5.0, max_body_bytes=65_536))
    assert (shot.cpu_seconds, shot.resident_bytes, shot.bytes_sent) == (12.5, 3 * GIB, 4096.0)
    assert (shot.pool_in_use, shot.pool_size, shot.pool_busy_seconds) == (3.0, 20.0, None)
    assert shot.processes == 2 and shot.sampled_at == 1_700_000_000.0
    assert shot.names["bytes_sent"] == "http_response_size_bytes_sum"
    assert shot.source == f'prometheus {fake.base_url} {{job="api"}}'
    assert 'sum(process_cpu_seconds_total{job="api"})' in queries
    assert 'sum(http_response_bytes_total{job="api"})' in queries  # asked first, unknown here
    assert all("authorization" not in headers for _, headers in fake.requests)


def test_snapshot_from_a_prometheus_that_knows_nothing_is_a_probe_error() -> None:
    with serve({"/api/v1/query": fake_prometheus({})}) as fake:
        with pytest.raises(ProbeError, match="none of the capacity queries"):
            capacity.snapshot_prometheus(fake.base_url, "", HttpSettings(timeout_s=5.0, max_body_bytes=65_536))


def loaded(base_url: str, tmp_path: Path, **target: Any) -> LoadedTarget:
    return LoadedTarget(Target(name="t", base_url=base_url, auth={"token_env": "RG_CAPACITY_TOKEN"}, **target), tmp_path / "target.yaml")


def test_snapshot_target_sends_the_token_only_to_the_service_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RG_CAPACITY_TOKEN", "capacity-token-0123456789")
    page = "process_cpu_seconds_total 1\nprocess_resident_memory_bytes 2\nhttp_response_bytes_total 3\n"
    with serve({"/metrics": Route(200, page)}) as service, serve({"/metrics": Route(200, page)}) as other:
        same = capacity.snapshot_target(
            loaded(service.base_url, tmp_path, load=LoadTargetSettings(metrics="/metrics")), timeout_s=5, max_body_bytes=4096
        )
        elsewhere = loaded(service.base_url, tmp_path, load=LoadTargetSettings(metrics=other.url("/metrics")))
        foreign = capacity.snapshot_target(elsewhere, timeout_s=5, max_body_bytes=4096)
        assert same is not None and foreign is not None
        assert (same.cpu_seconds, same.resident_bytes, same.bytes_sent) == (1.0, 2.0, 3.0)
        assert service.requests[-1][1]["authorization"] == "Bearer capacity-token-0123456789"
        assert "authorization" not in other.requests[-1][1]


def test_snapshot_target_prefers_prometheus_and_is_none_without_a_source(tmp_path: Path) -> None:
    series = {"process_cpu_seconds_total": 1.0, "process_resident_memory_bytes": 2.0, "http_response_bytes_total": 3.0}
    with serve({"/api/v1/query": fake_prometheus(series, processes=1)}) as prom:
        both = loaded(
            "http://127.0.0.1:9", tmp_path, load=LoadTargetSettings(metrics="/metrics"), prometheus=PrometheusSettings(url=prom.base_url)
        )
        shot = capacity.snapshot_target(both, timeout_s=5, max_body_bytes=4096)
    assert shot is not None and shot.source.startswith("prometheus ")
    assert (
        capacity.snapshot_target(loaded("http://127.0.0.1:9", tmp_path, load=LoadTargetSettings()), timeout_s=5, max_body_bytes=4096)
        is None
    )
    assert capacity.snapshot_target(loaded("http://127.0.0.1:9", tmp_path), timeout_s=5, max_body_bytes=4096) is None
    assert (
        capacity.metrics_url(loaded("https://svc.test/app", tmp_path, load=LoadTargetSettings(metrics="metrics")))
        == "https://svc.test/app/metrics"
    )


def test_the_evidence_is_json() -> None:
    finding = judge(snap(100.0, in_use=0, size=64, busy=0.0), snap(101.0, in_use=0, size=64, busy=1.0))
    json.dumps(finding.evidence, allow_nan=False)


# --------------------------------------------------------------------------- sizing by the mean load


def _spike_summary(**overrides: Any) -> Any:
    from releasegate.load.results import LoadSummary

    fields: dict[str, Any] = {
        "requests": 100, "failures": 0, "sync_events": 0, "sync_failures": 0, "fail_ratio": 0.0, "rps": 10.0,
        "http": None, "sync": None, "dropped_iterations": 0, "peak_users": 20, "concurrent_conversations": 20,
        "duration_s": 10.0, "generator_cpu_percent_max": None, "generator_cpu_percent_peak": None,
        "generator_cpu_percent_mean": None, "cpu_warning": False, "workers": 0,
        "mean_users": 10.0, "mean_conversations": 10.0,
    }  # fmt: skip
    fields.update(overrides)
    return LoadSummary(**fields)


def test_a_spike_is_sized_by_its_mean_load_not_its_peak() -> None:
    # A spike: 20 conversations at the top, 10 on average over the run. 15 CPU s in 10 s is 1.5 cores
    # over the run, ramps included: 1.5 per 10 conversations of the mean, not 0.75 per 10 of the peak.
    summary = _spike_summary()
    conversations, users = capacity.sizing_load(summary)
    assert (conversations, users) == (10.0, 10.0)
    by_mean = judge(snap(100.0), snap(115.0), concurrent_conversations=conversations, active_users=users, cores_per_replica=4.0)
    assert by_mean.outcome == "failed"
    assert rule(by_mean, "cores per 10 conversations")["exceeded"]
    by_peak = judge(snap(100.0), snap(115.0), concurrent_conversations=20, active_users=20, cores_per_replica=4.0)
    assert not rule(by_peak, "cores per 10 conversations")["exceeded"]  # what the peak understated


@pytest.mark.parametrize("mean", [None, 0.0])
def test_sizing_falls_back_to_the_peak_without_a_mean(mean: float | None) -> None:
    assert capacity.sizing_load(_spike_summary(mean_users=mean, mean_conversations=mean)) == (20.0, 20.0)


def test_the_means_travel_through_results_json_and_older_results_read_as_none() -> None:
    from releasegate.load.results import LoadSummary

    summary = _spike_summary(mean_users=7.25, mean_conversations=6.5)
    data = json.loads(json.dumps(summary.to_json()))
    again = LoadSummary.from_json(data)
    assert (again.mean_users, again.mean_conversations) == (7.25, 6.5)
    del data["mean_users"], data["mean_conversations"]
    older = LoadSummary.from_json(data)
    assert older.mean_users is None and capacity.sizing_load(older) == (20.0, 20.0)
