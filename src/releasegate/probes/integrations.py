"""business.integrations: every external dependency the target lists answers and is not degraded.

An integration is either a component of the deep health document (``db:responseTime``: its
status must be pass; warn fails unless ``allow_degraded``, which makes it a warning) or a URL
that must answer 2xx or 3xx. A URL that refuses or times out fails: a dependency that does not
answer is the finding. What cannot be judged is an error: the deep health document could not
be fetched or holds no components, or the target lists components but names no ``health.deep``.

The deep document is fetched once for all component entries. :func:`judge_component`,
:func:`judge_url` and :func:`judge` are pure; :func:`measure` does the (bounded) requests.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from releasegate._exceptions import ProbeError
from releasegate.config import Integration, Target
from releasegate.probes import health
from releasegate.probes.http import HttpObservation, HttpSettings
from releasegate.probes.http import get as http_get
from releasegate.results import Finding

IntegrationStatus = Literal["ok", "degraded", "failed", "error"]
Get = Callable[[str, HttpSettings], HttpObservation]

MAX_INTEGRATIONS = 100  # entries judged per run; the rest are reported as not checked
_RANK: dict[IntegrationStatus, int] = {"ok": 0, "degraded": 1, "error": 2, "failed": 3}


@dataclass(frozen=True)
class IntegrationResult:
    """One listed dependency, judged."""

    name: str
    kind: Literal["component", "url"]
    ref: str  # the component name or the URL
    status: IntegrationStatus
    detail: str
    observed: Any = None

    def evidence(self) -> dict[str, Any]:
        return {"name": self.name, self.kind: self.ref, "status": self.status, "detail": self.detail, "observed": self.observed}

    def line(self) -> str:
        return f"{self.name} ({self.ref}): {self.detail}"


@dataclass(frozen=True)
class DeepHealth:
    """The deep health document as the component entries see it, or why there is none."""

    url: str | None
    document: health.HealthDocument | None = None
    values: Mapping[str, str] = dataclasses.field(default_factory=dict)  # component -> "99 percent"
    problem: str | None = None  # why the components cannot be seen


def judge_component(entry: Integration, deep: DeepHealth) -> IntegrationResult:
    """A component entry against the deep health document."""
    component = entry.component or ""

    def result(status: IntegrationStatus, detail: str, observed: Any = None) -> IntegrationResult:
        return IntegrationResult(entry.name, "component", component, status, detail, observed)

    if deep.document is None:
        return result("error", deep.problem or "no deep health document")
    if deep.document.dialect == "plain":
        return result("error", f"the deep health answer ({deep.url}) is not a health document with components; cannot see {component}")
    matches = [c for c in deep.document.components if c.name == component or c.name.startswith(component + "[")]
    if not matches:
        names = ", ".join(c.name for c in deep.document.components) or "none"
        return result("failed", f"the deep health document has no component {component}; it has {names}")
    worst = max(matches, key=lambda c: ("pass", "warn", "fail").index(c.status))
    value = deep.values.get(worst.name)
    observed = {"status": worst.status, **({"value": value} if value else {})}
    said = f": {worst.output}" if worst.output else ""
    shown = f"status {worst.status}" + (f", {value}" if value else "")
    if worst.status == "pass":
        return result("ok", shown, observed)
    if worst.status == "warn":
        if entry.allow_degraded:
            return result("degraded", f"{shown}{said} (degraded, allowed by allow_degraded)", observed)
        return result("failed", f"{shown}{said} (degraded; set allow_degraded: true to accept this)", observed)
    return result("failed", f"{shown}{said}", observed)


def judge_url(entry: Integration, url: str, observation: HttpObservation | None, error: str | None = None) -> IntegrationResult:
    """A URL entry: 2xx/3xx answers; an error status or no answer at all fails."""
    if observation is None:
        return IntegrationResult(entry.name, "url", url, "failed", f"does not answer: {error or 'no answer'}", {"error": error})
    observed = {"http_status": observation.status, "latency_ms": round(observation.latency_ms, 1)}
    if 200 <= observation.status < 400:
        return IntegrationResult(entry.name, "url", url, "ok", f"HTTP {observation.status}", observed)
    reason = f" {observation.reason}" if observation.reason else ""
    return IntegrationResult(entry.name, "url", url, "failed", f"answered HTTP {observation.status}{reason}", observed)


def judge(results: Sequence[IntegrationResult], *, deep_url: str | None, not_checked: int = 0) -> Finding:
    """A failed integration fails the check; otherwise one that could not be judged makes it an error."""
    expected = "every listed integration answers and is not degraded (unless allow_degraded)"
    evidence: dict[str, Any] = {
        "samples": sum(1 for r in results if r.status != "error"),
        "deep_health": deep_url,
        "integrations": [r.evidence() for r in results],
    }
    if not_checked:
        evidence["not_checked"] = not_checked
    observed = {r.name: r.status for r in results}
    by_status = {status: [r for r in results if r.status == status] for status in _RANK}
    if not results:
        return Finding("error", "no integration was judged", observed, expected, evidence)
    if by_status["failed"]:
        return Finding("failed", "; ".join(r.line() for r in by_status["failed"]), observed, expected, evidence)
    if by_status["error"]:
        return Finding("error", "could not judge " + "; ".join(r.line() for r in by_status["error"]), observed, expected, evidence)
    if not_checked:
        summary = f"{not_checked} integrations were not checked (at most {MAX_INTEGRATIONS} per run)"
        return Finding("error", summary, observed, expected, evidence)
    names = ", ".join(r.name for r in results)
    if by_status["degraded"]:
        degraded = "; ".join(r.line() for r in by_status["degraded"])
        return Finding("warned", f"degraded but allowed: {degraded}", observed, expected, evidence)
    return Finding("passed", f"all {len(results)} integrations answer: {names}", observed, expected, evidence)


# --------------------------------------------------------------------------- probing


def resolve(target: Target, url: str) -> str:
    """An integration URL as given, or a path relative to base_url."""
    if url.startswith(("http://", "https://")):
        return url
    return target.base_url + ("" if url.startswith("/") else "/") + url


def settings_for(target: Target, url: str, settings: HttpSettings) -> HttpSettings:
    """The run's settings, without the bearer token when ``url`` is not the target's own origin.

    A dependency listed by absolute URL may be a third party's: the deployment's token is not
    theirs to see.
    """
    if _origin(url) == _origin(target.base_url):
        return settings
    headers = {k: v for k, v in settings.headers.items() if k.lower() not in ("authorization", "cookie")}
    return dataclasses.replace(settings, headers=headers)


def fetch_deep(target: Target, settings: HttpSettings, *, get: Get = http_get) -> DeepHealth:
    """The deep health document, fetched once (or why it cannot be had)."""
    path = target.health.deep if target.health is not None else None
    if path is None:
        return DeepHealth(
            url=None,
            problem="the target lists deep-health components but names no health.deep; set health.deep to the deep health path",
        )
    url = target.base_url + path
    try:
        observation = get(url, settings)
    except ProbeError as exc:
        return DeepHealth(url=url, problem=f"the deep health document ({url}) could not be fetched: {exc}")
    try:
        document = health.parse(observation)
    except ProbeError as exc:
        return DeepHealth(url=url, problem=f"the deep health answer ({url}, HTTP {observation.status}) could not be read: {exc}")
    return DeepHealth(url=url, document=document, values=observed_values(observation))


def observed_values(observation: HttpObservation) -> dict[str, str]:
    """health+json ``observedValue`` / ``observedUnit`` per component (best effort: {} when absent)."""
    try:
        data = json.loads(observation.body)
    except (ValueError, RecursionError):
        return {}
    checks = data.get("checks") if isinstance(data, dict) else None
    if not isinstance(checks, dict):
        return {}
    values: dict[str, str] = {}
    for key, entries in checks.items():
        items = entries if isinstance(entries, list) else [entries]
        if len(items) == 1 and isinstance(items[0], dict) and "observedValue" in items[0]:
            unit = items[0].get("observedUnit")
            values[str(key)] = f"{items[0]['observedValue']}{' ' + str(unit) if unit else ''}"[:100]
    return values


def measure(target: Target, settings: HttpSettings, *, get: Get = http_get) -> Finding:
    """Judge every integration the target lists (bounded: one GET per URL entry, one for the deep document)."""
    entries = target.integrations[:MAX_INTEGRATIONS]
    results: list[IntegrationResult] = []
    deep: DeepHealth | None = None
    if any(entry.component is not None for entry in entries):
        deep = fetch_deep(target, settings, get=get)
    for entry in entries:
        if entry.component is not None:
            assert deep is not None
            results.append(judge_component(entry, deep))
            continue
        url = resolve(target, entry.url or "")
        try:
            observation = get(url, settings_for(target, url, settings))
        except ProbeError as exc:
            results.append(judge_url(entry, url, None, str(exc)))
        else:
            results.append(judge_url(entry, url, observation))
    return judge(results, deep_url=deep.url if deep is not None else None, not_checked=len(target.integrations) - len(entries))


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    return parts.scheme, parts.hostname, parts.port or default
