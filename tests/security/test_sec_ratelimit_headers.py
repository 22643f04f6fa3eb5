"""Retry-After and the RateLimit header families, read from plain header mappings (no network)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from releasegate.probes import ratelimit_headers as rl

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


# --------------------------------------------------------------------------- Retry-After


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0.0),
        ("1", 1.0),
        (" 120 ", 120.0),
        ("Thu, 26 Nov 2026 12:00:30 GMT", 30.0),  # IMF-fixdate
        ("Thursday, 26-Nov-26 12:01:00 GMT", 60.0),  # obsolete RFC 850 form
        ("Thu Nov 26 12:00:05 2026", 5.0),  # obsolete asctime form (no zone: GMT)
        ("Thu, 26 Nov 2026 11:00:00 GMT", 0.0),  # a date in the past means "now"
    ],
)
def test_retry_after_reads_delay_seconds_and_every_http_date_form(value: str, seconds: float) -> None:
    assert rl.parse_retry_after(value, NOW) == seconds


@pytest.mark.parametrize("value", ["", "soon", "1.5", "-1", "1, 2", "0x10"])
def test_retry_after_refuses_what_rfc_9110_does_not_allow(value: str) -> None:
    assert rl.parse_retry_after(value, NOW) is None


def test_an_unreadable_retry_after_is_a_problem_not_an_absence() -> None:
    parsed = rl.parse({"retry-after": "soon"}, NOW)
    # Then the check can say "present but unreadable" rather than "missing"
    assert parsed.retry_after_raw == "soon" and parsed.retry_after_s is None
    assert parsed.advertised
    assert parsed.problems == ("Retry-After 'soon' is neither delay-seconds nor an HTTP-date",)


# --------------------------------------------------------------------------- IETF draft (-08 and later)


def test_ietf_fields_as_the_reference_deployment_sends_them() -> None:
    headers = {
        "ratelimit-policy": '"user";q=20;w=4, "ip";q=30;w=3',
        "ratelimit": '"user";r=0;t=4, "ip";r=9;t=3',
        "retry-after": "1",
    }
    parsed = rl.parse(headers, NOW)
    assert parsed.policies == (rl.QuotaPolicy("user", 20, 4), rl.QuotaPolicy("ip", 30, 3))
    assert parsed.states == (rl.QuotaState("RateLimit", "user", 0, 4.0), rl.QuotaState("RateLimit", "ip", 9, 3.0))
    assert parsed.retry_after_s == 1.0
    assert parsed.families == ("Retry-After", "RateLimit-Policy", "RateLimit")
    assert parsed.min_remaining() == 0
    assert parsed.full_reset_s() == 4.0
    assert parsed.problems == ()


def test_ietf_policy_parameters_unit_and_partition_key() -> None:
    [policy] = rl.parse_policy('"daily";q=1000;w=86400;qu="content-bytes";pk=:cHsdsRa894==:')
    assert policy == rl.QuotaPolicy("daily", 1000, 86400, unit="content-bytes", partitioned=True)


def test_ietf_list_syntax_details() -> None:
    # tokens as names, whitespace after ';' and ',', escaped quotes, unknown parameters ignored
    states = rl.parse_ratelimit('default;r=5;t=2,  "a \\"b\\""; r=1; t=0;x=?1')
    assert [(s.name, s.remaining, s.reset_s) for s in states] == [("default", 5, 2.0), ('a "b"', 1, 0.0)]


@pytest.mark.parametrize(
    "value",
    [
        '"p";r=1,',  # trailing comma
        '"p";r=1 "q"',  # missing comma
        '"p',  # unterminated string
        '("a" "b");r=1',  # inner list
        "1;r=1",  # a RateLimit member names a policy
        '"p";R=1',  # keys are lower case
    ],
)
def test_malformed_ratelimit_is_reported(value: str) -> None:
    parsed = rl.parse({"ratelimit": value}, NOW)
    assert parsed.states == ()
    assert len(parsed.problems) == 1 and parsed.problems[0].startswith("RateLimit ")


def test_negative_or_non_numeric_reset_is_not_a_time() -> None:
    [state] = rl.parse_ratelimit('"p";r=1;t=-5')
    assert state.reset_s is None
    [state] = rl.parse_ratelimit('"p";r=?1;t="3"')
    assert state.remaining is None and state.reset_s is None


# --------------------------------------------------------------------------- older drafts and vendors


def test_draft_07_dictionary_form() -> None:
    parsed = rl.parse({"ratelimit": "limit=100, remaining=50, reset=30", "ratelimit-policy": "100;w=60, 1000;w=3600"}, NOW)
    assert parsed.states == (rl.QuotaState("RateLimit (draft-07)", "", 50, 30.0, limit=100),)
    assert parsed.policies == (rl.QuotaPolicy("", 100, 60), rl.QuotaPolicy("", 1000, 3600))


def test_a_dictionary_that_is_not_a_rate_limit_is_a_problem() -> None:
    parsed = rl.parse({"ratelimit": "foo=1, bar=2"}, NOW)
    assert parsed.states == () and parsed.problems


def test_ratelimit_dash_trio_including_a_quota_policy_limit() -> None:
    headers = {"ratelimit-limit": "100, 100;w=60", "ratelimit-remaining": "7", "ratelimit-reset": "12"}
    parsed = rl.parse(headers, NOW)
    assert parsed.states == (rl.QuotaState("RateLimit-*", "", 7, 12.0, limit=100),)
    assert parsed.families == ("RateLimit-*",)


def test_x_ratelimit_reset_as_unix_time_is_turned_into_seconds() -> None:
    reset_at = int((NOW + timedelta(seconds=42)).timestamp())
    headers = {"x-ratelimit-limit": "60", "x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset_at)}
    [state] = rl.parse(headers, NOW).states
    assert state == rl.QuotaState("X-RateLimit-*", "", 0, 42.0, limit=60)


def test_x_ratelimit_fractional_reset_and_a_lone_field() -> None:
    [state] = rl.parse({"x-ratelimit-reset": "1.25"}, NOW).states
    assert state.reset_s == 1.25 and state.remaining is None and state.limit is None


def test_unreadable_legacy_numbers_are_problems() -> None:
    parsed = rl.parse({"x-ratelimit-remaining": "lots"}, NOW)
    assert parsed.states == (rl.QuotaState("X-RateLimit-*", "", None, None),)
    assert parsed.problems == ("X-RateLimit-Remaining 'lots' is not a number",)


def test_every_family_at_once_is_reported_in_order() -> None:
    headers = {
        "retry-after": "2",
        "ratelimit-policy": '"a";q=5;w=1',
        "ratelimit": '"a";r=0;t=1',
        "ratelimit-limit": "5",
        "ratelimit-remaining": "0",
        "ratelimit-reset": "1",
        "x-ratelimit-remaining": "3",
    }
    parsed = rl.parse(headers, NOW)
    assert parsed.families == ("Retry-After", "RateLimit-Policy", "RateLimit", "RateLimit-*", "X-RateLimit-*")
    assert parsed.min_remaining() == 0
    assert parsed.full_reset_s() == 2.0  # Retry-After is the longest promise here


def test_nothing_advertised() -> None:
    parsed = rl.parse({"content-type": "application/json"}, NOW)
    assert not parsed.advertised and parsed.full_reset_s() is None and parsed.min_remaining() is None
    assert parsed.to_json() == {
        "families": [],
        "retry_after": None,
        "retry_after_s": None,
        "policies": [],
        "states": [],
        "problems": [],
    }


def test_evidence_is_bounded_whatever_the_server_sends() -> None:
    many = ", ".join(f'"p{i}";r={i};t=1' for i in range(500))
    parsed = rl.parse({"ratelimit": many, "retry-after": "x" * 10_000}, NOW)
    assert len(parsed.states) == rl.MAX_MEMBERS
    assert parsed.retry_after_raw is not None and len(parsed.retry_after_raw) == rl.MAX_RAW_CHARS
    assert len(json.dumps(parsed.to_json())) < 5_000


@given(
    st.dictionaries(st.sampled_from(["retry-after", "ratelimit", "ratelimit-policy", "ratelimit-reset", "x-ratelimit-reset"]), st.text())
)
def test_parse_never_raises(headers: dict[str, str]) -> None:
    parsed = rl.parse(headers, NOW)
    json.dumps(parsed.to_json(), allow_nan=False)  # always strict-JSON evidence


def test_numbers_beyond_rfc_8941_ranges_are_refused_not_infinite() -> None:
    parsed = rl.parse({"ratelimit": '"p";r=1;t=' + "9" * 400, "x-ratelimit-reset": "9" * 400}, NOW)
    assert parsed.states == (rl.QuotaState("X-RateLimit-*", "", None, None),)
    assert len(parsed.problems) == 2
    json.dumps(parsed.to_json(), allow_nan=False)
