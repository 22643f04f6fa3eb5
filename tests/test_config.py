"""gates.yaml and the target file: every problem names file:line, the key and what to write instead."""

from __future__ import annotations

import re
import textwrap
import types
import typing
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from releasegate._exceptions import ConfigError, Problem
from releasegate._yaml import LineIndex
from releasegate.config import Gates, LoadedGates, ProbeSettings, RetryPolicy, Target, load_gates, load_target, with_deadline

TODAY = date(2026, 6, 1)
SHIPPED_GATES = Path(__file__).resolve().parents[1] / "gates.yaml"
TOKEN_ENV = "RELEASEGATE_TEST_TOKEN"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(load: Callable[[], object]) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        load()
    return info.value.problems


def gates_problems(tmp_path: Path, text: str, *, strict_waivers: bool = False) -> list[Problem]:
    path = write(tmp_path, "gates.yaml", text)
    return problems(lambda: load_gates(path, today=TODAY, strict_waivers=strict_waivers))


def only(found: list[Problem]) -> Problem:
    assert len(found) == 1, found
    return found[0]


# --------------------------------------------------------------------------- gates.yaml: the shipped file


def test_shipped_gates_yaml_loads_cleanly_and_equals_the_defaults() -> None:
    # The shipped file documents the defaults; if it drifts from Gates(), one of them is lying.
    loaded = load_gates(SHIPPED_GATES, today=TODAY, strict_waivers=True)

    assert loaded.gates == Gates()
    assert loaded.path == SHIPPED_GATES


def _field_names(model: type[BaseModel]) -> Iterator[str]:
    for name, field in model.model_fields.items():
        yield field.alias or name  # the key as a file spells it (pass_ is written pass)
        for nested in _models_in(field.annotation):
            yield from _field_names(nested)


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    elif typing.get_origin(annotation) in (list, dict, typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            yield from _models_in(arg)


@pytest.mark.parametrize("key", sorted(set(_field_names(Gates))))
def test_shipped_gates_yaml_explains_every_key(key: str) -> None:
    # A key added to the model must be added (with its comment) to the shipped policy too.
    assert re.search(rf"(^|\s){re.escape(key)}:", SHIPPED_GATES.read_text(encoding="utf-8"), re.MULTILINE), (
        f"gates.yaml never mentions {key}"
    )


def test_no_file_means_the_defaults() -> None:
    loaded = load_gates(None)

    assert loaded.gates == Gates()
    assert loaded.path is None


@pytest.mark.parametrize("text", ["", "# nothing but a comment\n"])
def test_an_empty_file_means_the_defaults(tmp_path: Path, text: str) -> None:
    assert load_gates(write(tmp_path, "gates.yaml", text), today=TODAY).gates == Gates()


def test_a_valid_policy_is_parsed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "gates.yaml",
        """\
        on_error: rollback
        severity:
          "health.*": warning
        required: [health.readiness]
        waivers:
          - check: health.deep
            justification: cache rebuild, ticket OPS-123
            expires: 2026-06-01
        probe:
          retry: {timeout_s: 0}
        """,
    )

    loaded = load_gates(path, today=TODAY, strict_waivers=True)

    assert loaded.gates.on_error == "rollback"
    assert loaded.gates.severity_of("health.liveness") == "warning"
    assert loaded.gates.waivers[0].expires == date(2026, 6, 1)  # the last day it applies: not expired
    assert loaded.gates.probe.retry.timeout_s == 0
    assert loaded.line_of(("waivers", 0, "expires")) == 8


# --------------------------------------------------------------------------- gates.yaml: schema problems


def test_unknown_key_suggests_the_closest_one(tmp_path: Path) -> None:
    found = gates_problems(
        tmp_path,
        """\
        version: 1
        probe:
          timeout_s: 5
          max_body_byte: 100
        """,
    )

    assert only(found) == Problem(str(tmp_path / "gates.yaml"), 4, "probe.max_body_byte", "unknown key", "did you mean 'max_body_bytes'?")


def test_unknown_key_without_a_close_match_lists_the_allowed_keys(tmp_path: Path) -> None:
    problem = only(gates_problems(tmp_path, "thresholds:\n  health:\n    zzz: 1\n"))

    assert (problem.line, problem.key) == (3, "thresholds.health.zzz")
    assert problem.fix == "remove it; allowed here: max_latency_ms"


@pytest.mark.parametrize(
    ("text", "line", "key", "fix"),
    [
        ("deadline_s: soon\n", 1, "deadline_s", "write a valid number, unable to parse string as a number"),
        ("probe:\n  retry: 5\n", 2, "probe.retry", "write a mapping: `key: value` lines indented under this key"),
        ("required: health.readiness\n", 1, "required", "write a valid list"),
        ("on_error: promote\n", 1, "on_error", "use one of 'hold' or 'rollback'"),
        ("version: 2\n", 1, "version", "use one of 1"),
        ("severity:\n  health.deep: fatal\n", 2, "severity.health.deep", "use one of 'blocking', 'warning' or 'info'"),
    ],
)
def test_wrong_type_or_value(tmp_path: Path, text: str, line: int, key: str, fix: str) -> None:
    problem = only(gates_problems(tmp_path, text))

    assert (problem.line, problem.key, problem.fix) == (line, key, fix)


@pytest.mark.parametrize(
    ("text", "line", "key", "fix"),
    [
        ("probe:\n  timeout_s: 0\n", 2, "probe.timeout_s", "use a number greater than 0.0"),
        ("probe:\n  timeout_s: -1\n", 2, "probe.timeout_s", "use a number greater than 0.0"),
        ("deadline_s: 100000\n", 1, "deadline_s", "use a number at most 86400.0"),
        (
            "probe:\n  retry:\n    interval_s: 5\n    max_interval_s: 2\n",
            4,
            "probe.retry.max_interval_s",
            "change the value: max_interval_s must be at least interval_s",
        ),
        (
            "deadline_s: 3\nprobe:\n  timeout_s: 10\n",
            1,
            "deadline_s",
            "change the value: deadline_s must be at least probe.timeout_s, or no check could finish",
        ),
    ],
)
def test_impossible_threshold(tmp_path: Path, text: str, line: int, key: str, fix: str) -> None:
    # Rules across two keys point at the key to change, not at the enclosing mapping.
    problem = only(gates_problems(tmp_path, text))

    assert (problem.line, problem.key, problem.fix) == (line, key, fix)


def test_impossible_deadline_shows_the_value(tmp_path: Path) -> None:
    problem = only(gates_problems(tmp_path, "version: 1\nprobe:\n  timeout_s: 10\ndeadline_s: 3\n"))

    assert (problem.line, problem.key) == (4, "deadline_s")
    assert problem.message.endswith("(got 3)")


# --------------------------------------------------------------------------- gates.yaml: check ids and waivers


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        ("severity:\n  health.readyness: warning\n", 2, "severity.health.readyness"),
        ("required:\n  - health.liveness\n  - health.readyness\n", 3, "required[1]"),
        ("waivers:\n  - check: health.readyness\n    justification: known outage, OPS-1\n    expires: 2026-12-31\n", 2, "waivers[0].check"),
    ],
)
def test_unknown_check_id_suggests_the_registered_one(tmp_path: Path, text: str, line: int, key: str) -> None:
    problem = only(gates_problems(tmp_path, text))

    assert (problem.line, problem.key) == (line, key)
    assert problem.message == "'health.readyness' matches no registered check"
    assert problem.fix == "did you mean 'health.readiness'?"


def test_a_pattern_that_selects_nothing_is_a_problem_too(tmp_path: Path) -> None:
    # 'health.live' is not a prefix of 'health.liveness': ids are matched segment by segment.
    found = gates_problems(tmp_path, "severity:\n  health.live: info\n  'nothing.*': info\n  health.*: info\n  health: info\n")

    assert [(p.line, p.key) for p in found] == [(2, "severity.health.live"), (3, "severity.nothing.*")]


def test_waiver_without_justification(tmp_path: Path) -> None:
    problem = only(gates_problems(tmp_path, "waivers:\n  - check: health.deep\n    expires: 2026-12-31\n"))

    assert problem == Problem(
        str(tmp_path / "gates.yaml"), 2, "waivers[0].justification", "required key is missing", "add `justification:` here"
    )


def test_waiver_with_a_too_short_justification(tmp_path: Path) -> None:
    problem = only(gates_problems(tmp_path, "waivers:\n  - check: health.deep\n    justification: meh\n    expires: 2026-12-31\n"))

    assert (problem.line, problem.key, problem.fix) == (3, "waivers[0].justification", "write at least 10 characters")


@pytest.mark.parametrize(
    ("expires", "message"),
    [
        ("next week", "Input should be a valid date"),
        ("2026-13-01", "month must be in 1..12"),
        ("2026-01-01T12:00:00", "Datetimes provided to dates should have zero time"),
    ],
)
def test_waiver_with_a_bad_date(tmp_path: Path, expires: str, message: str) -> None:
    found = gates_problems(tmp_path, f"waivers:\n  - check: health.deep\n    justification: known outage, OPS-1\n    expires: {expires}\n")

    problem = only(found)
    assert (problem.line, problem.key) == (4, "waivers[0].expires")
    assert message in problem.message


def test_waiver_that_is_not_a_mapping(tmp_path: Path) -> None:
    problem = only(gates_problems(tmp_path, "waivers:\n  - health.deep\n"))

    assert (problem.line, problem.key) == (2, "waivers[0]")


EXPIRED_WAIVER = """\
waivers:
  - check: health.deep
    justification: cache rebuild, ticket OPS-123
    expires: {expires}
"""


@pytest.mark.parametrize("expires", ["2026-05-31", "'2026-05-31'", "2026-05-31T00:00:00"])
def test_expired_waiver_is_a_problem_only_for_validate(tmp_path: Path, expires: str) -> None:
    # A gate run keeps going (the decision notes the expired waiver); `validate` flags it.
    # Quoted and timestamp spellings parse to the same date, so they must be flagged too.
    text = EXPIRED_WAIVER.format(expires=expires)

    assert load_gates(write(tmp_path, "gates.yaml", text), today=TODAY).gates.waivers[0].expires == date(2026, 5, 31)
    problem = only(gates_problems(tmp_path, text, strict_waivers=True))
    assert (problem.line, problem.key) == (4, "waivers[0].expires")
    assert problem.message == "waiver for 'health.deep' expired on 2026-05-31 and no longer applies"
    assert "renew the waiver" in problem.fix


def test_a_waiver_expiring_today_still_applies(tmp_path: Path) -> None:
    path = write(tmp_path, "gates.yaml", EXPIRED_WAIVER.format(expires=TODAY.isoformat()))

    assert load_gates(path, today=TODAY, strict_waivers=True).gates.waivers[0].expires == TODAY


def test_every_problem_of_a_file_is_listed_at_once_in_line_order(tmp_path: Path) -> None:
    # Given a policy with a schema problem, unknown ids, an impossible value and an expired waiver
    found = gates_problems(
        tmp_path,
        """\
        on_eror: hold
        severity:
          health.readyness: warning
        required: [nothing.here]
        waivers:
          - check: health.deep
            justification: cache rebuild, ticket OPS-123
            expires: 2020-01-01
        probe:
          timeout_s: 0
        """,
        strict_waivers=True,
    )

    # Then one run of `validate` lists them all, schema and semantic together
    assert [(p.line, p.key) for p in found] == [
        (1, "on_eror"),
        (3, "severity.health.readyness"),
        (4, "required[0]"),
        (8, "waivers[0].expires"),
        (10, "probe.timeout_s"),
    ]
    assert found[0].fix == "did you mean 'on_error'?"


# --------------------------------------------------------------------------- gates.yaml: file-level problems


def test_duplicate_key(tmp_path: Path) -> None:
    problem = only(gates_problems(tmp_path, "on_error: hold\non_warning: ignore\non_error: rollback\n"))

    assert (problem.line, problem.key) == (3, "on_error")
    assert "duplicate key" in problem.message


def test_yaml_syntax_error(tmp_path: Path) -> None:
    problem = only(gates_problems(tmp_path, "on_error: hold\nseverity: {health.deep: info\nrequired: []\n"))

    assert problem.file == str(tmp_path / "gates.yaml")
    assert problem.line in (2, 3)
    assert problem.message.startswith("YAML syntax error")


@pytest.mark.parametrize("text", ["- on_error\n- hold\n", "just some words\n", "42\n"])
def test_a_file_that_is_not_a_mapping(tmp_path: Path, text: str) -> None:
    problem = only(gates_problems(tmp_path, text))

    assert (problem.line, problem.key) == (1, "")
    assert problem.message == "the file must be a YAML mapping of keys to values"


def test_missing_gates_file(tmp_path: Path) -> None:
    path = tmp_path / "gates.yaml"

    problem = only(problems(lambda: load_gates(path, today=TODAY)))

    assert (problem.file, problem.line, problem.message) == (str(path), None, "file not found")


# --------------------------------------------------------------------------- severity overrides


@pytest.mark.parametrize(
    ("severity", "check_id", "expected"),
    [
        ({}, "health.liveness", "blocking"),  # the registry default
        ({"health.*": "info", "health.liveness": "warning"}, "health.liveness", "warning"),  # exact beats glob
        ({"health.liveness": "warning", "health.*": "info"}, "health.liveness", "warning"),  # ... in any order
        ({"health.*": "info", "health.l*": "warning"}, "health.liveness", "warning"),  # longest glob wins
        ({"health.l*": "warning", "health.*": "info"}, "health.liveness", "warning"),
        ({"health.*": "info", "health.l*": "warning"}, "health.readiness", "info"),
        ({"health": "info"}, "health.deep", "info"),  # dotted prefix
        ({"health": "info", "health.d*": "warning"}, "health.deep", "warning"),
        ({"health.r*": "info"}, "health.deep", "blocking"),  # a pattern that does not match is ignored
    ],
)
def test_severity_of(severity: dict[str, Any], check_id: str, expected: str) -> None:
    assert Gates.model_validate({"severity": severity}).severity_of(check_id) == expected


# --------------------------------------------------------------------------- target file

TARGET = """\
name: staging
base_url: https://app.example.test/
ws_url: wss://app.example.test/ws
health: {liveness: /healthz, readiness: /readyz}
"""


def target_problems(path: Path) -> list[Problem]:
    return problems(lambda: load_target(path))


def test_a_valid_target(tmp_path: Path) -> None:
    loaded = load_target(write(tmp_path, "staging.yaml", TARGET))

    assert loaded.target.name == "staging"
    assert loaded.target.base_url == "https://app.example.test"  # trailing slash dropped: paths are joined to it
    assert loaded.ca_bundle is None
    assert loaded.token() is None


@pytest.mark.parametrize("base_url", ["ftp://app.example.test", "app.example.test", "https://", "wss://app.example.test"])
def test_base_url_must_be_http_or_https(tmp_path: Path, base_url: str) -> None:
    path = write(tmp_path, "t.yaml", f"name: x\nbase_url: {base_url}\n")

    problem = only(target_problems(path))

    assert (problem.file, problem.line, problem.key) == (str(path), 2, "base_url")
    assert "https://app.example.test" in problem.fix


@pytest.mark.parametrize("ws_url", ["https://app.example.test/ws", "/ws"])
def test_ws_url_must_be_ws_or_wss(tmp_path: Path, ws_url: str) -> None:
    problem = only(target_problems(write(tmp_path, "t.yaml", f"name: x\nbase_url: https://a.test\nws_url: {ws_url}\n")))

    assert (problem.line, problem.key) == (3, "ws_url")
    assert "wss://" in problem.fix


def test_missing_required_keys_and_relative_health_path(tmp_path: Path) -> None:
    found = target_problems(write(tmp_path, "t.yaml", "health:\n  liveness: healthz\n"))

    assert [(p.line, p.key, p.message) for p in found] == [
        (1, "name", "required key is missing"),
        (1, "base_url", "required key is missing"),
        (2, "health.liveness", "must be a path starting with '/', relative to base_url (got 'healthz')"),
    ]


def test_token_env_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    path = write(tmp_path, "t.yaml", TARGET + f"auth:\n  token_env: {TOKEN_ENV}\n")

    problem = only(target_problems(path))

    assert (problem.file, problem.line, problem.key) == (str(path), 6, "auth.token_env")
    assert problem.fix == f"export {TOKEN_ENV}=<token> before running the gate"


def test_a_token_too_short_to_redact_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Redaction ignores values under MIN_SECRET_LENGTH, so such a token would leak: refuse it.
    monkeypatch.setenv(TOKEN_ENV, "abc")
    path = write(tmp_path, "t.yaml", TARGET + f"auth:\n  token_env: {TOKEN_ENV}\n")

    problem = only(target_problems(path))

    assert (problem.line, problem.key) == (6, "auth.token_env")
    assert "could not be redacted" in problem.message and "abc" not in str(problem)


def test_token_env_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "s3cr3t-value")

    loaded = load_target(write(tmp_path, "t.yaml", TARGET + f"auth: {{token_env: {TOKEN_ENV}}}\n"))

    assert loaded.token() == "s3cr3t-value"


@pytest.mark.parametrize(
    "token",
    [
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",  # a JWT
        "Bearer abcdef123456",
        "ghp_16C7e42F292c6912E7710c838347Ae178B4a",  # a GitHub token is also a valid identifier
        "x9Kq2LmPz8RtVw4YbN7cDf3GhJ",  # random mixed case and digits
    ],
)
def test_token_env_that_looks_like_a_token_is_refused_and_never_echoed(tmp_path: Path, token: str) -> None:
    problem = only(target_problems(write(tmp_path, "t.yaml", TARGET + f"auth:\n  token_env: '{token}'\n")))

    assert (problem.line, problem.key) == (6, "auth.token_env")
    assert "not the token itself" in problem.message
    # The error goes to terminals and CI logs: no part of the token may be in it.
    assert token[:12] not in str(problem)


@pytest.mark.parametrize("name", ["RELEASEGATE_TOKEN", "my_token", "STAGING_API_TOKEN_V2"])
def test_ordinary_env_names_are_accepted(name: str) -> None:
    assert Target.model_validate({"name": "x", "base_url": "https://a.test", "auth": {"token_env": name}}).auth.token_env == name


def test_ca_bundle_missing(tmp_path: Path) -> None:
    path = write(tmp_path, "targets/t.yaml", TARGET + "tls: {ca_bundle: certs/ca.pem}\n")

    problem = only(target_problems(path))

    assert (problem.line, problem.key) == (5, "tls.ca_bundle")
    assert str(tmp_path / "targets" / "certs" / "ca.pem") in problem.message


def test_relative_ca_bundle_is_resolved_against_the_target_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a bundle next to the target file and a working directory elsewhere
    bundle = write(tmp_path, "targets/certs/ca.pem", "-----BEGIN CERTIFICATE-----\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    # When the target is loaded by a relative path
    loaded = load_target(Path("..") / "targets" / write(tmp_path, "targets/t.yaml", TARGET + "tls: {ca_bundle: certs/ca.pem}\n").name)

    # Then the bundle is found relative to the target file, not to the working directory
    assert loaded.ca_bundle == bundle.resolve()


def test_every_target_problem_is_listed_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Schema problems and missing file / unset variable problems come in one list, in line order.
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    path = write(
        tmp_path,
        "t.yaml",
        f"""\
        name: x
        base_url: ftp://a.test
        tls: {{ca_bundle: missing.pem}}
        auth: {{token_env: {TOKEN_ENV}}}
        helth: {{liveness: /healthz}}
        """,
    )

    found = target_problems(path)

    assert [(p.file, p.line, p.key) for p in found] == [
        (str(path), 2, "base_url"),
        (str(path), 3, "tls.ca_bundle"),
        (str(path), 4, "auth.token_env"),
        (str(path), 5, "helth"),
    ]
    assert found[-1].fix == "did you mean 'health'?"


def test_target_that_is_empty_or_not_a_mapping(tmp_path: Path) -> None:
    for text in ("", "- a\n"):
        problem = only(target_problems(write(tmp_path, "t.yaml", text)))
        assert problem.message == "the file must be a YAML mapping of keys to values"


def test_missing_target_file(tmp_path: Path) -> None:
    assert only(target_problems(tmp_path / "nope.yaml")).message == "file not found"


@pytest.mark.parametrize(
    ("token", "base_url", "message"),
    [
        pytest.param("tok-abcdef-123\n", "https://app.example.test", "whitespace", id="stray-newline"),
        pytest.param("tok-abcdef-123", "http://app.example.test", "in clear", id="cleartext-over-the-network"),
    ],
)
def test_a_token_that_would_break_or_leak_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, token: str, base_url: str, message: str
) -> None:
    monkeypatch.setenv(TOKEN_ENV, token)
    path = write(tmp_path, "t.yaml", f"name: t\nbase_url: {base_url}\nauth:\n  token_env: {TOKEN_ENV}\n")
    with pytest.raises(ConfigError) as caught:
        load_target(path)
    [problem] = caught.value.problems
    assert problem.key == "auth.token_env" and message in problem.message
    assert token.strip() not in str(problem)


def test_a_token_over_plain_http_to_loopback_is_fine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "tok-abcdef-123")
    path = write(tmp_path, "t.yaml", f"name: t\nbase_url: http://127.0.0.1:8080\nauth:\n  token_env: {TOKEN_ENV}\n")
    assert load_target(path).token() == "tok-abcdef-123"


def test_a_tls_profile_that_is_neither_a_name_nor_a_file_is_a_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "gates.yaml", "thresholds:\n  security:\n    tls_profile: intermediat\n")
    with pytest.raises(ConfigError) as caught:
        load_gates(path)
    [problem] = caught.value.problems
    assert (problem.line, problem.key) == (3, "thresholds.security.tls_profile")
    (tmp_path / "profile.json").write_text("{}")
    path.write_text("thresholds:\n  security:\n    tls_profile: profile.json\n")
    assert load_gates(path).gates.thresholds.security.tls_profile == "profile.json"


# --------------------------------------------------------------------------- post-deploy target keys


def test_post_deploy_sections_are_parsed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "flows").mkdir()
    monkeypatch.setenv("RG_T1", "token-one-0123456789")
    monkeypatch.setenv("RG_T2", "token-two-0123456789")
    path = write(
        tmp_path,
        "t.yaml",
        """\
        name: prod
        base_url: https://app.example.test
        auth: {token_env: RG_T1, second_token_env: RG_T2}
        scenarios: flows
        sync:
          setup: open_room
          actions: {edit: {type: edit, nonce: "${nonce}"}}
        consistency:
          write: write_note
          reads: [{url: "/notes/${note_id}"}, {url: "https://replica.example.test/notes/${note_id}", as: second}]
        slo: {paths: [/api/v1/me]}
        prometheus: {url: "http://prometheus:9090/", selector: 'job="api"'}
        integrations:
          - {name: database, component: "db:responseTime"}
          - {name: billing, url: https://billing.example.test/health, allow_degraded: true}
        """,
    )

    loaded = load_target(path)
    target = loaded.target

    assert loaded.scenario_dir == (tmp_path / "flows").resolve()
    assert target.sync is not None and target.sync.url == "${ws_url}?conversation=${conversation_id}"
    assert target.sync.identities == ["primary", "second"] and target.sync.latency_action == "edit"
    assert target.consistency is not None and target.consistency.reads[1].as_ == "second"
    assert target.consistency.reads[0].expect == {"status": 200, "body_contains": "${marker}"}
    assert target.slo is not None and (target.slo.requests, target.slo.window_s) == (60, 10.0)
    assert target.prometheus is not None and target.prometheus.url == "http://prometheus:9090"
    assert [i.name for i in target.integrations] == ["database", "billing"]
    assert (loaded.token_of("primary"), loaded.token_of("second"), loaded.token_of("anonymous")) == (
        "token-one-0123456789",
        "token-two-0123456789",
        None,
    )


def test_a_missing_scenarios_folder_names_the_line(tmp_path: Path) -> None:
    problem = only(target_problems(write(tmp_path, "t.yaml", "name: x\nbase_url: https://a.test\nscenarios: nowhere\n")))

    assert (problem.line, problem.key) == (3, "scenarios")
    assert "does not exist" in problem.message


def test_an_integration_is_a_component_or_a_url_not_both(tmp_path: Path) -> None:
    text = "name: x\nbase_url: https://a.test\nintegrations:\n  - {name: db, component: db, url: /db}\n"

    problem = only(target_problems(write(tmp_path, "t.yaml", text)))

    assert (problem.line, problem.key) == (4, "integrations[0].component")
    assert "exactly one" in problem.message


def test_the_timed_sync_action_must_be_one_of_the_actions(tmp_path: Path) -> None:
    text = "name: x\nbase_url: https://a.test\nsync:\n  setup: s\n  actions: {typing: {type: typing}}\n"

    problem = only(target_problems(write(tmp_path, "t.yaml", text)))

    assert problem.key == "sync.latency_action"
    assert "typing" in problem.message


def test_built_in_evidence_minimums_apply_until_the_policy_names_the_check(tmp_path: Path) -> None:
    defaults = Gates()
    assert defaults.min_samples_of("business.sync_latency") == 50
    assert defaults.min_samples_of("health.liveness") is None

    gates = load_gates(write(tmp_path, "gates.yaml", "min_samples: {business.sync_latency: 10, 'slo.*': 5}\n")).gates

    assert gates.min_samples_of("business.sync_latency") == 10
    assert gates.min_samples_of("slo.latency") == 5  # a pattern of the policy beats the built-in value


# --------------------------------------------------------------------------- policies that could judge nothing


def test_sync_latency_with_every_budget_null_is_refused_at_its_line(tmp_path: Path) -> None:
    text = "thresholds:\n  sync_latency:\n    round_trips: 60\n    p95_ms: null\n"

    problem = only(gates_problems(tmp_path, text))

    assert (problem.line, problem.key) == (4, "thresholds.sync_latency.p95_ms")
    assert "p95_ms or another budget (p50_ms, p99_ms, max_ms) must be set" in problem.message


def test_slo_latency_with_every_budget_null_is_left_to_the_baseline(tmp_path: Path) -> None:
    # Allowed: --baseline judges alone (slo.latency is an error at run time without a baseline figure)
    gates = load_gates(write(tmp_path, "gates.yaml", "thresholds: {slo: {p95_ms: null}}\n"), today=TODAY).gates

    assert (gates.thresholds.slo.p50_ms, gates.thresholds.slo.p95_ms, gates.thresholds.slo.p99_ms) == (None, None, None)


def test_fewer_round_trips_than_the_sync_latency_minimum_is_refused_where_it_was_set(tmp_path: Path) -> None:
    # Given round_trips lowered below the built-in minimum of 50
    lowered = only(gates_problems(tmp_path, "version: 1\nthresholds:\n  sync_latency: {round_trips: 30}\n"))
    assert (lowered.line, lowered.key) == (2, "thresholds")
    assert "sync_latency.round_trips to 30, below the min_samples of business.sync_latency (50)" in lowered.message

    # Given the minimum raised above the default round_trips (60)
    raised = only(gates_problems(tmp_path, "version: 1\nmin_samples: {'business.*': 100}\n"))
    assert (raised.line, raised.key) == (2, "min_samples")
    assert "min_samples of business.sync_latency (100) is above thresholds.sync_latency.round_trips (60)" in raised.message

    # Both lowered together is fine
    load_gates(write(tmp_path, "ok.yaml", "min_samples: {business.sync_latency: 30}\nthresholds: {sync_latency: {round_trips: 30}}\n"))


def test_a_prometheus_url_with_credentials_is_refused(tmp_path: Path) -> None:
    text = "name: x\nbase_url: https://a.test\nprometheus: {url: 'https://gate:hunter2-long-secret@prometheus.test'}\n"

    problem = only(target_problems(write(tmp_path, "t.yaml", text)))

    assert (problem.line, problem.key) == (3, "prometheus.url")
    assert "must not carry credentials" in problem.message


def test_credentials_in_a_prometheus_url_are_refused_and_never_echoed(tmp_path: Path) -> None:
    text = "name: x\nbase_url: https://a.test\nprometheus: {url: 'http://admin:hunter2-secret@prom.test:9090'}\n"

    problem = only(target_problems(write(tmp_path, "t.yaml", text)))

    assert problem.key == "prometheus.url"
    assert "hunter2" not in str(problem)


@pytest.mark.parametrize(
    "hosts",
    [
        "['ssh://deploy:hunter2-long-secret@api-2.internal']",
        "['deploy:hunter2-long-secret@api-2.internal']",  # no scheme: refused for that, still not shown
        "['local://', 'api-3', 'ssh://deploy:hunter2-long-secret@api-2.internal']",  # another spec's problem
    ],
)
def test_a_password_in_a_host_spec_is_refused_and_never_echoed(tmp_path: Path, hosts: str) -> None:
    problem = only(target_problems(write(tmp_path, "t.yaml", f"name: x\nbase_url: https://a.test\nhosts: {hosts}\n")))

    assert problem.key == "hosts"
    assert "hunter2" not in str(problem)
    assert "deploy:***@api-2.internal" in str(problem) or "must not carry a password" in str(problem)


def test_a_host_backend_whose_library_is_missing_is_refused_when_the_target_loads(tmp_path: Path) -> None:
    problem = only(target_problems(write(tmp_path, "t.yaml", "name: x\nbase_url: https://a.test\nhosts: ['paramiko://app1']\n")))

    assert problem.key == "hosts"
    assert "paramiko:// is not supported here" in problem.message and "ssh" in problem.message


# --------------------------------------------------------------------------- the canary sections


def test_a_canary_policy_with_a_prometheus_metric_is_parsed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "gates.yaml",
        """\
        canary:
          interval_s: 30
          max_intervals: 4
          score: {pass: 90, marginal: 60}
          metrics:
            - {name: api_errors, kind: rate, source: prometheus, errors_query: "sum(e{$selector})", total_query: "sum(t{$selector})"}
        """,
    )

    canary = load_gates(path, today=TODAY).gates.canary

    assert (canary.interval_s, canary.max_intervals, canary.score.pass_, canary.score.marginal) == (30, 4, 90, 60)
    assert [(m.name, m.kind, m.source, m.min_samples) for m in canary.metrics] == [("api_errors", "rate", "prometheus", 50)]


@pytest.mark.parametrize(
    ("text", "line", "key", "says"),
    [
        # A rate needs two counts; a latency query would be judged as the wrong kind of evidence.
        (
            "canary:\n  metrics:\n    - {name: e, kind: rate, source: prometheus, errors_query: x}\n",
            3,
            "canary.metrics[0].total_query",
            "two count queries",
        ),
        ("canary:\n  metrics:\n    - {name: l, kind: rate, probe: http_latency}\n", 3, "canary.metrics[0].kind", "must be latency"),
        ("canary:\n  metrics:\n    - {name: l, kind: latency}\n", 3, "canary.metrics[0].probe", "what feeds a probe metric"),
        ("canary:\n  metrics:\n    - {name: Bad-Name, kind: latency, probe: http_latency}\n", 3, "canary.metrics[0].name", "pattern"),
        ("canary:\n  score: {pass: 70, marginal: 80}\n", 2, "canary.score.marginal", "must not be above pass"),
        ("canary:\n  interim_alpha: 0.02\n", 2, "canary.interim_alpha", "the last look needs the rest"),
        (
            "canary:\n  metrics:\n    - {name: a, kind: latency, probe: http_latency}\n    - {name: a, kind: rate, probe: http_errors}\n",
            2,
            "canary.metrics",
            "a appears more than once",
        ),
        (
            "canary:\n  metrics:\n    - {name: a, kind: latency, probe: http_latency, allowed_increase: 0.9}\n",
            3,
            "canary.metrics[0].allowed_increase",
            "at least 1",
        ),
    ],
)
def test_an_impossible_canary_policy_names_the_key(tmp_path: Path, text: str, line: int, key: str, says: str) -> None:
    problem = only(gates_problems(tmp_path, text))

    assert (problem.line, problem.key) == (line, key), problem
    assert says in problem.message + problem.fix, problem


def test_a_canary_target_section(tmp_path: Path) -> None:
    text = TARGET + textwrap.dedent(
        """\
        canary:
          baseline_url: https://stable.example.test/
          paths: [/api/v1/me]
          prometheus: {url: "http://prom:9090/", baseline_selector: 'track="stable"', canary_selector: 'track="canary"'}
        """
    )
    canary = load_target(write(tmp_path, "t.yaml", text)).target.canary

    assert canary is not None
    assert (canary.baseline_url, canary.canary_url, canary.paths) == ("https://stable.example.test", None, ["/api/v1/me"])
    assert canary.prometheus is not None and canary.prometheus.url == "http://prom:9090"


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("canary: {baseline_url: ftp://x}\n", "canary.baseline_url"),
        ("canary: {canary_ws_url: https://x/ws}\n", "canary.canary_ws_url"),
        ("canary: {paths: [api]}\n", "canary.paths"),
        (
            "canary:\n  prometheus: {url: 'http://p:9090', baseline_selector: 'job=\"a\"', canary_selector: 'job=\"a\"'}\n",
            "canary.prometheus.canary_selector",
        ),
        ("canary:\n  prometheus: {url: 'http://u:pw@p:9090', baseline_selector: a, canary_selector: b}\n", "canary.prometheus.url"),
    ],
)
def test_a_wrong_canary_target_section_names_the_key(tmp_path: Path, section: str, key: str) -> None:
    problem = only(target_problems(write(tmp_path, "t.yaml", TARGET + section)))

    assert problem.key == key, problem


def test_a_base_url_with_a_backslash_in_its_host_part_is_refused(tmp_path: Path) -> None:
    # http://evil.test\\@app.test is app.test to httpx but evil.test to urllib3 (Locust): never accept it.
    path = tmp_path / "target.yaml"
    path.write_text('name: t\nbase_url: "http://evil.example.test\\\\@app.example.test"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="backslash"):
        load_target(path)


def test_a_path_the_os_cannot_take_is_a_configuration_error(tmp_path: Path) -> None:
    # A NUL (or a lone surrogate, from a YAML escape) made resolve() raise ValueError: exit 4 instead of 3.
    path = tmp_path / "target.yaml"
    path.write_text('name: t\nbase_url: http://127.0.0.1:9\nscenarios: "a\\0b"\ntls: {ca_bundle: "\\ud800"}\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_target(path)
    said = {problem.key: problem.message for problem in info.value.problems}
    assert "NUL" in said["scenarios"] and "Unicode" in said["tls.ca_bundle"]


def test_an_unparsable_base_url_with_a_token_is_a_configuration_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The token check read base_url with urlsplit, which raises on "http://[": it crashed the loader.
    monkeypatch.setenv("RG_CONFIG_TOKEN", "tok-0123456789abcdef")
    path = tmp_path / "target.yaml"
    path.write_text("name: t\nbase_url: 'http://['\nauth: {token_env: RG_CONFIG_TOKEN}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="base_url"):
        load_target(path)


def test_with_deadline_replaces_the_run_deadline_within_the_policy_bounds() -> None:
    loaded = LoadedGates(
        gates=Gates(deadline_s=900, probe=ProbeSettings(timeout_s=2, retry=RetryPolicy(timeout_s=3))), path=None, lines=LineIndex({})
    )
    assert with_deadline(loaded, 60).gates.deadline_s == 60
    assert loaded.gates.deadline_s == 900  # the loaded policy itself is unchanged
    with pytest.raises(ConfigError, match="shorter than probe.timeout_s"):
        with_deadline(loaded, 4)
    for bad in (0.0, -1.0, float("nan"), float("inf"), 86_401.0):
        with pytest.raises(ConfigError, match="--deadline"):
            with_deadline(loaded, bad)
