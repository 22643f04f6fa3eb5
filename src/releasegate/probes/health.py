"""Health family: liveness, readiness, deep health and release identity.

Three dialects are read into one model (pass / warn / fail plus components):
- ``application/health+json`` (draft-inadarei-api-health-check-06): ``status`` pass|warn|fail
  (aliases ok/up, error/down), ``checks`` mapping "component:measurement" to a list of objects;
- Spring Boot actuator: ``status`` UP|DOWN|OUT_OF_SERVICE|UNKNOWN, nested ``components``;
- plain: the HTTP status alone (2xx pass, anything else fail).
The judge functions are pure: an :class:`HttpObservation` in, a :class:`Finding` out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from releasegate._exceptions import ProbeError
from releasegate.probes.http import HttpObservation
from releasegate.results import Finding

HealthStatus = Literal["pass", "warn", "fail"]
Dialect = Literal["health+json", "spring", "plain"]

_IETF_STATUS: dict[str, HealthStatus] = {
    "pass": "pass",
    "ok": "pass",
    "up": "pass",
    "warn": "warn",
    "fail": "fail",
    "error": "fail",
    "down": "fail",
}
_SPRING_STATUS: dict[str, HealthStatus] = {"UP": "pass", "UNKNOWN": "warn", "DOWN": "fail", "OUT_OF_SERVICE": "fail"}
_RANK: dict[HealthStatus, int] = {"pass": 0, "warn": 1, "fail": 2}
_JSON_TYPES = (
    "application/health+json",
    "application/json",
    "application/vnd.spring-boot.actuator.v3+json",
    "application/vnd.spring-boot.actuator.v2+json",
)


@dataclass(frozen=True)
class Component:
    name: str
    status: HealthStatus
    output: str = ""


@dataclass(frozen=True)
class HealthDocument:
    dialect: Dialect
    status: HealthStatus
    components: tuple[Component, ...] = ()
    version: str | None = None
    release_id: str | None = None

    def worst_component(self) -> HealthStatus:
        return max((c.status for c in self.components), key=_RANK.__getitem__, default="pass")


def parse(observation: HttpObservation) -> HealthDocument:
    """Read a health answer in any supported dialect; ProbeError when the body cannot be read."""
    http_status: HealthStatus = "pass" if 200 <= observation.status < 300 else "fail"
    if not _looks_json(observation):
        return HealthDocument(dialect="plain", status=http_status)  # the body is not read, so its size does not matter
    if observation.truncated:
        raise ProbeError(
            f"health answer larger than {len(observation.body)} bytes; refusing to judge a truncated body", url=observation.url
        )
    data = _json(observation)
    if isinstance(data, dict) and "status" not in data:
        # JSON, but no health dialect ({"alive": true}): the HTTP status is the verdict.
        return HealthDocument(dialect="plain", status=http_status)
    if not isinstance(data, dict):
        raise ProbeError(f"{observation.content_type} body is not a JSON object", url=observation.url)
    raw = data["status"]
    if not isinstance(raw, str):
        raise ProbeError(f"'status' is {type(raw).__name__}, expected a string", url=observation.url)
    # health+json allows Spring's "UP"/"DOWN" as aliases: a document with "checks" is health+json whatever its status word.
    if raw in _SPRING_STATUS and "checks" not in data:
        return HealthDocument(
            dialect="spring", status=_SPRING_STATUS[raw], components=tuple(_spring_components(data.get("components"), ""))
        )
    if raw.lower() in _IETF_STATUS:
        return HealthDocument(
            dialect="health+json",
            status=_IETF_STATUS[raw.lower()],
            components=tuple(_ietf_components(data.get("checks"), observation.url)),
            version=_text(data.get("version")),
            release_id=_text(data.get("releaseId")),
        )
    raise ProbeError(f"unknown health status {raw!r} (expected pass/warn/fail or UP/DOWN/OUT_OF_SERVICE/UNKNOWN)", url=observation.url)


def judge_endpoint(observation: HttpObservation, *, max_latency_ms: float | None) -> Finding:
    """Liveness/readiness: 2xx, a body that does not say fail, within the latency budget."""
    evidence = observation.evidence()
    expected = "HTTP 2xx" + (f" within {max_latency_ms:g} ms" if max_latency_ms is not None else "")
    ok_status = 200 <= observation.status < 300
    body_status: HealthStatus | None = None
    try:
        document = parse(observation)
        body_status = document.status if document.dialect != "plain" else None
    except ProbeError as exc:
        if ok_status:
            return Finding("error", str(exc), observed=f"HTTP {observation.status}", expected=expected, evidence=evidence)
        # A non-2xx answer fails on its status code alone; an unreadable body does not make it "could not judge".
    observed = f"HTTP {observation.status} in {observation.latency_ms:.0f} ms" + (f", status {body_status}" if body_status else "")
    if not ok_status:
        where = f" -> {observation.headers['location']}" if 300 <= observation.status < 400 and "location" in observation.headers else ""
        return Finding("failed", f"answered HTTP {observation.status} {observation.reason}{where}", observed, expected, evidence)
    if body_status == "fail":
        return Finding("failed", "HTTP 2xx but the body says fail", observed, expected, evidence)
    if max_latency_ms is not None and observation.latency_ms > max_latency_ms:
        return Finding(
            "failed", f"answered in {observation.latency_ms:.0f} ms, over the {max_latency_ms:g} ms budget", observed, expected, evidence
        )
    if body_status == "warn":
        return Finding("warned", "answered but reports warn", observed, expected, evidence)
    return Finding("passed", f"HTTP {observation.status} in {observation.latency_ms:.0f} ms", observed, expected, evidence)


def judge_deep(observation: HttpObservation) -> Finding:
    """Deep health: every component passes; a warn component warns, a fail component fails."""
    evidence = observation.evidence()
    expected = "status pass and every component pass"
    try:
        document = parse(observation)
    except ProbeError as exc:
        return Finding("error", str(exc), observed=f"HTTP {observation.status}", expected=expected, evidence=evidence)
    if document.dialect == "plain":
        return _judge_plain_deep(observation, expected, evidence)
    evidence["components"] = {c.name: c.status for c in document.components}
    failed = [c for c in document.components if c.status == "fail"]
    warned = [c for c in document.components if c.status == "warn"]
    observed = {"status": document.status, "http_status": observation.status, **evidence["components"]}
    if failed or document.status == "fail" or not 200 <= observation.status < 300:
        names = ", ".join(_describe(c) for c in failed) or f"overall status {document.status}, HTTP {observation.status}"
        return Finding("failed", f"failing: {names}", observed, expected, evidence)
    if warned or document.status == "warn":
        names = ", ".join(_describe(c) for c in warned) or "overall status warn"
        return Finding("warned", f"degraded: {names}", observed, expected, evidence)
    return Finding("passed", f"{document.dialect}: status pass, {len(document.components)} components pass", observed, expected, evidence)


def _judge_plain_deep(observation: HttpObservation, expected: str, evidence: dict[str, Any]) -> Finding:
    """A deep endpoint without a health document: judged by its HTTP status, as Kubernetes would."""
    observed = f"HTTP {observation.status} {observation.content_type or ''}".strip()
    if not 200 <= observation.status < 300:
        return Finding(
            "failed", f"answered HTTP {observation.status} {observation.reason} (no health document)", observed, expected, evidence
        )
    if observation.content_type == "text/html" or _looks_json(observation):
        # A 200 HTML page (a proxy's or router's page) or JSON without a health status (the wrong
        # endpoint) where a health document belongs is not the service's word on its health.
        return Finding(
            "error",
            f"{observation.content_type} without a health status where a health document was expected: "
            "cannot tell whether the service is healthy",
            observed,
            expected,
            evidence,
        )
    return Finding("passed", f"HTTP {observation.status} (no health document, no component detail)", observed, expected, evidence)


def judge_release(observation: HttpObservation, expected_release: str) -> Finding:
    """The deployed releaseId (or version) equals the expected release."""
    evidence = observation.evidence()
    if not 200 <= observation.status < 300:
        return Finding(
            "error",
            f"cannot read the release: HTTP {observation.status}",
            observed=f"HTTP {observation.status}",
            expected=expected_release,
            evidence=evidence,
        )
    try:
        published = _release_fields(observation)
    except ProbeError as exc:
        return Finding("error", str(exc), expected=expected_release, evidence=evidence)
    if not published:
        return Finding("error", "the answer names no version or releaseId", observed=None, expected=expected_release, evidence=evidence)
    evidence["published"] = published
    if expected_release in published.values():
        return Finding(
            "passed", f"release {expected_release} is deployed", observed=published, expected=expected_release, evidence=evidence
        )
    shown = published.get("releaseId") or published.get("release_id") or next(iter(published.values()))
    return Finding(
        "failed",
        f"deployed release is {shown}, expected {expected_release}",
        observed=published,
        expected=expected_release,
        evidence=evidence,
    )


def _release_fields(observation: HttpObservation) -> dict[str, str]:
    """version/releaseId from a JSON document, or the first line of a plain-text answer."""
    if observation.content_type == "text/plain":
        line = observation.body.decode("utf-8", errors="replace").strip().splitlines()
        return {"version": line[0].strip()[:200]} if line and line[0].strip() else {}
    data = _json(observation)
    if not isinstance(data, dict):
        raise ProbeError("version answer is not a JSON object", url=observation.url)
    fields = {}
    for key in ("releaseId", "release_id", "release", "version"):
        value = _text(data.get(key))
        if value:
            fields[key] = value
    build = data.get("build")
    if isinstance(build, dict) and _text(build.get("version")):  # Spring actuator /info
        fields["build.version"] = str(_text(build.get("version")))
    return fields


def _looks_json(observation: HttpObservation) -> bool:
    return observation.content_type in _JSON_TYPES or observation.content_type.endswith("+json")


def _json(observation: HttpObservation) -> Any:
    try:
        text = observation.body.decode("utf-8")
    except UnicodeDecodeError:
        raise ProbeError("body is not valid UTF-8", url=observation.url) from None
    try:
        return json.loads(text)
    except RecursionError:
        raise ProbeError("JSON nested too deeply to judge", url=observation.url) from None
    except ValueError as exc:
        raise ProbeError(f"body is not valid JSON ({exc.__class__.__name__}: {str(exc)[:80]})", url=observation.url) from None


def _ietf_components(checks: Any, url: str) -> list[Component]:
    if checks is None:
        return []
    if not isinstance(checks, dict):
        raise ProbeError("'checks' must be an object of component:measurement -> list", url=url)
    components = []
    for key, entries in checks.items():
        items = entries if isinstance(entries, list) else [entries]
        for index, entry in enumerate(items):
            if not isinstance(entry, dict) or not isinstance(entry.get("status"), str):
                raise ProbeError(f"checks[{key!r}][{index}] has no string 'status'", url=url)
            status = _IETF_STATUS.get(entry["status"].lower())
            if status is None:
                raise ProbeError(f"checks[{key!r}][{index}] has unknown status {entry['status']!r}", url=url)
            name = str(key) if len(items) == 1 else f"{key}[{entry.get('componentId', index)}]"
            components.append(Component(name=name, status=status, output=str(entry.get("output", ""))[:200]))
    return components


def _spring_components(components: Any, prefix: str) -> list[Component]:
    if not isinstance(components, dict):
        return []
    out = []
    for name, body in components.items():
        if not isinstance(body, dict):
            continue
        full = f"{prefix}{name}"
        status = _SPRING_STATUS.get(str(body.get("status")), "warn")
        nested = _spring_components(body.get("components"), f"{full}.")
        out.extend(nested or [Component(name=full, status=status, output=str(body.get("details", ""))[:200])])
    return out


def _describe(component: Component) -> str:
    return f"{component.name} ({component.status}{': ' + component.output if component.output else ''})"


def _text(value: Any) -> str | None:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value).strip():
        return str(value).strip()
    return None
