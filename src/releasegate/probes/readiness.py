"""Readiness family: can this release go on? Migrations, client compatibility, identity, rollback.

Three checks read the target's version document, where health.release_id reads it
(``health.version``, else ``health.deep``), fetched like the health checks
(:func:`releasegate.probes.http.judged_get`, retried within ``probe.retry``):

- **readiness.migrations**: ``schemaVersion`` (the app's) equals ``databaseSchemaVersion`` and,
  when gates.yaml names one, the expected version; ``pendingMigrations`` is empty. A document
  without these fields cannot be judged (error naming the field): the target must publish them.
- **readiness.client_compat**: the oldest client still in use (gates.yaml) is inside the server's
  ``clientVersions`` range, a PEP 440-like specifier (``>=1.2.0,<2.0.0``) read by
  :func:`parse_specifier`: release numbers only, operators ``== != >= <= > < ~=``, ``.*`` after
  ``==``/``!=``; anything else is an unreadable range (error), never a guess.
- **readiness.version**: :func:`releasegate.probes.health.judge_release` on the same document.

**readiness.rollback** proves the previous release can be restored: the target's
``rollback.verify_command`` (argv, no shell) exits 0 within ``timeout_s`` (its process group is
killed there: :func:`releasegate.probes.backup.run_tool`), and/or ``previous_artifact_url``
answers 2xx (HEAD, GET where HEAD is refused; redirects followed by hand, at most
:data:`MAX_REDIRECTS`, the token only where :func:`releasegate.probes.api.token_allowed` lets it
go). Both configured: both must hold.

The ``judge_*`` functions are pure (observations in, one Finding out); :func:`run_verify_command`
and :func:`probe_artifact` do the I/O.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import httpx

from releasegate._exceptions import ProbeError
from releasegate.config import Target
from releasegate.probes import health
from releasegate.probes.api import ApiAnswer, ApiClient, token_allowed
from releasegate.probes.backup import ToolRun, run_tool
from releasegate.probes.http import HttpObservation, HttpSettings, probe_error
from releasegate.results import Finding

# The fields readiness.migrations reads from the version document.
SCHEMA_FIELDS = ("schemaVersion", "databaseSchemaVersion", "pendingMigrations")
CLIENT_FIELD = "clientVersions"
MAX_REDIRECTS = 5
# An artifact may be large (an image, a package): a GET reads at most this much of it.
ARTIFACT_BODY_BYTES = 65_536
_SHOWN = 20  # pending migrations, clauses... listed in a finding


def version_url(target: Target) -> str | None:
    """Where the version document is: base_url + health.version, else + health.deep (as health.release_id)."""
    paths = target.health
    path = None if paths is None else (paths.version or paths.deep)
    return None if path is None else target.base_url + path


def version_document(observation: HttpObservation) -> dict[str, Any]:
    """The version document as a JSON object; ProbeError when the answer is not one."""
    if not 200 <= observation.status < 300:
        raise ProbeError(f"cannot read the version document: HTTP {observation.status} {observation.reason}".strip(), url=observation.url)
    if observation.truncated:
        raise ProbeError(
            f"the version document is larger than {len(observation.body)} bytes; refusing to judge a truncated body", url=observation.url
        )
    # health's reader: the same UTF-8, JSON and nesting limits as every health answer.
    data = health._json(observation)
    if not isinstance(data, dict):
        raise ProbeError(f"the version document is not a JSON object (a {type(data).__name__})", url=observation.url)
    return data


# --------------------------------------------------------------------------- readiness.migrations


def judge_migrations(observation: HttpObservation, *, expected_schema_version: int | None) -> Finding:
    """The app's schema version equals the database's (and the expected one); nothing pending."""
    evidence = observation.evidence()
    expected = (
        "schemaVersion == databaseSchemaVersion"
        + (f" == {expected_schema_version}" if expected_schema_version is not None else "")
        + ", pendingMigrations empty"
    )
    try:
        document = version_document(observation)
        missing = [name for name in SCHEMA_FIELDS if name not in document]
        if missing:
            raise ProbeError(
                f"the version document does not publish {', '.join(missing)}: the target must publish "
                f"{', '.join(SCHEMA_FIELDS)} for the migration check",
                url=observation.url,
            )
        app = _schema_version(document, "schemaVersion", observation.url)
        database = _schema_version(document, "databaseSchemaVersion", observation.url)
        pending = _pending(document["pendingMigrations"], observation.url)
    except ProbeError as exc:
        return Finding("error", str(exc), observed=f"HTTP {observation.status}", expected=expected, evidence=evidence)
    observed = {"schemaVersion": app, "databaseSchemaVersion": database, "pendingMigrations": pending[:_SHOWN]}
    evidence["schema"] = {**observed, "pending_count": len(pending)}
    problems = []
    if app != database:
        problems.append(f"the app expects schema {app} but the database is at {database}")
    if expected_schema_version is not None:
        wanted = str(expected_schema_version)
        wrong = [f"{name} is {value}" for name, value in (("the app", app), ("the database", database)) if value != wanted]
        if wrong:
            problems.append(f"this release expects schema {wanted}, but {' and '.join(wrong)}")
    if pending:
        shown = ", ".join(pending[:5]) + (f" and {len(pending) - 5} more" if len(pending) > 5 else "")
        problems.append(f"{len(pending)} pending migration{'s' if len(pending) != 1 else ''}: {shown}")
    if problems:
        return Finding("failed", "; ".join(problems), observed, expected, evidence)
    return Finding("passed", f"schema {app} applied, no pending migrations", observed, expected, evidence)


def _schema_version(document: dict[str, Any], name: str, url: str) -> str:
    """A schema version as text: an integer, or an identifier (an Alembic revision, a timestamp)."""
    value = document[name]
    if value is None:
        raise ProbeError(f"{name} is null: the service could not tell its schema version (is the database reachable?)", url=url)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ProbeError(f"{name} is a {type(value).__name__}, expected a number or a string", url=url)
    text = str(value).strip()
    if not text or len(text) > 200:
        raise ProbeError(f"{name} is {'empty' if not text else 'longer than 200 characters'}", url=url)
    return str(int(text)) if text.isdigit() else text  # 007 and 7 are one version


def _pending(value: Any, url: str) -> list[str]:
    if not isinstance(value, list):
        raise ProbeError(f"pendingMigrations is {'null' if value is None else 'a ' + type(value).__name__}, expected a list", url=url)
    names = []
    for entry in value:
        if isinstance(entry, dict):  # {"name": ...} or {"id": ...}
            entry = entry.get("name", entry.get("id", entry))
        names.append(str(entry)[:200])
    return names


# --------------------------------------------------------------------------- readiness.client_compat

Operator = Literal["==", "!=", ">=", "<=", ">", "<", "~="]
_OPERATORS: dict[str, Operator] = {op: op for op in ("==", "!=", ">=", "<=", ">", "<", "~=")}
_CLAUSE = re.compile(r"^\s*(~=|==|!=|>=|<=|>|<)\s*([0-9]+(?:\.[0-9]+){0,5})(\.\*)?\s*$")
_VERSION = re.compile(r"^[0-9]+(?:\.[0-9]+){0,5}$")


@dataclass(frozen=True)
class Clause:
    """One clause of a version range, e.g. ``>=1.2.0`` or ``==1.4.*``."""

    operator: Operator
    version: tuple[int, ...]
    wildcard: bool = False

    def __str__(self) -> str:
        return f"{self.operator}{'.'.join(map(str, self.version))}{'.*' if self.wildcard else ''}"

    def admits(self, version: tuple[int, ...]) -> bool:
        if self.wildcard:  # == or != on a prefix
            same = _pad(version, len(self.version))[: len(self.version)] == self.version
            return same if self.operator == "==" else not same
        if self.operator == "~=":  # ~=1.4.2: >=1.4.2 and ==1.4.*
            prefix = self.version[:-1]
            return _compare(version, self.version) >= 0 and _pad(version, len(prefix))[: len(prefix)] == prefix
        order = _compare(version, self.version)
        return {"==": order == 0, "!=": order != 0, ">=": order >= 0, "<=": order <= 0, ">": order > 0, "<": order < 0}[self.operator]


def parse_version(text: str) -> tuple[int, ...]:
    """A release number (``1``, ``1.2``, ``1.2.0``) as a tuple; ValueError for anything else."""
    if not _VERSION.match(text.strip()):
        raise ValueError(f"{text!r} is not a release number such as 1.2.0")
    return tuple(int(part) for part in text.strip().split("."))


def parse_specifier(text: str) -> tuple[Clause, ...]:
    """A range such as ``>=1.2.0,<2.0.0``; ValueError naming the clause it cannot read.

    Strict on purpose: pre-releases, local versions, ``===`` and empty clauses are refused, so a
    range the gate does not understand is never judged by a guess.
    """
    if not text.strip():
        raise ValueError("the range is empty")
    clauses = []
    for raw in text.split(","):
        match = _CLAUSE.match(raw)
        if match is None:
            raise ValueError(f"cannot read clause {raw.strip()[:60]!r} (expected an operator == != >= <= > < ~= and a release number)")
        operator, number, wildcard = match.group(1), match.group(2), bool(match.group(3))
        version = tuple(int(part) for part in number.split("."))
        if wildcard and operator not in ("==", "!="):
            raise ValueError(f"{raw.strip()!r}: '.*' only goes with == or !=")
        if operator == "~=" and len(version) < 2:
            raise ValueError(f"{raw.strip()!r}: ~= needs at least two parts (~=1.4)")
        clauses.append(Clause(_OPERATORS[operator], version, wildcard))
    return tuple(clauses)


def _pad(version: tuple[int, ...], length: int) -> tuple[int, ...]:
    return version + (0,) * (length - len(version))


def _compare(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """-1, 0, 1; 1.2 == 1.2.0 as in PEP 440."""
    length = max(len(a), len(b))
    pa, pb = _pad(a, length), _pad(b, length)
    return (pa > pb) - (pa < pb)


def unconfigured_client_compat() -> Finding:
    """readiness.client_compat without gates.yaml's oldest_client_version: nothing to judge against."""
    return Finding(
        "error",
        "not configured: set thresholds.readiness.oldest_client_version in gates.yaml (the oldest client version still in use)",
        observed="no oldest_client_version",
        expected="thresholds.readiness.oldest_client_version, e.g. '1.2.0'",
    )


def judge_client_compat(observation: HttpObservation, *, oldest_client_version: str) -> Finding:
    """The oldest client in use is inside the server's clientVersions range."""
    evidence = observation.evidence()
    expected = f"clientVersions admits {oldest_client_version}"
    try:
        document = version_document(observation)
        if CLIENT_FIELD not in document:
            raise ProbeError(
                f"the version document does not publish {CLIENT_FIELD}: the target must publish its supported client range "
                '(e.g. ">=1.2.0,<2.0.0")',
                url=observation.url,
            )
        text = document[CLIENT_FIELD]
        if not isinstance(text, str):
            raise ProbeError(f'{CLIENT_FIELD} is a {type(text).__name__}, expected a range such as ">=1.2.0,<2.0.0"', url=observation.url)
        try:
            clauses = parse_specifier(text)
            oldest = parse_version(oldest_client_version)
        except ValueError as exc:
            raise ProbeError(f"{CLIENT_FIELD} {text[:80]!r} is not a version range the gate can read: {exc}", url=observation.url) from None
    except ProbeError as exc:
        return Finding("error", str(exc), observed=f"HTTP {observation.status}", expected=expected, evidence=evidence)
    violated = [str(clause) for clause in clauses if not clause.admits(oldest)]
    observed = {CLIENT_FIELD: text, "oldest_client_version": oldest_client_version}
    evidence["clauses"] = [str(clause) for clause in clauses][:_SHOWN]
    if violated:
        evidence["violated"] = violated
        return Finding(
            "failed",
            f"the oldest client in use, {oldest_client_version}, is outside the supported range {text} (fails {', '.join(violated)})",
            observed,
            expected,
            evidence,
        )
    return Finding("passed", f"the oldest client in use, {oldest_client_version}, is inside {text}", observed, expected, evidence)


# --------------------------------------------------------------------------- readiness.rollback

PartOutcome = Literal["passed", "failed", "error"]


@dataclass(frozen=True)
class Part:
    """What one of the two rollback proofs (the command, the artifact) concluded."""

    name: Literal["verify_command", "previous_artifact_url"]
    outcome: PartOutcome
    summary: str
    evidence: dict[str, Any]


def command_path(command: Sequence[str], base_dir: Path) -> list[str]:
    """``command`` with a relative program path (``./scripts/x``, ``bin/x``) taken from the target file's folder."""
    program = command[0]
    if "/" in program and not program.startswith("/"):
        program = str((base_dir / program).resolve())
    return [program, *command[1:]]


def run_verify_command(command: Sequence[str], *, limit_s: float) -> ToolRun:
    """Run the rollback dry run (no shell) for at most ``limit_s``; ProbeError when it cannot start."""
    return run_tool(command, timeout_s=limit_s)


def judge_command(run: ToolRun, *, timeout_s: float, limit_s: float) -> Part:
    """Exit 0 within the timeout: ready. ``limit_s`` < ``timeout_s`` when the run's deadline was nearer."""
    evidence = {**run.evidence(), "timeout_s": timeout_s}
    if run.stopped:
        if limit_s < timeout_s:
            return Part(
                "verify_command",
                "error",
                f"verify_command stopped after {run.elapsed_s:.1f} s by the run's deadline, before its timeout_s of {timeout_s:g} s",
                evidence,
            )
        return Part("verify_command", "failed", f"verify_command did not finish within its timeout_s of {timeout_s:g} s", evidence)
    if run.returncode != 0:
        return Part("verify_command", "failed", f"verify_command exited {run.returncode}: {_last_line(run)}", evidence)
    return Part("verify_command", "passed", f"verify_command exited 0 in {run.elapsed_s:.1f} s", evidence)


def _last_line(run: ToolRun) -> str:
    for stream in (run.stderr, run.stdout):
        for line in reversed(stream.decode("utf-8", "replace").splitlines()):
            if line.strip():
                return line.strip()[:300]
    return "no output"


def command_problem(command: Sequence[str], problem: str) -> Part:
    """The command could not even start (not found, not executable)."""
    return Part("verify_command", "error", f"verify_command could not run: {problem}", {"command": " ".join(command)})


@dataclass(frozen=True)
class Hop:
    """One request of the artifact probe (a redirect makes several)."""

    method: str
    url: str
    status: int
    latency_ms: float
    token_sent: bool
    location: str | None = None

    def evidence(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "request": f"{self.method} {self.url}",
            "status": self.status,
            "latency_ms": round(self.latency_ms, 1),
            "token_sent": self.token_sent,
        }
        if self.location is not None:
            record["location"] = self.location[:300]
        return record


def probe_artifact(url: str, settings: HttpSettings, *, token: str | None, base_url: str, ws_url: str | None) -> list[Hop]:
    """HEAD (or GET where HEAD is refused) ``url``, following up to MAX_REDIRECTS redirects by hand.

    The token goes only where :func:`token_allowed` lets it (the target's own origins, never in
    clear beyond loopback), so a redirect to a storage host never carries it. ProbeError when
    nothing was answered. ``settings.headers`` are not sent: the token is passed explicitly.
    """
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(_artifact_hops(url, settings, token=token, base_url=base_url, ws_url=ws_url))
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


async def _artifact_hops(url: str, settings: HttpSettings, *, token: str | None, base_url: str, ws_url: str | None) -> list[Hop]:
    bounded = HttpSettings(
        timeout_s=settings.timeout_s, max_body_bytes=min(settings.max_body_bytes, ARTIFACT_BODY_BYTES), verify=settings.verify
    )
    hops: list[Hop] = []
    current = url
    async with ApiClient(url, bounded) as api:
        for _ in range(MAX_REDIRECTS + 1):
            allowed = token is not None and token_allowed(current, base_url, ws_url, explicit=False) is None
            sent = token if allowed else None
            try:
                answer = await api.request("HEAD", current, token=sent)
                if answer.status in (405, 501):  # HEAD not offered: a bounded GET instead
                    answer = await api.request("GET", current, token=sent)
            except (httpx.HTTPError, OSError, ssl.SSLError) as exc:  # e.g. an unsupported URL scheme
                raise probe_error(exc, current, timeout=f"no answer within {settings.timeout_s:g} s") from None
            location = answer.headers.get("location") if 300 <= answer.status < 400 else None
            hops.append(_hop(answer, allowed, location))
            if location is None:
                break
            current = urljoin(current, location)
            if urlsplit(current).scheme not in ("http", "https"):
                break
    return hops


def _hop(answer: ApiAnswer, token_sent: bool, location: str | None) -> Hop:
    return Hop(answer.method, answer.url, answer.status, answer.latency_ms, token_sent, location)


def judge_artifact(hops: Sequence[Hop]) -> Part:
    """2xx at the end of the redirects: the previous artifact is there."""
    evidence: dict[str, Any] = {"hops": [hop.evidence() for hop in hops]}
    if not hops:
        return Part("previous_artifact_url", "error", "previous_artifact_url: no request was made", evidence)
    last = hops[-1]
    where = f"{last.method} {last.url}"
    if 200 <= last.status < 300:
        return Part("previous_artifact_url", "passed", f"the previous artifact answers HTTP {last.status} ({where})", evidence)
    if 300 <= last.status < 400:
        if last.location is None:
            reason = "redirects without a Location"
        elif len(hops) > MAX_REDIRECTS:
            reason = f"redirects more than the {MAX_REDIRECTS} times the gate follows"
        else:
            reason = f"redirects to {last.location[:100]}, which is not an http(s) URL"
        return Part("previous_artifact_url", "error", f"previous_artifact_url {reason} ({where})", evidence)
    if last.status in (401, 403, 407):
        # The artifact may well be there; the gate is not allowed to see it.
        token = "even with the target's token" if last.token_sent else "without credentials (the token is not sent there)"
        return Part(
            "previous_artifact_url",
            "error",
            f"previous_artifact_url answered HTTP {last.status} {token}: cannot tell whether it exists",
            evidence,
        )
    if last.status == 429:
        return Part("previous_artifact_url", "error", f"previous_artifact_url kept answering 429 ({where})", evidence)
    return Part("previous_artifact_url", "failed", f"the previous artifact is not available: HTTP {last.status} ({where})", evidence)


def artifact_problem(url: str, problem: str) -> Part:
    """The artifact probe got no answer at all."""
    return Part("previous_artifact_url", "error", f"previous_artifact_url could not be measured: {problem}", {"url": url})


def judge_rollback(parts: Sequence[Part]) -> Finding:
    """Every configured proof must hold: any failed -> failed, else any error -> error, else passed."""
    observed = {part.name: part.outcome for part in parts}
    expected = " and ".join(
        {"verify_command": "verify_command exits 0 within timeout_s", "previous_artifact_url": "previous_artifact_url answers 2xx"}[p.name]
        for p in parts
    )
    evidence: dict[str, Any] = {part.name: {"outcome": part.outcome, "summary": part.summary, **part.evidence} for part in parts}
    failed = [part.summary for part in parts if part.outcome == "failed"]
    if failed:
        return Finding("failed", "; ".join(failed), observed, expected, evidence)
    errors = [part.summary for part in parts if part.outcome == "error"]
    if errors:
        return Finding("error", "; ".join(errors), observed, expected, evidence)
    if not parts:
        return Finding("error", "nothing to verify: the rollback section names neither verify_command nor previous_artifact_url")
    return Finding("passed", "; ".join(part.summary for part in parts), observed, expected, evidence)
