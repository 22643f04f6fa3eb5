"""business.data_consistency's pure parts: polling one read on an injected clock, judging histories.

No network and no real sleeping: ``attempt`` is a fake read whose answer depends on the time
since the write, ``sleep`` advances the clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from releasegate._exceptions import ProbeError, ProbeTimeout
from releasegate.probes import consistency
from releasegate.probes.consistency import Answer, Poll, ReadHistory

WRITE = {"driver": "post_marker", "marker": "rg-consistency-1"}


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def read_showing_after(clock: FakeTime, visible_at_s: float, *, latency_s: float = 0.01) -> Callable[[], Awaitable[Answer]]:
    """A read that shows the write once ``visible_at_s`` have passed since the write (at 100.0)."""

    async def attempt() -> Answer:
        # The server reads its state when the request arrives; the answer takes latency_s to come back.
        shows = clock.now - 100.0 >= visible_at_s
        clock.now += latency_s
        if shows:
            return Answer(200, (), '{"messages": [{"text": "rg-consistency-1"}]}')
        return Answer(200, ("the body does not contain 'rg-consistency-1'",), '{"messages": []}')

    return attempt


def watch(clock: FakeTime, attempt: Callable[[], Awaitable[Answer]], *, window_s: float = 2.0, interval_s: float = 0.1) -> ReadHistory:
    return asyncio.run(
        consistency.watch(
            "/api/v1/conversations/c1/messages",
            "second",
            attempt,
            window_s=window_s,
            interval_s=interval_s,
            started=100.0,
            clock=clock.clock,
            sleep=clock.sleep,
        )
    )


# --- one read -----------------------------------------------------------------------------------


def test_a_write_visible_at_once_is_seen_on_the_first_poll() -> None:
    time = FakeTime()
    history = watch(time, read_showing_after(time, 0.0))
    assert history.visibility == "visible"
    assert len(history.polls) == 1
    assert history.evidence()["visible_after_ms"] == 10.0


def test_a_write_that_converges_within_the_window_is_visible_with_its_time() -> None:
    time = FakeTime()
    history = watch(time, read_showing_after(time, 0.5))
    assert history.visibility == "visible"
    seen = history.first_visible()
    assert seen is not None and 500 <= seen.answered_ms < 700


def test_a_read_lagging_five_seconds_is_stale_after_a_bounded_number_of_polls() -> None:
    # Given reads that lag writes by 5 s (fault stale-read) and a 2 s window polled every 100 ms
    time = FakeTime()
    history = watch(time, read_showing_after(time, 5.0))
    # Then polling stops at the window's end, with a last poll there, and the read is stale
    assert history.visibility == "stale"
    assert len(history.polls) <= consistency.max_polls(2.0, 0.1) == 22
    assert history.polls[-1].sent_ms >= 2000
    assert time.now - 100.0 < 2.5
    record = history.evidence()
    assert record["result"] == "stale" and record["last_status"] == 200
    assert record["last_problems"] == ["the body does not contain 'rg-consistency-1'"]
    assert "visible_after_ms" not in record


def test_a_slow_answer_to_a_poll_sent_inside_the_window_still_counts() -> None:
    # Given a read that takes 1.5 s to answer and shows the write from 1 s on
    time = FakeTime()
    history = watch(time, read_showing_after(time, 1.0, latency_s=1.5))
    # Then the poll sent at 1.6 s (inside the window) proves visibility though answered at 3.1 s
    assert history.visibility == "visible"
    assert [p.visible for p in history.polls] == [False, True]


def test_a_read_that_never_answers_is_unmeasured() -> None:
    time = FakeTime()

    async def refused() -> Answer:
        time.now += 0.001
        raise ProbeError("cannot connect: Connection refused", url="https://replica:8443/x")

    history = watch(time, refused)
    assert history.visibility == "unmeasured"
    assert history.evidence()["last_error"] == "cannot connect: Connection refused"
    assert history.evidence()["errored_polls"] == len(history.polls)


@pytest.mark.parametrize("status", [500, 503, 401, 403, 429])
def test_5xx_401_403_and_a_standing_429_are_no_usable_answer(status: int) -> None:
    # An identity refused, a throttled gate or a failing service say nothing about the write:
    # the read could not be measured, it is not stale.
    time = FakeTime()

    async def unreadable() -> Answer:
        return Answer(status, (f"status: expected 200, got {status}",), "no")

    history = watch(time, unreadable, window_s=0.3)
    assert history.visibility == "unmeasured"
    assert history.evidence()["last_error"].startswith(f"HTTP {status}")


def test_a_404_is_an_answer_without_the_write() -> None:
    time = FakeTime()

    async def not_found() -> Answer:
        return Answer(404, ("status: expected 200, got 404",), "no such message")

    assert watch(time, not_found, window_s=0.3).visibility == "stale"


def test_a_zero_window_polls_exactly_once() -> None:
    time = FakeTime()
    history = watch(time, read_showing_after(time, 5.0), window_s=0.0)
    assert len(history.polls) == 1 and history.visibility == "stale"


# --- judging ------------------------------------------------------------------------------------


def history(identity: str, *polls: Poll) -> ReadHistory:
    return ReadHistory("/api/v1/conversations/c1/messages", identity, polls, window_ms=2000)


SEEN = Poll(0, 12.5, 200, ())
NOT_YET = Poll(0, 10, 200, ("the body does not contain 'rg-consistency-1'",), excerpt='{"messages": []}')
LATE = Poll(2000, 2010, 200, ("the body does not contain 'rg-consistency-1'",), excerpt='{"messages": []}')
REFUSED = Poll(0, 1, error="cannot connect: Connection refused")


def test_visible_everywhere_passes_naming_the_slowest_read() -> None:
    slow = Poll(300, 340.0, 200, ())
    finding = consistency.judge([history("primary", SEEN), history("second", NOT_YET, slow)], window_s=2, write=WRITE)
    assert finding.outcome == "passed"
    assert finding.summary == (
        "the write was visible on all 2 reads within 2 s (slowest: /api/v1/conversations/c1/messages as second after 340 ms)"
    )
    assert finding.evidence["samples"] == 2
    assert finding.evidence["write"] == WRITE


def test_a_stale_read_fails_with_its_last_answer() -> None:
    finding = consistency.judge([history("primary", SEEN), history("second", NOT_YET, LATE)], window_s=2, write=WRITE)
    assert finding.outcome == "failed"
    assert finding.summary == (
        "stale or lost write: /api/v1/conversations/c1/messages as second still did not show the write after 2 s (2 reads); "
        "last answer HTTP 200: the body does not contain 'rg-consistency-1'"
    )
    reads = finding.evidence["reads"]
    assert reads[0]["visible_after_ms"] == 12.5
    assert reads[1]["last_answer_excerpt"] == '{"messages": []}' and reads[1]["attempts"] == 2


def test_unreadable_reads_alone_are_an_error() -> None:
    finding = consistency.judge([history("primary", REFUSED), history("second", REFUSED)], window_s=2, write=WRITE)
    assert finding.outcome == "error"
    assert finding.summary.startswith("could not read the write back: /api/v1/conversations/c1/messages as primary: cannot connect")
    assert finding.evidence["samples"] == 0


def test_one_unreadable_read_among_visible_ones_is_still_an_error() -> None:
    finding = consistency.judge([history("primary", SEEN), history("second", REFUSED)], window_s=2, write=WRITE)
    assert finding.outcome == "error"


def test_a_stale_read_fails_even_when_another_read_could_not_be_measured() -> None:
    finding = consistency.judge([history("primary", LATE), history("second", REFUSED)], window_s=2, write=WRITE)
    assert finding.outcome == "failed"
    assert finding.summary.endswith("(1 more reads could not be measured)")


def test_a_failed_write_is_an_error_not_a_stale_read() -> None:
    error = "driver post_marker: step 1 'post' failed: status: expected 201, got 503"
    finding = consistency.write_failed("post_marker", error, window_s=2, marker="m")
    assert finding.outcome == "error"
    assert finding.summary == f"could not write: {error}"
    assert finding.evidence["write"] == {"driver": "post_marker", "marker": "m", "error": error}
    assert finding.evidence["samples"] == 0


def test_markers_are_unique() -> None:
    assert consistency.new_marker() != consistency.new_marker()


def test_a_probe_timeout_is_a_poll_without_an_answer() -> None:
    time = FakeTime()

    async def slow() -> Answer:
        time.now += 5
        raise ProbeTimeout("GET answered not within 5 s")

    history_ = watch(time, slow)
    assert len(history_.polls) == 1 and history_.visibility == "unmeasured"
