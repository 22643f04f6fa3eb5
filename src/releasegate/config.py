"""The target file and gates.yaml, parsed into frozen models at the boundary.

Everything after :func:`load_target` / :func:`load_gates` works on these models and never
looks at YAML again. Every problem becomes a :class:`~releasegate.ConfigError` naming
file:line, the key and what to write instead; parsing collects all problems before raising.
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from releasegate import registry
from releasegate._exceptions import ConfigError, Problem
from releasegate._yaml import LineIndex, YamlPath, dotted, load_yaml
from releasegate.redact import MIN_SECRET_LENGTH
from releasegate.results import Severity

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


# --------------------------------------------------------------------------- target file


class TlsSettings(_Strict):
    # Extra trust anchors for private CAs, relative to the target file.
    ca_bundle: Path | None = None


class LoginSettings(_Strict):
    """A login flow the security checks may run (security.cookies): POST {username, password}."""

    path: str
    username_env: str
    password_env: str

    @field_validator("username_env", "password_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not _is_env_name(value):
            raise ValueError("must be an environment variable name, not the value itself")
        return value


class AuthSettings(_Strict):
    # Names of environment variables holding secrets; a secret itself never appears in a file
    # releasegate reads or writes, and every one of them is redacted from every output.
    token_env: str | None = None
    # A second identity, so security.rate_limit.user can tell a per-user from a per-IP limit.
    second_token_env: str | None = None
    # A genuinely expired token for security.auth.token_lifetime. Without it a copy of the valid
    # token with exp in the past is sent, which only proves that tampered tokens are refused, so
    # the check can then at best warn ("expiry not proven").
    expired_token_env: str | None = None
    login: LoginSettings | None = None
    # Endpoints that must refuse missing and invalid tokens (security.auth.required).
    protected: list[str] = Field(default_factory=lambda: ["/api/"])

    @field_validator("token_env", "second_token_env", "expired_token_env")
    @classmethod
    def _looks_like_env_name(cls, value: str | None) -> str | None:
        if value is not None and not _is_env_name(value):
            raise ValueError("must be an environment variable name such as RELEASEGATE_TOKEN, not the token itself")
        return value

    def secret_envs(self) -> list[str]:
        names = [self.token_env, self.second_token_env, self.expired_token_env]
        if self.login is not None:
            names.append(self.login.password_env)
        return [name for name in names if name]


# Token formats that are also valid identifiers (GitHub's), so the character test alone lets them through.
_TOKEN_PREFIXES = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_")


def _is_env_name(value: str) -> bool:
    if not value or not value.replace("_", "a").isalnum() or not value.isascii() or value[0].isdigit():
        return False
    if value.startswith(_TOKEN_PREFIXES):
        return False
    # A long run of mixed case and digits is a random token, not a name someone chose.
    return not (
        len(value) >= 24 and any(c.islower() for c in value) and any(c.isupper() for c in value) and any(c.isdigit() for c in value)
    )


class HealthPaths(_Strict):
    liveness: str | None = None
    readiness: str | None = None
    # Deep health document: application/health+json or Spring Boot actuator JSON.
    deep: str | None = None
    # Where the deployed version / releaseId is published; defaults to the deep document.
    version: str | None = None

    @field_validator("liveness", "readiness", "deep", "version")
    @classmethod
    def _absolute_path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("must be a path starting with '/', relative to base_url")
        return value


class RateLimitSettings(_Strict):
    # Endpoint the per-IP and per-user bursts go to.
    path: str
    # Hard cap on requests of one burst; a probe stops at the first 429 anyway.
    max_probe_requests: int = Field(default=40, gt=0, le=1000)
    # An endpoint with a limit of its own (e.g. login) and another that must still answer
    # while it is exhausted (security.rate_limit.endpoint).
    endpoint_path: str | None = None
    other_path: str | None = None


class LimitSettings(_Strict):
    body_path: str
    max_body_bytes: int = Field(gt=0)
    # Largest request header block the service accepts; one over it must get 431.
    max_header_bytes: int | None = Field(default=None, gt=0)


class WebSocketSettings(_Strict):
    # A message one byte over this must close the connection with 1009.
    max_message_bytes: int = Field(default=65_536, gt=0)
    # Per-user connection cap (security.websocket.connection_limit); None: not checked.
    max_connections_per_user: int | None = Field(default=None, gt=0, le=200)
    # A conversation (or room) the token may join, if the endpoint needs one.
    query: str | None = None


class Target(_Strict):
    name: str = Field(min_length=1)
    base_url: str
    # The plain-HTTP endpoint of the same service (security.transport.https); default: base_url
    # with http:// on the default port.
    http_url: str | None = None
    ws_url: str | None = None
    websocket: WebSocketSettings = WebSocketSettings()
    tls: TlsSettings = TlsSettings()
    auth: AuthSettings = AuthSettings()
    health: HealthPaths | None = None
    expected_release: str | None = None
    rate_limit: RateLimitSettings | None = None
    limits: LimitSettings | None = None

    @field_validator("base_url", "http_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http:// or https:// URL such as https://app.example.test")
        return value.rstrip("/")

    @field_validator("ws_url")
    @classmethod
    def _ws_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError("must be an absolute ws:// or wss:// URL such as wss://app.example.test/ws")
        return value


@dataclass(frozen=True)
class LoadedTarget:
    """A parsed target plus where it came from (relative paths resolve against its folder)."""

    target: Target
    path: Path

    @property
    def ca_bundle(self) -> Path | None:
        bundle = self.target.tls.ca_bundle
        return None if bundle is None else (self.path.parent / bundle).resolve()

    def token(self) -> str | None:
        """The bearer token from the environment; never log or store the returned value."""
        return self.secret(self.target.auth.token_env)

    def secret(self, env: str | None) -> str | None:
        """A secret named by one of the target's *_env keys; never log or store it."""
        return os.environ.get(env) if env else None

    def secrets(self) -> list[tuple[str, str]]:
        """(variable name, value) of every secret the target names, for the redactor."""
        return [(env, value) for env in self.target.auth.secret_envs() if (value := os.environ.get(env))]


# --------------------------------------------------------------------------- gates.yaml


class RetryPolicy(_Strict):
    # Keep probing a post-deploy check until it passes or this many seconds have gone by
    # (like goss --retry-timeout); 0 means a single attempt.
    timeout_s: float = Field(default=30.0, ge=0, le=3600)
    interval_s: float = Field(default=1.0, gt=0, le=600)
    backoff: float = Field(default=2.0, ge=1, le=10)
    max_interval_s: float = Field(default=10.0, gt=0, le=600)

    @model_validator(mode="after")
    def _consistent(self) -> RetryPolicy:
        if self.max_interval_s < self.interval_s:
            raise ValueError("max_interval_s must be at least interval_s")
        return self


class ProbeSettings(_Strict):
    # Upper bound on one request, connect to last byte.
    timeout_s: float = Field(default=5.0, gt=0, le=300)
    # Bodies are read up to this many bytes; a bigger answer is an error, not a crash.
    max_body_bytes: int = Field(default=1_048_576, gt=0, le=64 * 1_048_576)
    retry: RetryPolicy = RetryPolicy()


class HealthThresholds(_Strict):
    # Latency budget for one liveness/readiness answer; slower is a failure. None: no budget.
    max_latency_ms: float | None = Field(default=2000.0, gt=0)


class SecurityThresholds(_Strict):
    # Mozilla profile the TLS configuration must meet (intermediate | modern | old), or a path
    # to a custom profile JSON in sslyze's format, relative to gates.yaml.
    tls_profile: str = "intermediate"
    # Certificate: fewer days left than cert_min_days fails, fewer than cert_warn_days warns;
    # a lifespan over cert_max_lifespan_days warns (browsers refuse over 398).
    cert_min_days: int = Field(default=14, ge=0)
    cert_warn_days: int = Field(default=30, ge=0)
    cert_max_lifespan_days: int = Field(default=398, gt=0)
    # Strict-Transport-Security max-age at least this (one year).
    hsts_min_max_age_s: int = Field(default=31_536_000, ge=0)
    # A freshly issued token may live at most this long (exp - iat).
    token_max_lifetime_s: int = Field(default=3600, gt=0)

    @model_validator(mode="after")
    def _warn_before_fail(self) -> SecurityThresholds:
        if self.cert_warn_days < self.cert_min_days:
            raise ValueError("cert_warn_days must be at least cert_min_days")
        return self


class Thresholds(_Strict):
    health: HealthThresholds = HealthThresholds()
    security: SecurityThresholds = SecurityThresholds()


class Waiver(_Strict):
    check: str = Field(min_length=1)
    justification: str = Field(min_length=10)
    expires: date


class Gates(_Strict):
    version: Literal[1] = 1
    on_error: Literal["hold", "rollback"] = "hold"
    on_warning: Literal["ignore", "hold"] = "ignore"
    deadline_s: float = Field(default=900.0, gt=0, le=86_400)
    severity: dict[str, Severity] = Field(default_factory=dict)
    required: list[str] = Field(default_factory=list)
    # Evidence minimums: check id or pattern -> samples a statistical check needs; below it the
    # result is inconclusive (error), neither pass nor fail.
    min_samples: dict[str, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)
    waivers: list[Waiver] = Field(default_factory=list)
    probe: ProbeSettings = ProbeSettings()
    thresholds: Thresholds = Thresholds()

    @model_validator(mode="after")
    def _deadline_fits_a_probe(self) -> Gates:
        if self.deadline_s < self.probe.timeout_s:
            raise ValueError("deadline_s must be at least probe.timeout_s, or no check could finish")
        if self.deadline_s < self.probe.retry.timeout_s + self.probe.timeout_s:
            raise ValueError(
                "deadline_s must be at least probe.retry.timeout_s + probe.timeout_s, or one converging check outlives the run"
            )
        return self

    def min_samples_of(self, check_id: str) -> int | None:
        """The evidence minimum for ``check_id``: exact id, else the longest matching pattern."""
        if check_id in self.min_samples:
            return self.min_samples[check_id]
        matching = [(len(p), n) for p, n in self.min_samples.items() if registry.matches(p, check_id)]
        return max(matching)[1] if matching else None

    def severity_of(self, check_id: str) -> Severity:
        """Registry default, overridden by an exact id, else by the longest matching pattern."""
        if check_id in self.severity:
            return self.severity[check_id]
        best: tuple[int, Severity] | None = None
        for pattern, severity in self.severity.items():
            if registry.matches(pattern, check_id) and (best is None or len(pattern) > best[0]):
                best = (len(pattern), severity)
        return best[1] if best else registry.get(check_id).severity


@dataclass(frozen=True)
class LoadedGates:
    gates: Gates
    path: Path | None
    lines: LineIndex

    def line_of(self, path: YamlPath) -> int | None:
        return self.lines.line(path)


# --------------------------------------------------------------------------- loading


def load_target(path: Path) -> LoadedTarget:
    data, lines = load_yaml(path)
    shown = str(path)
    # Like gates.yaml: look at the raw data too, so schema and file/env problems come in one list.
    problems = target_problems(data, lines, shown, folder=path.resolve().parent)
    try:
        target = _validate(Target, data, lines, shown)
    except ConfigError as exc:
        raise ConfigError(sorted(exc.problems + problems, key=_by_line)) from None
    if problems:
        raise ConfigError(problems)
    return LoadedTarget(target=target, path=path.resolve())


def target_problems(data: Any, lines: LineIndex, shown: str, *, folder: Path) -> list[Problem]:
    """Problems a valid schema cannot see: missing files, unset secret variables."""
    problems: list[Problem] = []
    if not isinstance(data, dict):
        return problems
    tls, auth = data.get("tls"), data.get("auth")
    ca_bundle = tls.get("ca_bundle") if isinstance(tls, dict) else None
    if isinstance(ca_bundle, str) and ca_bundle and not (bundle := (folder / ca_bundle).resolve()).is_file():
        problems.append(
            Problem(
                shown,
                lines.line(("tls", "ca_bundle")),
                "tls.ca_bundle",
                f"file {bundle} does not exist",
                "point it at a PEM file, relative to the target file",
            )
        )
    if isinstance(auth, dict):
        for key in ("token_env", "second_token_env", "expired_token_env"):
            env = auth.get(key)
            if isinstance(env, str) and _is_env_name(env):
                problem = _token_problem(env, os.environ.get(env), data.get("base_url"))
                if problem is not None:
                    message, fix = problem
                    problems.append(Problem(shown, lines.line(("auth", key)), f"auth.{key}", message, fix))
        login = auth.get("login")
        for key in ("username_env", "password_env"):
            env = login.get(key) if isinstance(login, dict) else None
            if isinstance(env, str) and _is_env_name(env) and not os.environ.get(env):
                problems.append(
                    Problem(
                        shown,
                        lines.line(("auth", "login", key)),
                        f"auth.login.{key}",
                        f"environment variable {env} is not set or empty",
                        f"export {env}=... before running the gate",
                    )
                )
    return problems


def _token_problem(env: str, token: str | None, base_url: Any) -> tuple[str, str] | None:
    """What is wrong with the token in ``env`` (never quoting it), or None."""
    if not token:
        return f"environment variable {env} is not set or empty", f"export {env}=<token> before running the gate"
    if len(token) < MIN_SECRET_LENGTH:
        # Redaction ignores values this short (they would match ordinary words), so such a
        # token would be printed in clear: refuse it rather than leak it.
        return (
            f"the token in {env} is shorter than {MIN_SECRET_LENGTH} characters and could not be redacted from reports",
            f"use a real bearer token in {env}",
        )
    if token != token.strip() or any(ch.isspace() or not ch.isprintable() for ch in token):
        return f"the token in {env} contains whitespace or control characters (a stray newline?)", f"export {env} without them"
    if isinstance(base_url, str):
        parts = urlsplit(base_url)
        if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
            return (
                f"base_url is plain http:// to {parts.hostname}: the token in {env} would cross the network in clear",
                "use an https:// base_url, or drop auth.token_env for this target",
            )
    return None


def load_gates(path: Path | None, *, today: date | None = None, strict_waivers: bool = False) -> LoadedGates:
    """Parse gates.yaml (``None``: built-in defaults).

    ``strict_waivers`` (used by ``releasegate validate``) also reports expired waivers; a gate
    run keeps going and simply stops honouring them.
    """
    if path is None:
        return LoadedGates(gates=Gates(), path=None, lines=LineIndex({}))
    data, lines = load_yaml(path)
    if data is None:
        data = {}
    shown = str(path)
    # Semantic problems are looked for in the raw data too, so one `validate` lists them
    # together with the schema problems instead of one round-trip per fix.
    problems = gates_problems(data, lines, shown, today=today or date.today(), strict_waivers=strict_waivers)
    problems += _tls_profile_problems(data, lines, shown, folder=path.resolve().parent)
    try:
        gates = _validate(Gates, data, lines, shown)
    except ConfigError as exc:
        raise ConfigError(sorted(exc.problems + problems, key=_by_line)) from None
    if problems:
        raise ConfigError(problems)
    return LoadedGates(gates=gates, path=path.resolve(), lines=lines)


def _by_line(problem: Problem) -> int:
    return problem.line or 0


MOZILLA_PROFILES = ("intermediate", "modern", "old")


def _tls_profile_problems(data: Any, lines: LineIndex, shown: str, *, folder: Path) -> list[Problem]:
    """thresholds.security.tls_profile: a Mozilla profile name or a JSON file next to gates.yaml."""
    thresholds = data.get("thresholds") if isinstance(data, dict) else None
    security = thresholds.get("security") if isinstance(thresholds, dict) else None
    spec = security.get("tls_profile") if isinstance(security, dict) else None
    if not isinstance(spec, str) or spec in MOZILLA_PROFILES or (folder / spec).is_file():
        return []
    return [
        Problem(
            shown,
            lines.line(("thresholds", "security", "tls_profile")),
            "thresholds.security.tls_profile",
            f"'{spec}' is neither a Mozilla profile nor a file next to this gates.yaml",
            f"use one of {', '.join(MOZILLA_PROFILES)}, or the path of a profile JSON relative to this file",
        )
    ]


def gates_problems(data: Any, lines: LineIndex, shown: str, *, today: date, strict_waivers: bool) -> list[Problem]:
    """Problems beyond the schema: ids and globs that select no registered check, expired waivers."""
    problems: list[Problem] = []
    if not isinstance(data, dict):
        return problems

    def unknown(pattern: Any, path: YamlPath) -> None:
        if isinstance(pattern, str) and pattern and not registry.select(pattern):
            close = difflib.get_close_matches(pattern, registry.ids(), n=1)
            hint = f"did you mean '{close[0]}'?" if close else "run `releasegate checks` for the registered ids"
            problems.append(Problem(shown, lines.line(path), dotted(path), f"'{pattern}' matches no registered check", hint))

    for key in ("severity", "min_samples"):
        mapping = data.get(key)
        if isinstance(mapping, dict):
            for pattern in mapping:
                unknown(pattern, (key, str(pattern)))
    required = data.get("required")
    if isinstance(required, list):
        for index, pattern in enumerate(required):
            unknown(pattern, ("required", index))
    waivers = data.get("waivers")
    if isinstance(waivers, list):
        for index, waiver in enumerate(waivers):
            if not isinstance(waiver, dict):
                continue
            unknown(waiver.get("check"), ("waivers", index, "check"))
            expires = _as_date(waiver.get("expires"))
            if strict_waivers and expires is not None and expires < today:
                problems.append(
                    Problem(
                        shown,
                        lines.line(("waivers", index, "expires")),
                        f"waivers[{index}].expires",
                        f"waiver for '{waiver.get('check')}' expired on {expires.isoformat()} and no longer applies",
                        "fix the check, or renew the waiver with a new justification and date, or remove it",
                    )
                )
    return problems


def _as_date(value: Any) -> date | None:
    """The date the schema will see: YAML gives a date, a datetime or (quoted) a string."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


M = typing.TypeVar("M", bound=BaseModel)


def _validate(model: type[M], data: Any, lines: LineIndex, shown: str) -> M:
    if not isinstance(data, dict):
        raise ConfigError(
            [
                Problem(
                    shown, lines.line(()), "", "the file must be a YAML mapping of keys to values", "start the file with `key: value` lines"
                )
            ]
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_problem(model, err, lines, shown) for err in exc.errors()]) from None


def _problem(model: type[BaseModel], err: Any, lines: LineIndex, shown: str) -> Problem:
    loc: YamlPath = tuple(part for part in err["loc"] if isinstance(part, (str, int)))
    key = dotted(loc)
    line = lines.line(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        fix = f"did you mean '{close[0]}'?" if close else f"remove it; allowed here: {', '.join(allowed)}"
        return Problem(shown, line, key, "unknown key", fix)
    if kind == "missing":
        return Problem(shown, line, key, "required key is missing", f"add `{loc[-1]}:` here")
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return Problem(shown, line, key, f"invalid value {err.get('input')!r}", f"use one of {expected}")
    message = err["msg"].removeprefix("Value error, ")
    value = err.get("input")
    if kind == "value_error" and isinstance(value, dict):
        # A rule across fields (model validator) starts its message with the field to change;
        # point at that key rather than at the enclosing mapping.
        field = message.split(" ", 1)[0]
        if field in _allowed_keys(model, loc):
            loc = (*loc, field)
            key, line, value = dotted(loc), lines.line(loc), value.get(field, "the default")
            return Problem(shown, line, key, f"{message} (got {_short(value)})", f"change the value: {message}")
    # A token pasted where its variable's name belongs must not be echoed into logs.
    got = "the value is not shown: it may be a secret" if loc and loc[-1] == "token_env" else f"got {_short(value)}"
    return Problem(shown, line, key, f"{message} ({got})", _fix_for(kind, err.get("ctx") or {}, message))


_BOUND_WORDS = {"greater_than": "greater than", "greater_than_equal": "at least", "less_than": "less than", "less_than_equal": "at most"}
_BOUND_CTX = {"greater_than": "gt", "greater_than_equal": "ge", "less_than": "lt", "less_than_equal": "le"}


def _fix_for(kind: str, ctx: dict[str, Any], message: str) -> str:
    if kind in _BOUND_WORDS:
        return f"use a number {_BOUND_WORDS[kind]} {ctx.get(_BOUND_CTX[kind])}"
    if kind.startswith("date"):
        return "write a date as YYYY-MM-DD"
    if kind == "string_too_short":
        return f"write at least {ctx.get('min_length')} characters"
    if kind == "model_type":
        return "write a mapping: `key: value` lines indented under this key"
    if kind.endswith(("_type", "_parsing")):
        return "write " + message.removeprefix("Input should be ")
    if kind == "value_error":
        return "change the value: it " + message
    return "see the comment on this key in the shipped gates.yaml / targets/staging.example.yaml"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _allowed_keys(model: type[BaseModel], path: YamlPath) -> list[str]:
    """Field names of the model found at ``path`` inside ``model`` (best effort)."""
    current: Any = model
    for part in path:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel) and isinstance(part, str) and part in current.model_fields:
            current = current.model_fields[part].annotation
        elif typing.get_origin(current) in (list, dict):
            current = typing.get_args(current)[-1]
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation
