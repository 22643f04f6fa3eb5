"""retry.until_passed with a fake clock: no test here sleeps for real."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from releasegate.config import RetryPolicy
from releasegate.probes.retry import until_passed
from releasegate.results import Finding

Outcome = Literal["passed", "failed", "warned", "error"]


class FakeTime:
    """A clock that moves only when slept on (or when an attempt says it took time)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def scripted(time: FakeTime, outcomes: Callable[[float], Outcome], took_s: float = 0.0) -> tuple[Callable[[], Finding], list[float]]:
    """An attempt whose outcome depends on the seconds since the first attempt; records when it ran."""
    started = time.now
    calls: list[float] = []

    def attempt() -> Finding:
        calls.append(time.now - started)
        outcome = outcomes(time.now - started)
        time.now += took_s
        return Finding(
            outcome,
            f"readiness {outcome}",
            observed="HTTP 503" if outcome != "passed" else "HTTP 200",
            evidence={"url": "http://x.test/readyz"},
        )

    return attempt, calls


def test_passes_on_the_third_attempt() -> None:
    # Given readiness that turns green on the third try, when retried, then the result passes with the attempt history.
    time = FakeTime()
    answers: list[Outcome] = ["failed", "error", "passed"]
    attempt, calls = scripted(time, lambda _: answers.pop(0))
    finding = until_passed(
        attempt, RetryPolicy(timeout_s=30, interval_s=1, backoff=2, max_interval_s=10), clock=time.clock, sleep=time.sleep
    )
    assert finding.outcome == "passed"
    assert finding.summary == "readiness passed"
    assert finding.evidence == {"url": "http://x.test/readyz", "attempts": 3, "attempt_outcomes": ["failed", "error", "passed"]}
    assert time.sleeps == [1, 2]
    assert len(calls) == 3


def test_never_passing_returns_the_last_finding_marked_still() -> None:
    time = FakeTime()
    attempt, calls = scripted(time, lambda elapsed: "error" if elapsed >= 20 else "failed")
    finding = until_passed(
        attempt, RetryPolicy(timeout_s=30, interval_s=1, backoff=2, max_interval_s=10), clock=time.clock, sleep=time.sleep
    )
    attempts = len(calls)
    assert finding.outcome == "error"
    assert finding.summary == f"readiness error (still after {attempts} attempts)"
    assert finding.observed == "HTTP 503"
    assert finding.evidence["attempts"] == attempts
    assert finding.evidence["attempt_outcomes"][-1] == "error"
    assert finding.evidence["attempt_outcomes"][0] == "failed"
    assert time.now - 1000.0 <= 30


def test_timeout_zero_means_exactly_one_attempt() -> None:
    time = FakeTime()
    attempt, calls = scripted(time, lambda _: "failed")
    finding = until_passed(attempt, RetryPolicy(timeout_s=0, interval_s=1), clock=time.clock, sleep=time.sleep)
    assert len(calls) == 1
    assert time.sleeps == []
    # A single attempt is returned as it is: no attempt bookkeeping, no "still".
    assert finding.summary == "readiness failed"
    assert "attempts" not in finding.evidence


def test_first_attempt_passing_is_returned_unchanged() -> None:
    time = FakeTime()
    attempt, _ = scripted(time, lambda _: "passed")
    finding = until_passed(attempt, RetryPolicy(timeout_s=30), clock=time.clock, sleep=time.sleep)
    assert finding == Finding("passed", "readiness passed", observed="HTTP 200", evidence={"url": "http://x.test/readyz"})
    assert time.sleeps == []


def test_backoff_grows_and_is_capped_at_max_interval() -> None:
    time = FakeTime()
    attempt, _ = scripted(time, lambda _: "failed")
    until_passed(attempt, RetryPolicy(timeout_s=60, interval_s=1, backoff=3, max_interval_s=5), clock=time.clock, sleep=time.sleep)
    assert time.sleeps[:5] == [1, 3, 5, 5, 5]
    assert max(time.sleeps) == 5
    assert sum(time.sleeps) == 60


def test_backoff_one_keeps_a_fixed_interval() -> None:
    time = FakeTime()
    attempt, calls = scripted(time, lambda _: "failed")
    until_passed(attempt, RetryPolicy(timeout_s=4, interval_s=2, backoff=1, max_interval_s=2), clock=time.clock, sleep=time.sleep)
    assert time.sleeps == [2, 2]
    assert calls == [0, 2, 4]


def test_the_whole_window_is_used_when_the_next_interval_overshoots() -> None:
    # Given readiness that turns green 28 s in and a 30 s window with sleeps 1, 2, 4, 8, 10 (25 s in all),
    # when the next 10 s interval would overshoot the window, then a last attempt is still made at 30 s.
    time = FakeTime()
    attempt, calls = scripted(time, lambda elapsed: "passed" if elapsed >= 28 else "failed")
    finding = until_passed(
        attempt, RetryPolicy(timeout_s=30, interval_s=1, backoff=2, max_interval_s=10), clock=time.clock, sleep=time.sleep
    )
    assert finding.outcome == "passed"
    assert time.sleeps == [1, 2, 4, 8, 10, 5]
    assert calls[-1] == 30


def test_slow_attempts_count_against_the_window() -> None:
    # Each attempt takes 4 s of the 10 s window: attempts at 0, 5 and 10 s, then stop.
    time = FakeTime()
    attempt, calls = scripted(time, lambda _: "failed", took_s=4)
    finding = until_passed(
        attempt, RetryPolicy(timeout_s=10, interval_s=1, backoff=1, max_interval_s=1), clock=time.clock, sleep=time.sleep
    )
    assert calls == [0, 5, 10]
    assert finding.evidence["attempts"] == 3


def test_an_attempt_running_past_the_deadline_is_the_last() -> None:
    time = FakeTime()
    attempt, calls = scripted(time, lambda _: "failed", took_s=50)
    finding = until_passed(attempt, RetryPolicy(timeout_s=30, interval_s=1), clock=time.clock, sleep=time.sleep)
    assert calls == [0]
    assert time.sleeps == []
    assert finding.summary == "readiness failed"


def test_a_warning_is_not_retried_because_it_does_not_block() -> None:
    # Waiting out a 30 s window for a degraded-but-working answer would only slow every run.
    time = FakeTime()
    attempt, calls = scripted(time, lambda _: "warned")
    finding = until_passed(attempt, RetryPolicy(timeout_s=30), clock=time.clock, sleep=time.sleep)
    assert finding.outcome == "warned" and len(calls) == 1 and time.sleeps == []


def test_the_attempt_history_in_evidence_is_bounded() -> None:
    time = FakeTime()
    attempt, calls = scripted(time, lambda _: "failed")
    finding = until_passed(
        attempt, RetryPolicy(timeout_s=600, interval_s=0.5, backoff=1, max_interval_s=0.5), clock=time.clock, sleep=time.sleep
    )
    assert finding.evidence["attempts"] == len(calls) > 1000
    assert len(finding.evidence["attempt_outcomes"]) == 20
