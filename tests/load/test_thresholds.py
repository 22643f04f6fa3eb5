"""k6-style load thresholds: parsing, merging and evaluation against a summary (pure)."""

from __future__ import annotations

import math

import pytest

from releasegate.config import LoadPolicy, LoadThreshold
from releasegate.load.results import SampleBook
from releasegate.load.thresholds import Threshold, ThresholdError, evaluate, format_value, merge, parse_key, thresholds_of

MESSAGES = "/api/v1/conversations/[id]/messages"


def book_of(*rows: tuple[str, str, float, bool]) -> SampleBook:
    book = SampleBook()
    for i, (request_type, name, rt, failed) in enumerate(rows):
        book.add(1000.0 + i / 10, request_type, name, rt, failed)
    return book


def one(key: str, condition: str = "<100") -> Threshold:
    return thresholds_of({key: condition}, "gates")[0]


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("key", "metric", "scope"),
    [
        ("http_p95_ms", "http_p95_ms", None),
        ("http_p95_ms{GET /api/v1/me}", "http_p95_ms", "GET /api/v1/me"),
        ("  fail_ratio { POST   /x }  ", "fail_ratio", "POST /x"),
        ("sync_p95_ms{sync edit->event}", "sync_p95_ms", "sync edit->event"),
        ("rps", "rps", None),
    ],
)
def test_a_key_is_a_metric_and_an_optional_request_name(key: str, metric: str, scope: str | None) -> None:
    assert parse_key(key) == (metric, scope)


@pytest.mark.parametrize("key", ["p95", "http_p95_ms{}", "HTTP_P95_MS", "http_p95_ms{x", "latency{GET /}"])
def test_an_unreadable_key_is_refused(key: str) -> None:
    with pytest.raises(ThresholdError):
        parse_key(key)


@pytest.mark.parametrize(
    ("condition", "op", "value"),
    [("<800", "<", 800.0), ("<= 0.5", "<=", 0.5), (">=2", ">=", 2.0), ("> 10", ">", 10.0), ("==0", "==", 0.0), ("<-1", "<", -1.0)],
)
def test_conditions_in_k6_form(condition: str, op: str, value: float) -> None:
    threshold = one("http_p95_ms", condition)
    assert (threshold.op, threshold.value) == (op, value)
    assert threshold.condition == f"{op}{value:g}"


@pytest.mark.parametrize("condition", ["800", "<", "< eight hundred", "p(95)<800", "=<5"])
def test_a_malformed_condition_is_refused(condition: str) -> None:
    with pytest.raises(ThresholdError):
        one("http_p95_ms", condition)


def test_the_three_shapes_of_an_entry_string_list_and_object() -> None:
    parsed = thresholds_of(
        {
            "http_p95_ms": "<800",
            "fail_ratio": ["<0.05", {"condition": "<0.01", "abort_on_fail": True, "delay_abort_eval_s": 10}],
            "rps": LoadThreshold(condition=">=5"),
        },
        "gates",
    )
    assert [str(t) for t in parsed] == ["http_p95_ms <800", "fail_ratio <0.05", "fail_ratio <0.01", "rps >=5"]
    abort = parsed[2]
    assert abort.abort_on_fail and abort.delay_abort_eval_s == 10


def test_the_validated_policy_model_reads_the_same() -> None:
    policy = LoadPolicy.model_validate({"thresholds": {"http_p95_ms{GET /x}": {"condition": "<200", "abort_on_fail": True}}})
    (threshold,) = thresholds_of(policy.thresholds, "gates")
    assert threshold.key == "http_p95_ms{GET /x}" and threshold.abort_on_fail


def test_the_policy_wins_over_the_profile_on_the_same_key_and_the_profile_adds_the_rest() -> None:
    merged = merge({"http_p95_ms": "<800", "fail_ratio": "<0.01"}, {"http_p95_ms": "<5000", "rps": ">=2", "fail_ratio{GET /x}": "<0.5"})
    assert [(t.key, t.condition, t.source) for t in merged] == [
        ("http_p95_ms", "<800", "gates"),
        ("fail_ratio", "<0.01", "gates"),
        ("rps", ">=2", "profile"),
        ("fail_ratio{GET /x}", "<0.5", "profile"),
    ]


def test_scopes_written_with_other_spacing_are_the_same_key() -> None:
    merged = merge({"http_p95_ms{GET  /x}": "<800"}, {"http_p95_ms{ GET /x }": "<5000"})
    assert [t.condition for t in merged] == ["<800"]


# --------------------------------------------------------------------------- evaluation


def test_global_http_percentile_against_its_condition() -> None:
    summary = book_of(*[("GET", "/a", float(ms), False) for ms in range(1, 101)]).summary(duration_s=10)
    assert evaluate(one("http_p95_ms", "<100"), summary).outcome == "passed"
    failed = evaluate(one("http_p95_ms", "<90"), summary)
    assert (failed.outcome, failed.observed) == ("failed", 95.0)
    assert failed.describe() == "http_p95_ms 95.0 ms, expected <90"


def test_a_bound_is_strict_or_not_as_written() -> None:
    summary = book_of(("GET", "/a", 100.0, False)).summary(duration_s=1)
    assert evaluate(one("http_max_ms", "<100"), summary).outcome == "failed"
    assert evaluate(one("http_max_ms", "<=100"), summary).outcome == "passed"


def test_fail_ratio_counts_http_and_sync_failures_but_not_dropped_arrivals() -> None:
    summary = book_of(
        ("GET", "/a", 5, False),
        ("GET", "/a", 5, True),
        ("WS", "sync edit->event", 5, False),
        ("WS", "sync edit->event", 5000, True),
        ("ARRIVAL", "dropped iteration", 0, True),
    ).summary(duration_s=1)
    evaluation = evaluate(one("fail_ratio", "<0.01"), summary)
    assert evaluation.observed == pytest.approx(0.5)
    assert evaluate(one("dropped_iterations", "==0"), summary).observed == 1


def test_rps_and_requests_count_http_only() -> None:
    summary = book_of(*[("POST", "/m", 5, False)] * 20, *[("WS", "sync edit->event", 1, False)] * 50).summary(duration_s=10)
    assert evaluate(one("rps", ">=2"), summary).observed == pytest.approx(2.0)
    assert evaluate(one("requests", ">=20"), summary).outcome == "passed"


def test_a_lost_sync_event_fails_a_sync_percentile_as_infinitely_late() -> None:
    summary = book_of(*[("WS", "sync edit->event", 10, False)] * 10, ("WS", "sync edit->event", 5000, True)).summary(duration_s=1)
    evaluation = evaluate(one("sync_p99_ms", "<250"), summary)
    assert evaluation.outcome == "failed" and evaluation.observed == math.inf
    assert "lost" in evaluation.describe()
    assert evaluation.evidence()["observed"] is None and evaluation.evidence()["lost"] is True


def test_sync_latency_pools_round_trips_not_the_connect_handshake() -> None:
    summary = book_of(("WS", "sync connect", 900, False), *[("WS", "sync edit->event", 4, False)] * 3).summary(duration_s=1)
    assert evaluate(one("sync_p95_ms", "<250"), summary).observed == 4
    assert summary.sync_events == 4


def test_scoped_to_one_request_name_with_or_without_its_type() -> None:
    summary = book_of(
        *[("GET", MESSAGES, 10, False)] * 19, ("GET", MESSAGES, 400, False), *[("POST", "/api/v1/conversations", 900, False)] * 5
    ).summary(duration_s=1)
    assert evaluate(one(f"http_p95_ms{{GET {MESSAGES}}}", "<200"), summary).observed == 10
    assert evaluate(one(f"http_max_ms{{{MESSAGES}}}", "<200"), summary).observed == 400
    assert evaluate(one("http_p95_ms", "<200"), summary).outcome == "failed"


def test_scoped_fail_ratio_and_rps() -> None:
    summary = book_of(*[("GET", "/a", 1, False)] * 3, ("GET", "/a", 1, True), ("GET", "/b", 1, False)).summary(duration_s=2)
    assert evaluate(one("fail_ratio{GET /a}", "<0.5"), summary).observed == 0.25
    assert evaluate(one("rps{/b}", ">0"), summary).observed == 0.5


def test_a_name_nobody_requested_cannot_be_judged() -> None:
    summary = book_of(("GET", "/a", 1, False)).summary(duration_s=1)
    evaluation = evaluate(one("http_p95_ms{GET /nope}", "<200"), summary)
    assert evaluation.outcome == "no data"
    assert "no request named 'GET /nope'" in evaluation.note and "GET /a" in evaluation.note


def test_a_bare_name_several_types_share_is_ambiguous() -> None:
    summary = book_of(("GET", "/x", 1, False), ("POST", "/x", 1, False)).summary(duration_s=1)
    evaluation = evaluate(one("fail_ratio{/x}", "<0.5"), summary)
    assert evaluation.outcome == "ambiguous" and "GET /x" in evaluation.note and "POST /x" in evaluation.note


def test_no_sync_samples_cannot_be_judged_unless_the_profile_has_no_sync_user() -> None:
    summary = book_of(("GET", "/a", 1, False)).summary(duration_s=1)
    assert evaluate(one("sync_p95_ms", "<250"), summary, has_sync_users=True).outcome == "no data"
    not_applicable = evaluate(one("sync_p95_ms", "<250"), summary, has_sync_users=False)
    assert not_applicable.outcome == "not applicable" and "no SyncUser" in not_applicable.note


def test_no_requests_at_all_cannot_be_judged_on_http_metrics() -> None:
    summary = SampleBook().summary(duration_s=5)
    assert evaluate(one("http_p95_ms", "<800"), summary).outcome == "no data"
    assert evaluate(one("fail_ratio", "<0.01"), summary).outcome == "no data"
    assert evaluate(one("requests", ">=1"), summary).outcome == "failed"


@pytest.mark.parametrize(
    ("metric", "value", "shown"),
    [("http_p95_ms", 12.345, "12.3 ms"), ("fail_ratio", 0.25, "0.2500 (25.0%)"), ("rps", 3.14159, "3.1/s"), ("requests", 7, "7")],
)
def test_values_read_as_people_write_them(metric: str, value: float, shown: str) -> None:
    assert format_value(metric, value) == shown
    assert format_value(metric, None) == "no data"
