"""Judging a load run (pure): the summary, the sample book's bounds, and the order of the rules."""

from __future__ import annotations

import json
import math

import pytest

from releasegate.load.results import (
    OTHER_NAMES,
    CpuReading,
    LoadSummary,
    SampleBook,
    abort_reason,
    judge,
)
from releasegate.load.thresholds import Threshold, thresholds_of

DEFAULTS = {"http_p95_ms": "<800", "fail_ratio": "<0.01", "sync_p95_ms": "<250"}


def healthy_book(requests: int = 200, sync: int = 50) -> SampleBook:
    book = SampleBook()
    for i in range(requests):
        book.add(1000 + i / 20, "GET", "/api/v1/me", 5 + i % 10, False)
    for i in range(sync):
        book.add(1000 + i / 5, "WS", "sync edit->event", 3, False)
    return book


def verdict(summary: LoadSummary, thresholds: dict[str, object] | None = None, **kwargs: object) -> tuple[str, str]:
    parsed: list[Threshold] = thresholds_of(thresholds if thresholds is not None else DEFAULTS, "gates")
    options: dict[str, object] = {"profile": "smoke", "min_requests": 100, "max_generator_cpu_percent": 90.0, "has_sync_users": True}
    options.update(kwargs)
    finding = judge(summary, parsed, **options)  # type: ignore[arg-type]
    return finding.outcome, finding.summary


def test_a_healthy_run_passes_with_its_figures_in_the_summary() -> None:
    outcome, text = verdict(healthy_book().summary(duration_s=10, cpu=CpuReading({"local": [10, 12, 11]})))
    assert outcome == "passed"
    assert text.startswith("smoke: 3 thresholds met over 200 requests in 10.0 s (20.0/s, 0.0% failed")


def test_a_failed_threshold_fails_and_is_named() -> None:
    book = healthy_book()
    for _ in range(20):
        book.add(1001, "GET", "/api/v1/me", 5, True)
    outcome, text = verdict(book.summary(duration_s=10))
    assert outcome == "failed"
    assert "1 of 3 thresholds failed: fail_ratio 0.0741 (7.4%), expected <0.01" in text


def test_fewer_requests_than_min_requests_is_inconclusive_even_when_thresholds_fail() -> None:
    book = healthy_book(requests=40)
    book.add(1001, "GET", "/api/v1/me", 5000, True)
    outcome, text = verdict(book.summary(duration_s=10))
    assert outcome == "error"
    assert "41 HTTP requests, fewer than min_requests 100: inconclusive" in text


def test_a_saturated_generator_is_inconclusive_whatever_the_thresholds_say() -> None:
    summary = healthy_book().summary(duration_s=10, cpu=CpuReading({"local": [20, 95, 96, 97, 98, 99, 40]}))
    outcome, text = verdict(summary)
    assert outcome == "error"
    assert "the load generator was saturated" in text and "measured itself, not the service" in text


def test_one_busy_second_is_not_saturation() -> None:
    summary = healthy_book().summary(duration_s=10, cpu=CpuReading({"local": [100, 10, 10, 10, 10, 10, 10]}))
    assert summary.generator_cpu_percent_peak == 100
    assert summary.generator_cpu_percent_max == pytest.approx(28.0)
    assert verdict(summary)[0] == "passed"


def test_the_busiest_process_decides_in_distributed_mode() -> None:
    reading = CpuReading({"master": [5] * 10, "worker 0": [30] * 10, "worker 1": [95] * 10})
    assert reading.sustained_max == 95
    assert reading.mean == pytest.approx((50 + 300 + 950) / 30)
    assert CpuReading().sustained_max is None


def test_an_aborted_run_fails_on_its_threshold_whatever_its_size() -> None:
    book = healthy_book(requests=10, sync=0)
    book.add(1001, "GET", "/api/v1/me", 5, True)
    summary = book.summary(duration_s=1.2, aborted="fail_ratio 0.0909 (9.1%), expected <0.01")
    outcome, text = verdict(summary)
    assert outcome == "failed"
    assert text.startswith("smoke: aborted after 1.2 s (abort_on_fail): fail_ratio 0.0909")


def test_a_run_level_problem_is_an_error() -> None:
    summary = SampleBook().summary(duration_s=0, problem="only 1 of 2 load workers connected within 5 s")
    assert verdict(summary) == ("error", "smoke: only 1 of 2 load workers connected within 5 s")


def test_a_metric_without_data_cannot_pass() -> None:
    outcome, text = verdict(healthy_book(sync=0).summary(duration_s=10))
    assert outcome == "error"
    assert "sync_p95_ms: cannot be judged: no sync events were measured" in text


def test_a_sync_metric_is_not_applicable_to_a_profile_without_sync_users() -> None:
    outcome, text = verdict(healthy_book(sync=0).summary(duration_s=10), has_sync_users=False)
    assert outcome == "passed"
    assert "sync_p95_ms not applicable (no SyncUser)" in text


def test_failures_decide_before_unjudgeable_thresholds() -> None:
    book = healthy_book(sync=0)
    book.add(1001, "GET", "/api/v1/me", 5, True)
    book.add(1001, "GET", "/api/v1/me", 5, True)
    book.add(1001, "GET", "/api/v1/me", 5, True)
    assert verdict(book.summary(duration_s=10))[0] == "failed"


def test_per_name_thresholds_are_judged_and_named() -> None:
    book = healthy_book()
    for _ in range(20):
        book.add(1001, "POST", "/api/v1/conversations/[id]/messages", 450, False)
    outcome, text = verdict(book.summary(duration_s=10), {"http_p95_ms{POST /api/v1/conversations/[id]/messages}": "<300"})
    assert outcome == "failed"
    assert "http_p95_ms{POST /api/v1/conversations/[id]/messages} 450.0 ms, expected <300" in text


def test_evidence_is_bounded_and_says_what_was_judged() -> None:
    book = healthy_book()
    for i in range(30):
        book.add(1001, "GET", f"/name/{i}", 1, False)
    finding = judge(
        book.summary(duration_s=10),
        thresholds_of(DEFAULTS, "gates"),
        profile="smoke",
        min_requests=100,
        max_generator_cpu_percent=90,
        has_sync_users=True,
    )
    evidence = finding.evidence
    assert evidence["samples"] == 230
    assert len(evidence["summary"]["by_name"]) == 20 and evidence["summary"]["by_name_omitted"] == 12
    assert evidence["summary"]["by_name"][0]["name"] == "GET /api/v1/me"
    assert {t["threshold"] for t in evidence["thresholds"]} == set(DEFAULTS)
    assert finding.expected["min_requests"] == 100
    json.dumps(evidence)  # JSON-safe, inf included


def test_the_book_keeps_counting_past_its_sample_cap() -> None:
    book = SampleBook(cap=10)
    for i in range(25):
        book.add(1000, "GET", "/a", float(i), i % 5 == 0)
    summary = book.summary(duration_s=5)
    assert (summary.requests, summary.failures) == (25, 5)
    assert (summary.samples_kept, summary.samples_dropped) == (10, 15)
    assert summary.http is not None and summary.http.samples == 10


def test_the_book_folds_names_past_its_name_cap() -> None:
    book = SampleBook(max_names=3)
    for i in range(6):
        book.add(1000, "GET", f"/a/{i}", 1, False)
    labels = [n.label for n in book.summary(duration_s=1).by_name]
    assert len(labels) == 4 and f"GET {OTHER_NAMES}" in labels


def test_worker_overflow_counts_without_latencies() -> None:
    book = SampleBook()
    book.add(1000, "GET", "/a", 5, False)
    book.add_counts("GET", "/a", 10, 2)
    summary = book.summary(duration_s=1)
    assert (summary.requests, summary.failures, summary.samples_dropped) == (11, 2, 10)


def test_summary_round_trips_through_json_with_lost_samples() -> None:
    book = healthy_book()
    book.add(1002, "WS", "sync edit->event", 5000, True)
    book.add(1002, "ARRIVAL", "dropped iteration", 0, True)
    summary = book.summary(duration_s=10, peak_users=6, concurrent_conversations=6, cpu=CpuReading({"local": [1, 2]}), workers=2)
    text = json.dumps(summary.to_json(), allow_nan=False)
    again = LoadSummary.from_json(json.loads(text))
    assert again == summary
    assert again.sync is not None and again.sync.max_ms == math.inf and again.dropped_iterations == 1


def test_abort_waits_for_its_delay_and_only_for_abort_thresholds() -> None:
    book = healthy_book(requests=10, sync=0)
    book.add(1001, "GET", "/api/v1/me", 5, True)
    summary = book.summary(duration_s=2)
    parsed = thresholds_of(
        {"fail_ratio": {"condition": "<0.01", "abort_on_fail": True, "delay_abort_eval_s": 5}, "http_p95_ms": "<1"}, "gates"
    )
    assert abort_reason(parsed, summary, elapsed_s=2, has_sync_users=True) is None
    assert abort_reason(parsed, summary, elapsed_s=5, has_sync_users=True) == "fail_ratio 0.0909 (9.1%), expected <0.01"


def test_past_the_cap_the_kept_samples_stay_a_uniform_sample_of_the_whole_run() -> None:
    # 300k HTTP samples, the second half slow: with the old "keep the first cap" book the p95
    # described only the fast start (10 ms); a reservoir keeps ~half slow samples.
    book = SampleBook(cap=200_000)
    for i in range(300_000):
        book.add(1000 + i / 1000, "GET", "/api/v1/me", 10.0 if i < 150_000 else 900.0, False)
    for i in range(1_000):
        book.add(1000 + i, "WS", "sync edit->event", 3.0, False)
    summary = book.summary(duration_s=300)
    assert summary.requests == 300_000 and summary.sync_events == 1_000
    assert (summary.samples_kept, summary.samples_dropped) == (201_000, 100_000)
    assert summary.http is not None and summary.http.samples == 200_000
    assert summary.http.p95_ms == 900.0 and summary.http.p50_ms in (10.0, 900.0)
    slow = sum(1 for s in book.reservoirs["http"] if s[3] == 900.0)
    assert 0.45 < slow / 200_000 < 0.55  # the slow half is half of the sample, not none of it
    # a kind's reservoir is its own: sync samples are never pushed out by HTTP ones
    assert summary.sync is not None and summary.sync.samples == 1_000


def test_the_reservoir_is_reproducible() -> None:
    def kept() -> list[float]:
        book = SampleBook(cap=50)
        for i in range(1_000):
            book.add(1000 + i, "GET", "/a", float(i), False)
        return [s[3] for s in book.samples]

    assert kept() == kept()
    assert kept() == sorted(kept())  # book.samples is in time order


def test_abort_is_judged_on_a_bounded_window_of_the_latest_samples() -> None:
    book = SampleBook(window=100)
    for i in range(20_000):
        book.add(1000 + i / 100, "GET", "/api/v1/me", 5.0 if i < 19_900 else 2_000.0, i % 1000 == 0)
    window = book.window_summary(duration_s=200)
    assert window.samples_kept == 100  # bounded whatever the run's length
    assert window.requests == 20_000 and window.failures == 20  # counts stay exact
    assert window.http is not None and window.http.p95_ms == 2_000.0  # the latest samples
    parsed = thresholds_of({"http_p95_ms": {"condition": "<800", "abort_on_fail": True}}, "gates")
    assert abort_reason(parsed, window, elapsed_s=200, has_sync_users=False) == "http_p95_ms 2000.0 ms, expected <800"
    # the final verdict uses every kept sample
    full = book.summary(duration_s=200)
    assert full.samples_kept == 20_000 and full.http is not None and full.http.p95_ms == 5.0


def test_the_default_dropped_iterations_threshold_holds_for_a_closed_model_run() -> None:
    from releasegate.config import LoadPolicy

    defaults = LoadPolicy().thresholds
    assert defaults["dropped_iterations"] == "<=0"
    parsed = thresholds_of(defaults, "gates")
    finding = judge(healthy_book().summary(duration_s=10), parsed, profile="smoke", min_requests=100,
                    max_generator_cpu_percent=90.0, has_sync_users=True)  # fmt: skip
    assert finding.outcome == "passed", finding.summary
    assert finding.observed["dropped_iterations"] == "0"  # a count of 0, not "no data"


def test_unfired_arrivals_fail_dropped_iterations_and_cut_iterations_are_counted_apart() -> None:
    book = healthy_book()
    book.add(1009, "ARRIVAL", "dropped iteration", 0, True)
    book.add(1010, "ARRIVAL", "iteration cut at stop", 0, True)
    book.add(1010, "ARRIVAL", "iteration cut at stop", 0, True)
    summary = book.summary(duration_s=10)
    assert (summary.dropped_iterations, summary.cut_iterations) == (1, 2)
    assert LoadSummary.from_json(json.loads(json.dumps(summary.to_json()))).cut_iterations == 2
    outcome, text = verdict(summary, {**DEFAULTS, "dropped_iterations": "<=0"})
    assert outcome == "failed" and "dropped_iterations 1, expected <=0" in text


def test_a_count_scoped_to_events_that_never_happened_reads_zero_not_no_data() -> None:
    # Given a closed-model run: no arrival was ever dropped, so no "dropped iteration" sample exists
    summary = healthy_book().summary(duration_s=10, cpu=CpuReading({"local": [10]}))

    # Then a threshold on those drops holds (zero drops is a measurement), and one that wants them fails
    assert verdict(summary, {**DEFAULTS, "dropped_iterations{dropped iteration}": "<=0"})[0] == "passed"
    assert verdict(summary, {**DEFAULTS, "requests{POST /never}": ">=1"})[0] == "failed"
    # While a latency scoped to a request never made still cannot be judged
    assert verdict(summary, {**DEFAULTS, "http_p95_ms{POST /never}": "<100"})[0] == "error"
