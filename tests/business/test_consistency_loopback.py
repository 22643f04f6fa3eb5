"""business.data_consistency's probe against a small loopback service that misbehaves on purpose.

The service (GET only) writes on ``/write`` and answers ``/read`` however the test says:
throttled for good, or never showing the write. The write driver saves a session token, so the
evidence can be searched for it. No reference service start: each test takes about a second.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loopback import LoopbackServer, Route, refused_port, serve
from releasegate.config import LoadedTarget, load_target
from releasegate.probes import consistency
from releasegate.probes.http import HttpSettings
from releasegate.results import Finding
from releasegate.scenarios import load_scenarios

SESSION = "sess-0123456789abcdef"
HTTP = HttpSettings(timeout_s=2, max_body_bytes=1 << 16)
DRIVER = """\
inputs: {marker: null}
outputs: [id, session_token]
steps:
  - name: write
    http: {url: "/write?m=${marker}", as: anonymous}
    save: {id: "$.id", session_token: "$.session_token"}
"""


@pytest.fixture
def service() -> Iterator[tuple[LoopbackServer, dict[str, Route]]]:
    answers = {"read": Route(200, "nothing here")}
    routes: dict[str, Any] = {"/write": Route(200, {"id": "w1", "session_token": SESSION}), "/read": lambda request: answers["read"]}
    with serve(routes) as server:
        yield server, answers


def target_with(tmp_path: Path, base_url: str, reads: str, monkeypatch: pytest.MonkeyPatch) -> LoadedTarget:
    monkeypatch.setenv("RG_TEST_TOKEN", "tok-0123456789abcdef")
    (tmp_path / "scenarios" / "drivers").mkdir(parents=True)
    (tmp_path / "scenarios" / "drivers" / "post.yaml").write_text(DRIVER, encoding="utf-8")
    text = (
        f"name: t\nbase_url: {base_url}\nauth: {{token_env: RG_TEST_TOKEN}}\nscenarios: scenarios\nconsistency:\n  write: post\n  reads:\n"
    )
    path = tmp_path / "target.yaml"
    path.write_text(text + textwrap.indent(textwrap.dedent(reads), "    "), encoding="utf-8")
    return load_target(path)


def measure(target: LoadedTarget, *, window_s: float, end: float | None = None) -> Finding:
    suite = load_scenarios(target)
    assert suite is not None and target.target.consistency is not None
    probe = consistency.measure(
        target, suite, target.target.consistency, HTTP, window_s=window_s, interval_s=0.1, end=end if end is not None else float("inf")
    )
    return consistency.blocking(probe, timeout_s=15, what="the consistency probe")


def test_a_read_throttled_for_good_is_not_measured_and_waited_out_only_briefly(
    tmp_path: Path, service: tuple[LoopbackServer, dict[str, Route]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a read endpoint that answers 429 (Retry-After: 1 s) to every request
    server, answers = service
    answers["read"] = Route(429, "slow down", headers={"Retry-After": "1"})
    target = target_with(tmp_path, server.base_url, '- {url: "/read?s=${session_token}", as: anonymous}\n', monkeypatch)

    finding = measure(target, window_s=0.5)

    # Then the check could not judge (a throttled gate says nothing about the write)
    assert finding.outcome == "error"
    assert "HTTP 429 (throttled longer than the gate waits)" in finding.summary
    [read] = finding.evidence["reads"]
    assert read["result"] == "unmeasured"
    # ... and each poll waited out one 429 at most: a poll is two requests, not four
    sent = sum(1 for path, _ in server.requests if path == "/read")
    assert sent == 2 * read["attempts"]


def test_a_saved_credential_never_reaches_the_evidence(
    tmp_path: Path, service: tuple[LoopbackServer, dict[str, Route]], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, _ = service
    target = target_with(tmp_path, server.base_url, '- {url: "/read?s=${session_token}", as: anonymous}\n', monkeypatch)

    finding = measure(target, window_s=0.2)

    assert finding.outcome == "failed"  # the read never shows the marker
    shown = repr(finding)
    assert SESSION not in shown
    assert finding.evidence["write"]["outputs"] == {"id": "w1", "session_token": "[redacted:session_token]"}
    assert finding.evidence["reads"][0]["url"] == "/read?s=[redacted:session_token]"


def test_the_runs_deadline_cuts_polling_and_what_was_seen_is_still_reported(
    tmp_path: Path, service: tuple[LoopbackServer, dict[str, Route]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a read that never shows the write, a 5 s window, and a run that ends in under a second
    server, _ = service
    target = target_with(tmp_path, server.base_url, '- {url: "/read", as: anonymous}\n', monkeypatch)

    finding = measure(target, window_s=5, end=time.monotonic() + 0.8)

    # Then not "stale" (the window never closed) but unmeasured, with the polls made until then
    assert finding.outcome == "error"
    assert "the run's deadline stopped polling after" in finding.summary and "before the 5000 ms window closed" in finding.summary
    [read] = finding.evidence["reads"]
    assert read["result"] == "unmeasured" and read["attempts"] >= 1 and "cut_at_ms" in read
    assert read["last_problems"] == [f"body: does not contain '{finding.evidence['write']['marker']}'"]


@pytest.mark.parametrize(
    ("read", "problem"),
    [
        ("- {url: 'https://127.0.0.1:{other}/r'}", "consistency.reads[0]: the read would send the token to 127.0.0.1, which is neither"),
        ("- {url: /read, as: second}", "consistency.reads[0]: the read acts as second but auth.second_token_env is not set"),
    ],
    ids=["other-origin", "identity-without-token"],
)
def test_a_read_whose_token_would_go_astray_or_is_missing_is_an_error(
    tmp_path: Path, service: tuple[LoopbackServer, dict[str, Route]], monkeypatch: pytest.MonkeyPatch, read: str, problem: str
) -> None:
    server, _ = service
    target = target_with(tmp_path, server.base_url, read.replace("{other}", str(refused_port())), monkeypatch)

    finding = measure(target, window_s=0.2)

    assert finding.outcome == "error" and finding.summary.startswith(problem)
    assert not any(path == "/read" for path, _ in server.requests)
