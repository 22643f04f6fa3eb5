"""Run one scenario against a deployment: its steps in order, each bounded, with evidence.

The runner is the I/O edge of the scenario family: HTTP through one
:class:`~releasegate.probes.api.ApiClient` per run, WebSocket through the ``websockets``
asyncio client; judging is :mod:`.expectations` (pure). :func:`run_scenario` never raises for
a failing step, it returns a :class:`ScenarioOutcome`; :func:`run_driver` is the same for other
checks that call a driver, raising :class:`DriverFailed` so that ``check.measure`` turns it into
an ``error`` finding.

A step that got no answer at all (connection refused, TLS failure, no HTTP answer or handshake
within its timeout, the run's budget exhausted) could not judge the deployment: ``error``; so
does a step that cannot run as written (an identity without a token, a token that would leave
the target or cross the network in clear, anything unexpected while judging). A step that got
a wrong answer (status, body, budget, a refused upgrade, no matching event in time, a connection
closed by the service) is ``failed``.

Credentials never reach evidence: the target's tokens, and every value a step saves into a
variable named like a credential (``access_token``, ``session_id``, ``api_key``, ...), are
scrubbed from every failure of every later run in the same :class:`RunContext`
(:meth:`RunContext.redactor`, also for callers of :func:`run_driver`); JSON values at such keys
are masked in body, frame and event excerpts.

WebSocket events are claimed in arrival order: ``ws_expect`` first looks at earlier events of
the connection that no step has claimed yet (a bounded backlog), then waits for new ones. Every
connection is closed when the scenario ends, also when a step failed.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import ssl
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from releasegate._exceptions import ProbeError, ProbeTimeout
from releasegate.config import Identity, LoadedTarget
from releasegate.probes.api import ApiAnswer, ApiClient, is_secret_name, mask_secrets_in_json_text, token_allowed
from releasegate.probes.http import EVIDENCE_BODY_CHARS, SENSITIVE_HEADERS, HttpSettings, client_tls, ssl_context
from releasegate.redact import Redactor
from releasegate.results import Finding
from releasegate.scenarios import jsonpath
from releasegate.scenarios.expectations import check_answer, check_match, matches_event
from releasegate.scenarios.loader import LoadedScenario, ScenarioSuite
from releasegate.scenarios.model import Expect, Scenario, Step
from releasegate.scenarios.template import TemplateSyntaxError, UndefinedVariable, render, to_text

USER_AGENT = "releasegate-scenario"
CLOSE_TIMEOUT_S = 2.0  # per connection, when the scenario ends
EVENTS_SHOWN = 20  # events quoted in the evidence of a failed ws_expect
EVENT_CHARS = 500  # characters of each quoted event
BACKLOG = 200  # unclaimed events kept per connection for later ws_expect steps
MAX_QUEUE = 64  # frames the websockets client buffers before it stops reading
BACKSTOP_S = 0.5  # beyond a step's timeout, before the step is cancelled from outside
CLOSE_GRACE_S = 5.0  # run_blocking: beyond the scenario's budget, for closing connections

Kind = Literal["failed", "error"]


# A value saved from a credential-named field is taken for a credential from this length on (a token,
# a session id); shorter ones ("Bearer", "3600") are its metadata.
CREDENTIAL_MIN_CHARS = 16


@dataclass(frozen=True)
class RunContext:
    """Where and as whom scenarios run: the deployment's URLs, a token per identity, HTTP settings.

    ``tokens`` maps an identity (primary, second, anonymous) to its bearer token (None: it has
    none; a step acting as that identity is an error, never an anonymous request);
    ``token_problems`` says why an identity has none. ``secrets`` are scrubbed from every piece
    of evidence, and so is every credential a scenario run in this context saved (``learned``).
    """

    base_url: str
    ws_url: str | None
    tokens: Mapping[str, str | None] = field(repr=False)
    http: HttpSettings
    secrets: tuple[str, ...] = field(default=(), repr=False)
    token_problems: Mapping[str, str] = field(default_factory=dict)
    # (variable, value) of credentials saved by runs in this context; grows as scenarios run.
    learned: list[tuple[str, str]] = field(default_factory=list, repr=False, compare=False)

    def secret_pairs(self) -> list[tuple[str, str]]:
        """(name, value) of the target's secrets and of every credential saved so far by a run in this context."""
        return [*(("secret", value) for value in self.secrets), *self.learned]

    def redactor(self) -> Redactor:
        """Scrubs :meth:`secret_pairs`."""
        return Redactor(self.secret_pairs())

    def learn(self, name: str, value: Any, source: str = "") -> None:
        """Remember ``value`` as a credential when ``name`` or where it came from says it is one.

        ``source`` is the save's JSONPath or header: ``save: {sid: "$.access_token"}`` keeps a
        token under an innocent name, and it must be redacted all the same (see :func:`is_secret_name`).
        By source alone only a value that looks like a credential counts: ``$.token_type`` is
        "Bearer", and redacting that word everywhere would garble every report.
        """
        if value is None:
            return
        text = to_text(value)
        field = re.split(r"[.:\[\]'\"]", source.strip())[-1] if source else ""
        by_source = bool(field) and is_secret_name(field) and len(text) >= CREDENTIAL_MIN_CHARS and not any(c.isspace() for c in text)
        if is_secret_name(name) or by_source:
            self.learned.append((name, text))


def scrubbed(finding: Finding, redactor: Redactor) -> Finding:
    """``finding`` with every secret ``redactor`` knows taken out (for checks built on drivers)."""
    return Finding(
        finding.outcome,
        redactor.text(finding.summary),
        redactor.data(finding.observed),
        redactor.data(finding.expected),
        redactor.data(finding.evidence),
    )


def missing_token_problem(identity: Identity, target: LoadedTarget) -> str | None:
    """Why ``identity`` has no token (None: it has one, or is anonymous). Acting without it would
    send an anonymous request that proves nothing about the identity's access."""
    if identity == "anonymous" or target.token_of(identity):
        return None
    key = "auth.token_env" if identity == "primary" else "auth.second_token_env"
    env = target.target.auth.token_env if identity == "primary" else target.target.auth.second_token_env
    if env is None:
        return f"acts as {identity} but {key} is not set"
    return f"acts as {identity} but {key} names {env}, an empty or unset environment variable"


def context_for(target: LoadedTarget, http: HttpSettings) -> RunContext:
    """The context of a target: its tokens for primary and second, anonymous without one."""
    ws_url = target.target.ws_url
    if ws_url is not None and ws_url.startswith("wss:") and not isinstance(http.verify, ssl.SSLContext) and http.verify:
        # An http:// base_url gets no trust store from the plugin; wss:// still needs the target's CA.
        http = replace(http, verify=ssl_context(target.ca_bundle))
    identities: tuple[Identity, ...] = ("primary", "second")
    tokens: dict[str, str | None] = {identity: target.token_of(identity) or None for identity in identities}
    tokens["anonymous"] = None
    problems: dict[str, str] = {
        identity: problem for identity in identities if (problem := missing_token_problem(identity, target)) is not None
    }
    found = [value for value in tokens.values() if value] + [value for _, value in target.secrets()]
    return RunContext(
        base_url=target.target.base_url,
        ws_url=ws_url,
        tokens=tokens,
        http=http,
        secrets=tuple(dict.fromkeys(found)),
        token_problems=problems,
    )


# --------------------------------------------------------------------------- outcome


@dataclass(frozen=True)
class StepRecord:
    """One step as it ran."""

    index: int
    name: str
    action: str
    duration_ms: float
    ok: bool

    def to_json(self) -> dict[str, Any]:
        return {"step": self.index + 1, "name": self.name, "action": self.action, "duration_ms": round(self.duration_ms, 1), "ok": self.ok}


@dataclass(frozen=True)
class StepFailure:
    """The step that stopped a scenario, what it sent and what came back (bounded, no credentials)."""

    index: int
    name: str
    action: str
    kind: Kind
    reason: str
    problems: tuple[str, ...] = ()
    expected: Any = None
    request: dict[str, Any] | None = None
    response: dict[str, Any] | None = None
    events: tuple[str, ...] = ()  # events seen on the connection and claimed by no step (last EVENTS_SHOWN)

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "step": self.index + 1,
            "name": self.name,
            "action": self.action,
            "kind": self.kind,
            "reason": self.reason,
        }
        if self.problems:
            record["problems"] = list(self.problems)
        if self.expected is not None:
            record["expected"] = self.expected
        if self.request is not None:
            record["request"] = self.request
        if self.response is not None:
            record["response"] = self.response
        if self.events:
            record["events_seen"] = list(self.events)
        return record


@dataclass(frozen=True)
class ScenarioOutcome:
    """How a scenario run went; ``saved`` holds every variable at the end (builtins and inputs too),
    credentials unmasked: it is for callers, never for evidence."""

    name: str
    file: str
    passed: bool
    saved: dict[str, Any]
    steps: list[StepRecord]
    failure: StepFailure | None
    duration_ms: float
    total_steps: int

    def evidence(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "scenario": self.name,
            "file": self.file,
            "duration_ms": round(self.duration_ms, 1),
            "steps": [step.to_json() for step in self.steps],
        }
        if self.failure is not None:
            record["failing_step"] = self.failure.to_json()
        return record

    def finding(self) -> Finding:
        """passed; failed (a wrong answer, a missing event); error (no answer at all, out of time)."""
        if self.failure is None:
            return Finding(
                "passed",
                f"scenario {self.name}: {self.total_steps} steps passed in {self.duration_ms:.0f} ms",
                observed=f"{self.total_steps} of {self.total_steps} steps passed",
                expected="every step passes",
                evidence=self.evidence(),
            )
        failure = self.failure
        summary = f"scenario {self.name}: step {failure.index + 1} of {self.total_steps} '{failure.name}' ({failure.action}) "
        summary += ("could not run: " if failure.kind == "error" else "failed: ") + failure.reason
        return Finding(
            failure.kind,
            summary,
            observed=list(failure.problems) or failure.reason,
            expected=failure.expected if failure.expected is not None else "every step passes",
            evidence=self.evidence(),
        )


class DriverFailed(ProbeError):
    """A driver scenario another check relies on did not complete; ``outcome`` holds its evidence."""

    def __init__(self, message: str, *, outcome: ScenarioOutcome | None = None, url: str | None = None) -> None:
        super().__init__(message, url=url)
        self.outcome = outcome

    def evidence(self) -> dict[str, Any]:
        return {} if self.outcome is None else {"driver": self.outcome.evidence()}


# --------------------------------------------------------------------------- running


def scenario_budget_s(scenario: Scenario) -> float:
    """The longest a scenario may take: the sum of its steps' timeouts."""
    return sum(step.timeout_ms for step in scenario.steps) / 1000


def builtin_variables(ctx: RunContext) -> dict[str, Any]:
    """run_id (fresh per run), base_url and, when the target names one, ws_url."""
    variables: dict[str, Any] = {"run_id": secrets.token_hex(6), "base_url": ctx.base_url}
    if ctx.ws_url is not None:
        variables["ws_url"] = ctx.ws_url
    return variables


async def run_scenario(
    scenario: LoadedScenario, ctx: RunContext, inputs: Mapping[str, Any] | None = None, *, deadline_s: float | None = None
) -> ScenarioOutcome:
    """Run every step in order until one fails; never raises for a failing step.

    ``inputs`` override the scenario's input defaults (ValueError for an input it does not
    declare or a required one missing: a caller's bug). ``deadline_s`` bounds the whole run
    (default: the sum of the step timeouts).
    """
    spec = scenario.scenario
    variables = {**builtin_variables(ctx), **_inputs(scenario, inputs or {})}
    budget = deadline_s if deadline_s is not None else scenario_budget_s(spec)
    started = time.perf_counter()
    end = time.monotonic() + budget
    records: list[StepRecord] = []
    failure: StepFailure | None = None
    session = _Session(ctx)
    try:
        async with ApiClient(ctx.base_url, ctx.http) as api:
            session.api = api
            for index, step in enumerate(spec.steps):
                step_started = time.perf_counter()
                remaining = end - time.monotonic()
                try:
                    if remaining <= 0:
                        raise _StepFailed(f"the scenario's budget of {budget:g} s ran out before this step", kind="error")
                    timeout = min(step.timeout_ms / 1000, remaining)
                    try:
                        # The step's own timeouts (request, handshake, event wait) fire first and keep
                        # their evidence; this one is the backstop.
                        await asyncio.wait_for(session.run(step, variables, timeout), timeout + BACKSTOP_S)
                    except TimeoutError:
                        raise _timed_out(step, timeout, budget_ran_out=timeout < step.timeout_ms / 1000) from None
                except _StepFailed as exc:
                    failure = exc.failure(index, step, ctx.redactor())
                except UndefinedVariable as exc:
                    failure = _StepFailed(_undefined(exc, ctx), kind="error").failure(index, step, ctx.redactor())
                except TemplateSyntaxError as exc:  # the loader rules it out; a hand-built scenario may not
                    failure = _StepFailed(str(exc), kind="error").failure(index, step, ctx.redactor())
                except Exception as exc:  # whatever a hostile answer provokes, the run reports it
                    reason = f"the step could not be judged: {type(exc).__name__}: {str(exc)[:300]}"
                    failure = _StepFailed(reason, kind="error").failure(index, step, ctx.redactor())
                records.append(StepRecord(index, step.name, step.action, (time.perf_counter() - step_started) * 1000, failure is None))
                if failure is not None:
                    break
    finally:
        await session.close()
    return ScenarioOutcome(
        name=scenario.name,
        file=str(scenario.path),
        passed=failure is None,
        saved=variables,
        steps=records,
        failure=failure,
        duration_ms=(time.perf_counter() - started) * 1000,
        total_steps=len(spec.steps),
    )


async def run_driver(
    suite: ScenarioSuite, name: str, ctx: RunContext, inputs: Mapping[str, Any], *, deadline_s: float | None = None
) -> dict[str, Any]:
    """Run the driver ``name`` with ``inputs``; its declared outputs, or DriverFailed naming the failing step.

    Outputs may hold credentials the driver saved (a login's token): show them only through
    ``ctx.redactor()``.
    """
    loaded = suite.drivers.get(name)
    if loaded is None:
        raise DriverFailed(f"driver {name}: no such driver in {suite.folder / 'drivers'}")
    outcome = await run_scenario(loaded, ctx, inputs, deadline_s=deadline_s)
    if outcome.failure is not None:
        failure = outcome.failure
        verb = "could not run" if failure.kind == "error" else "failed"
        url = (failure.request or {}).get("url")
        message = f"driver {name}: step {failure.index + 1} '{failure.name}' {verb}: {failure.reason}"
        raise DriverFailed(message, outcome=outcome, url=url if isinstance(url, str) else None)
    return {key: outcome.saved[key] for key in loaded.scenario.outputs}


def run_blocking(
    scenario: LoadedScenario, ctx: RunContext, inputs: Mapping[str, Any] | None = None, *, deadline_s: float | None = None
) -> ScenarioOutcome:
    """:func:`run_scenario` on a fresh event loop, for a check; ProbeTimeout if even closing hangs."""
    budget = deadline_s if deadline_s is not None else scenario_budget_s(scenario.scenario)

    async def bounded() -> ScenarioOutcome:
        return await asyncio.wait_for(run_scenario(scenario, ctx, inputs, deadline_s=budget), budget + CLOSE_GRACE_S)

    # Not asyncio.run(): it joins the default executor on the way out, so a getaddrinfo() stuck
    # in a slow resolver would hold the check past its deadline (as in probes.http).
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(bounded())
    except TimeoutError:
        raise ProbeTimeout(f"scenario {scenario.name} did not finish within {budget + CLOSE_GRACE_S:g} s") from None
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


def _inputs(scenario: LoadedScenario, given: Mapping[str, Any]) -> dict[str, Any]:
    declared = scenario.scenario.inputs
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ValueError(f"scenario {scenario.name} declares no input {', '.join(unknown)} (inputs: {', '.join(declared) or 'none'})")
    missing = sorted(name for name, default in declared.items() if default is None and name not in given)
    if missing:
        raise ValueError(f"scenario {scenario.name} needs the input {', '.join(missing)}")
    return {**{name: default for name, default in declared.items() if default is not None}, **given}


def _undefined(exc: UndefinedVariable, ctx: RunContext) -> str:
    if exc.name == "ws_url" and ctx.ws_url is None:
        return "the step uses ${ws_url} but the target names no ws_url"
    return f"undefined variable ${{{exc.name}}}"


def _timed_out(step: Step, timeout: float, *, budget_ran_out: bool) -> _StepFailed:
    if budget_ran_out:
        return _StepFailed(f"the scenario's budget ran out during this step (after {timeout:.1f} s)", kind="error")
    if step.action in ("http", "ws_connect"):
        return _StepFailed(f"no answer within the step's timeout of {step.timeout_ms:g} ms", kind="error")
    return _StepFailed(f"not done within the step's timeout of {step.timeout_ms:g} ms", kind="failed")


class _StepFailed(Exception):
    """A step's verdict (internal): turned into a StepFailure by run_scenario."""

    def __init__(
        self,
        reason: str,
        *,
        kind: Kind = "failed",
        problems: list[str] | None = None,
        expected: Any = None,
        request: dict[str, Any] | None = None,
        response: dict[str, Any] | None = None,
        events: list[str] | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason, self.kind, self.problems, self.expected = reason, kind, problems or [], expected
        self.request, self.response, self.events = request, response, events or []

    def failure(self, index: int, step: Step, redactor: Redactor) -> StepFailure:
        # Credentials never go into evidence (the gate's redactor also scrubs; this does not rely on it).
        return StepFailure(
            index=index,
            name=step.name,
            action=step.action,
            kind=self.kind,
            reason=redactor.text(self.reason),
            problems=tuple(redactor.text(problem) for problem in self.problems),
            expected=redactor.data(_jsonable(self.expected)),
            request=redactor.data(_jsonable(self.request)),
            response=redactor.data(_jsonable(self.response)),
            events=tuple(redactor.text(event) for event in self.events[-EVENTS_SHOWN:]),
        )


@dataclass
class _Connection:
    name: str
    url: str
    socket: ClientConnection
    backlog: deque[tuple[str, Any]] = field(default_factory=lambda: deque(maxlen=BACKLOG))  # (excerpt, event or _NOT_JSON)


_NOT_JSON = object()


class _NoRedirects(connect):
    """``connect`` that reports a 3xx instead of following it: the token stays with the target."""

    def process_redirect(self, exc: Exception) -> Exception | str:
        return exc


class _Session:
    """The I/O of one scenario run: one API client, the open WebSocket connections."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.api: ApiClient | None = None
        self.connections: dict[str, _Connection] = {}

    async def run(self, step: Step, variables: dict[str, Any], timeout: float) -> None:
        if step.http is not None:
            await self._http(step, variables, timeout)
        elif step.ws_connect is not None:
            await self._ws_connect(step, variables, timeout)
        elif step.ws_send is not None:
            await self._ws_send(step, variables)
        elif step.ws_expect is not None:
            await self._ws_expect(step, variables, timeout)
        elif step.ws_close is not None:
            connection = self._connection(step.ws_close.connection)
            del self.connections[connection.name]
            await _close([connection])

    def _token(self, identity: Identity, url: str, *, explicit: bool, request: dict[str, Any]) -> str | None:
        """The identity's token for a request to ``url``; a step error when it has none or may not send it there."""
        if identity == "anonymous":
            return None
        token = self.ctx.tokens.get(identity)
        if not token:
            why = self.ctx.token_problems.get(identity, f"acts as {identity} but the target names no token for it")
            raise _StepFailed(f"the step {why}", kind="error", request=request)
        problem = token_allowed(url, self.ctx.base_url, self.ctx.ws_url, explicit=explicit)
        if problem is not None:
            raise _StepFailed(f"the step {problem}", kind="error", request=request)
        return token

    def _connection(self, name: str) -> _Connection:
        connection = self.connections.get(name)
        if connection is None:
            # The loader rules this out; a hand-built scenario may still get here.
            raise _StepFailed(f"no open connection named {name!r}", kind="error")
        return connection

    # ------------------------------------------------------------------- http

    async def _http(self, step: Step, variables: dict[str, Any], timeout: float) -> None:
        assert step.http is not None and self.api is not None
        spec = step.http
        url = self.api.url(to_text(render(spec.url, variables)))
        headers = {str(k): to_text(v) for k, v in render(spec.headers, variables).items()}
        kwargs: dict[str, Any] = {}
        shown_body: str | None = None
        if spec.json_ is not None:
            kwargs["json"] = _jsonable(render(spec.json_, variables))  # a YAML date becomes its text
            shown_body = json.dumps(kwargs["json"], ensure_ascii=False, default=str)
        elif spec.body is not None:
            kwargs["content"] = shown_body = to_text(render(spec.body, variables))
        method = spec.method.upper()
        request: dict[str, Any] = {"method": method, "url": url, "as": spec.as_}
        if headers:
            request["headers"] = {k: ("[redacted]" if _sensitive_header(k) else v) for k, v in headers.items()}
        if shown_body is not None:
            request["body_excerpt"] = mask_secrets_in_json_text(shown_body[:EVIDENCE_BODY_CHARS])
        token = self._token(spec.as_, url, explicit="as_" in spec.model_fields_set, request=request)
        expected = _shown(step.expect.model_dump(by_alias=True, exclude_defaults=True), variables) if step.expect else {"status": "2xx"}
        try:
            answer = await self.api.request(method, url, token=token, headers=headers, timeout_s=timeout, **kwargs)
        except ProbeError as exc:
            raise _StepFailed(str(exc), kind="error", request=request, expected=expected) from None
        response = _response_evidence(answer)
        problems = check_answer(step.expect or Expect(), answer, variables)
        if problems:
            raise _StepFailed("; ".join(problems), problems=problems, expected=expected, request=request, response=response)
        for name, where in step.save.items():
            variables[name] = _saved_from_answer(name, where, answer, request, response)
            self.ctx.learn(name, variables[name], where)

    # ------------------------------------------------------------------- websocket

    async def _ws_connect(self, step: Step, variables: dict[str, Any], timeout: float) -> None:
        assert step.ws_connect is not None
        spec = step.ws_connect
        url = to_text(render(spec.url, variables))
        headers = {str(k): to_text(v) for k, v in render(spec.headers, variables).items()}
        request = {"url": url, "as": spec.as_, "connection": spec.connection}
        if not url.startswith(("ws://", "wss://")):
            raise _StepFailed(f"{url!r} is not a ws:// or wss:// URL", kind="error", request=request)
        token = self._token(spec.as_, url, explicit="as_" in spec.model_fields_set, request=request)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            socket = await _NoRedirects(
                url,
                ssl=client_tls(self.ctx.http.verify) if url.startswith("wss:") else None,
                additional_headers=headers or None,
                compression=None,
                proxy=None,  # never through an environment proxy: the scenario talks to the target itself
                user_agent_header=USER_AGENT,
                open_timeout=timeout,
                close_timeout=CLOSE_TIMEOUT_S,
                ping_interval=None,
                max_size=self.ctx.http.max_body_bytes,
                max_queue=MAX_QUEUE,
            )
        except InvalidStatus as exc:
            answer = exc.response
            body = answer.body.decode("utf-8", errors="replace") if answer.body else ""
            response = {
                "status": answer.status_code,
                "headers": {k.lower(): ("[redacted]" if _sensitive_header(k) else v) for k, v in answer.headers.raw_items()},
                "body_excerpt": mask_secrets_in_json_text(body[:EVIDENCE_BODY_CHARS]),
            }
            raise _StepFailed(f"the upgrade was refused with HTTP {answer.status_code}", request=request, response=response) from None
        except TimeoutError:
            raise _StepFailed(f"no opening handshake within {timeout:.1f} s", kind="error", request=request) from None
        except ssl.SSLError as exc:
            raise _StepFailed(f"TLS failure: {exc}", kind="error", request=request) from None
        except OSError as exc:
            raise _StepFailed(f"cannot connect: {exc.strerror or exc}", kind="error", request=request) from None
        except (InvalidHandshake, InvalidURI) as exc:
            cause = f" ({exc.__cause__})" if exc.__cause__ is not None else ""
            raise _StepFailed(f"the handshake failed: {type(exc).__name__}: {exc}{cause}", kind="error", request=request) from None
        old = self.connections.pop(spec.connection, None)
        self.connections[spec.connection] = _Connection(spec.connection, url, socket)
        if old is not None:
            await _close([old])

    async def _ws_send(self, step: Step, variables: dict[str, Any]) -> None:
        assert step.ws_send is not None
        spec = step.ws_send
        connection = self._connection(spec.connection)
        if spec.json_ is not None:
            frame = json.dumps(_jsonable(render(spec.json_, variables)), ensure_ascii=False)
        else:
            frame = to_text(render(spec.text, variables))
        shown = mask_secrets_in_json_text(frame[:EVIDENCE_BODY_CHARS])
        request = {"connection": spec.connection, "url": connection.url, "frame_excerpt": shown}
        try:
            await connection.socket.send(frame)
        except ConnectionClosed as exc:
            raise _StepFailed(f"the connection is closed ({_close_reason(exc)})", request=request) from None

    async def _ws_expect(self, step: Step, variables: dict[str, Any], timeout: float) -> None:
        assert step.ws_expect is not None
        spec = step.ws_expect
        connection = self._connection(spec.connection)
        render(spec.match, variables)  # an undefined variable is an error now, not a silent non-match
        render(spec.expect, variables)
        expected = _shown({"match": spec.match, **({"expect": spec.expect} if spec.expect else {}), "within_ms": spec.within_ms}, variables)
        request = {"connection": spec.connection, "url": connection.url}
        event = self._claim(connection, spec.match, variables)
        wait_s = min(spec.within_ms / 1000, timeout)
        # Cut short by the scenario's budget (not by within_ms): nothing was judged, so error.
        cut = wait_s < min(spec.within_ms, step.timeout_ms) / 1000
        end = time.monotonic() + wait_s
        while event is _NOT_JSON:
            remaining = end - time.monotonic()
            try:
                if remaining <= 0:
                    raise TimeoutError
                frame = await asyncio.wait_for(connection.socket.recv(), remaining)
            except TimeoutError:
                if cut:
                    reason = f"the scenario's budget ran out after {wait_s * 1000:.0f} ms of waiting"
                    raise self._no_match(reason, connection, expected, request, kind="error") from None
                raise self._no_match(f"no matching event within {wait_s * 1000:.0f} ms", connection, expected, request) from None
            except ConnectionClosed as exc:
                reason = f"the connection closed ({_close_reason(exc)}) before a matching event"
                raise self._no_match(reason, connection, expected, request) from None
            excerpt, parsed = _parse_frame(frame)
            if parsed is not _NOT_JSON and matches_event(spec.match, parsed, variables):
                event = parsed
            else:
                connection.backlog.append((excerpt, parsed))
        shown = {"event_excerpt": _excerpt(event)}
        problems = check_match(spec.expect, event, variables)
        if problems:
            raise _StepFailed("; ".join(problems), problems=problems, expected=expected, request=request, response=shown)
        for name, path in step.save.items():
            try:
                variables[name] = jsonpath.resolve(event, path)
            except jsonpath.PathNotFound:
                raise _StepFailed(f"cannot save {name}: the event has nothing at {path}", request=request, response=shown) from None
            self.ctx.learn(name, variables[name], path)

    def _claim(self, connection: _Connection, match: Mapping[str, Any], variables: Mapping[str, Any]) -> Any:
        """The first unclaimed earlier event that matches, removed from the backlog; else _NOT_JSON."""
        for position, (_, event) in enumerate(connection.backlog):
            if event is not _NOT_JSON and matches_event(match, event, variables):
                del connection.backlog[position]
                return event
        return _NOT_JSON

    @staticmethod
    def _no_match(reason: str, connection: _Connection, expected: Any, request: dict[str, Any], *, kind: Kind = "failed") -> _StepFailed:
        seen = [excerpt for excerpt, _ in connection.backlog]
        reason += f"; {len(seen)} unclaimed events on the connection" if seen else "; no unclaimed events on the connection"
        return _StepFailed(reason, kind=kind, expected=expected, request=request, events=seen[-EVENTS_SHOWN:])

    async def close(self) -> None:
        connections, self.connections = list(self.connections.values()), {}
        await _close(connections)


async def _close(connections: list[_Connection]) -> None:
    """Close handshakes in parallel (each bounded by CLOSE_TIMEOUT_S), then drop whatever is left."""
    await asyncio.gather(*(c.socket.close() for c in connections), return_exceptions=True)
    for connection in connections:
        transport = connection.socket.transport
        if transport is not None and not transport.is_closing():
            transport.abort()


def _response_evidence(answer: ApiAnswer) -> dict[str, Any]:
    record = answer.evidence()
    record.pop("request", None)
    record.pop("request_body_excerpt", None)
    return record


def _saved_from_answer(name: str, where: str, answer: ApiAnswer, request: dict[str, Any], response: dict[str, Any]) -> Any:
    if where.lower().startswith("header:"):
        header = where.split(":", 1)[1].strip().lower()
        if header not in answer.headers:
            raise _StepFailed(f"cannot save {name}: the answer has no header {header}", request=request, response=response)
        return answer.headers[header]
    try:
        return jsonpath.resolve(answer.json(), where)
    except ValueError as exc:  # not JSON (or cut at the size cap)
        raise _StepFailed(f"cannot save {name}: the body is not JSON ({exc})", request=request, response=response) from None
    except jsonpath.PathNotFound:
        raise _StepFailed(f"cannot save {name}: the body has nothing at {where}", request=request, response=response) from None


def _parse_frame(frame: str | bytes) -> tuple[str, Any]:
    if isinstance(frame, bytes):
        return f"<binary frame, {len(frame)} bytes>", _NOT_JSON
    excerpt = mask_secrets_in_json_text(frame if len(frame) <= EVENT_CHARS else frame[: EVENT_CHARS - 1] + "…")
    try:
        return excerpt, json.loads(frame)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the interpreter's limit
        return excerpt, _NOT_JSON


def _excerpt(event: Any) -> str:
    text = json.dumps(event, ensure_ascii=False, default=str)
    return mask_secrets_in_json_text(text if len(text) <= EVIDENCE_BODY_CHARS else text[: EVIDENCE_BODY_CHARS - 1] + "…")


def _sensitive_header(name: str) -> bool:
    return name.lower() in SENSITIVE_HEADERS or is_secret_name(name)


def _close_reason(exc: ConnectionClosed) -> str:
    received = exc.rcvd
    if received is None:
        return "no close frame"
    return f"code {received.code}" + (f", {received.reason}" if received.reason else "")


def _shown(expected: Any, variables: Mapping[str, Any]) -> Any:
    """An expectation as evidence: with its variables filled in, so it shows what was compared."""
    try:
        return render(expected, variables)
    except (UndefinedVariable, TemplateSyntaxError):
        return expected


def _jsonable(value: Any) -> Any:
    return None if value is None else json.loads(json.dumps(value, default=str))
