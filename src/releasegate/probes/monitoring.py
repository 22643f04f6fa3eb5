"""Monitoring family: is the deployment watched? Scrape targets and alerting rules in Prometheus.

Through the target's Prometheus HTTP API (``prometheus.url``), with bounded GETs
(:func:`releasegate.probes.http.get`: probe timeout, body cap), never the target's token:

- **infra.monitoring.targets**: ``/api/v1/targets?state=active&scrapePool=<job>`` for every job
  of gates.yaml ``thresholds.monitoring.jobs`` (a scrape job's ``job_name``): the job has at
  least one active target and every one is ``up``. A down target is listed with its
  ``lastError``; a target not scraped yet (``unknown``) cannot be judged (error).
- **infra.monitoring.alert_rules**: ``/api/v1/rules?type=alert``: every name of
  ``thresholds.monitoring.alert_rules`` is a loaded alerting rule; each one's state (inactive,
  pending, firing) and health are reported, and a rule whose evaluation fails (health ``err``)
  fails the check: it would never fire.

``read_*`` do the I/O and raise :class:`~releasegate.ProbeError` when nothing could be read;
``parse_*`` and ``judge_*`` are pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from releasegate._exceptions import ProbeError
from releasegate.probes import prometheus
from releasegate.probes.http import HttpSettings, get
from releasegate.results import Finding

_ERROR_CHARS = 300
_SHOWN = 20


@dataclass(frozen=True)
class ScrapeTarget:
    """One active target of a scrape job, as Prometheus last scraped it."""

    job: str  # the job label
    scrape_pool: str  # the scrape config's job_name
    instance: str
    scrape_url: str
    health: str  # up | down | unknown
    last_error: str
    last_scrape: str

    def evidence(self) -> dict[str, Any]:
        record = {"instance": self.instance, "scrape_url": self.scrape_url, "health": self.health, "last_scrape": self.last_scrape}
        if self.last_error:
            record["last_error"] = self.last_error
        return record


@dataclass(frozen=True)
class AlertRule:
    """One loaded alerting rule."""

    name: str
    group: str
    file: str
    state: str  # inactive | pending | firing
    health: str  # ok | err | unknown
    last_error: str

    def evidence(self) -> dict[str, Any]:
        record = {"group": self.group, "file": self.file, "state": self.state, "health": self.health}
        if self.last_error:
            record["last_error"] = self.last_error
        return record


def targets_url(server: str, job: str) -> str:
    return f"{server.rstrip('/')}/api/v1/targets?{urlencode({'state': 'active', 'scrapePool': job})}"


def rules_url(server: str) -> str:
    return f"{server.rstrip('/')}/api/v1/rules?type=alert"


def api_data(status: int, body: bytes, *, truncated: bool) -> Any:
    """The ``data`` of a Prometheus API answer (targets, rules); ProbeError for anything but ``status: success``."""
    return prometheus.api_data(status, body, truncated=truncated, too_big="raise probe.max_body_bytes in gates.yaml")


def parse_targets(status: int, body: bytes, *, truncated: bool = False) -> list[ScrapeTarget]:
    """The active targets of a /api/v1/targets answer."""
    data = api_data(status, body, truncated=truncated)
    active = data.get("activeTargets") if isinstance(data, dict) else None
    if not isinstance(active, list):
        raise ProbeError("the targets answer has no activeTargets list")
    found = []
    for entry in active:
        if not isinstance(entry, dict):
            raise ProbeError("an active target is not a JSON object")
        raw_labels = entry.get("labels")
        labels: dict[str, Any] = raw_labels if isinstance(raw_labels, dict) else {}
        found.append(
            ScrapeTarget(
                job=_text(labels.get("job")),
                scrape_pool=_text(entry.get("scrapePool")),
                instance=_text(labels.get("instance")) or _text(entry.get("scrapeUrl")),
                scrape_url=_text(entry.get("scrapeUrl")),
                health=_text(entry.get("health")) or "unknown",
                last_error=_text(entry.get("lastError"))[:_ERROR_CHARS],
                last_scrape=_text(entry.get("lastScrape")),
            )
        )
    return found


def parse_alert_rules(status: int, body: bytes, *, truncated: bool = False) -> list[AlertRule]:
    """The alerting rules of a /api/v1/rules answer (recording rules left out)."""
    data = api_data(status, body, truncated=truncated)
    groups = data.get("groups") if isinstance(data, dict) else None
    if not isinstance(groups, list):
        raise ProbeError("the rules answer has no groups list")
    rules = []
    for group in groups:
        if not isinstance(group, dict) or not isinstance(group.get("rules"), list):
            raise ProbeError("a rule group has no rules list")
        for rule in group["rules"]:
            if not isinstance(rule, dict) or rule.get("type", "alerting") != "alerting":
                continue
            rules.append(
                AlertRule(
                    name=_text(rule.get("name")),
                    group=_text(group.get("name")),
                    file=_text(group.get("file")),
                    state=_text(rule.get("state")) or "unknown",
                    health=_text(rule.get("health")) or "unknown",
                    last_error=_text(rule.get("lastError"))[:_ERROR_CHARS],
                )
            )
    return rules


def read_targets(server: str, job: str, settings: HttpSettings) -> list[ScrapeTarget]:
    """The active targets of scrape job ``job``; ProbeError when Prometheus could not be read."""
    url = targets_url(server, job)
    answer = get(url, settings)
    try:
        found = parse_targets(answer.status, answer.body, truncated=answer.truncated)
    except ProbeError as exc:
        raise ProbeError(str(exc), url=url) from None
    # A Prometheus older than 2.42 ignores scrapePool and answers every target: keep the job's.
    return [target for target in found if job in (target.scrape_pool, target.job)]


def read_alert_rules(server: str, settings: HttpSettings) -> list[AlertRule]:
    """Every loaded alerting rule; ProbeError when Prometheus could not be read."""
    url = rules_url(server)
    answer = get(url, settings)
    try:
        return parse_alert_rules(answer.status, answer.body, truncated=answer.truncated)
    except ProbeError as exc:
        raise ProbeError(str(exc), url=url) from None


def judge_targets(jobs: Sequence[str], found: Mapping[str, Sequence[ScrapeTarget]], *, server: str) -> Finding:
    """Every job has active targets, all up. Down -> failed; only not-yet-scraped -> error."""
    expected = "every job in thresholds.monitoring.jobs has >= 1 active target, all up"
    per_job: dict[str, Any] = {}
    empty, down, unknown = [], [], []
    for job in jobs:
        targets = found.get(job, ())
        counts = {state: sum(1 for t in targets if t.health == state) for state in ("up", "down", "unknown")}
        per_job[job] = {**counts, "targets": [t.evidence() for t in targets[:_SHOWN]]}
        if not targets:
            empty.append(job)
        down += [(job, t) for t in targets if t.health == "down"]
        unknown += [(job, t) for t in targets if t.health not in ("up", "down")]
    observed = {job: f"{info['up']}/{len(found.get(job, ()))} up" for job, info in per_job.items()}
    evidence: dict[str, Any] = {"prometheus": server, "jobs": per_job}
    problems = []
    if empty:
        problems.append(f"no active targets for job{'s' if len(empty) > 1 else ''} {', '.join(empty)} (is it in scrape_configs?)")
    if down:
        shown = "; ".join(f"{job} {t.instance} down: {t.last_error or 'no error text'}" for job, t in down[:5])
        problems.append(shown + (f"; and {len(down) - 5} more down" if len(down) > 5 else ""))
    if problems:
        return Finding("failed", "; ".join(problems), observed, expected, evidence)
    if unknown:
        names = ", ".join(f"{job} {t.instance}" for job, t in unknown[:5])
        return Finding("error", f"not scraped yet (health unknown): {names}; cannot tell whether they are up", observed, expected, evidence)
    total = sum(len(found.get(job, ())) for job in jobs)
    jobs_text = f"{len(jobs)} job{'s' if len(jobs) > 1 else ''}"
    return Finding("passed", f"{jobs_text}, {total} target{'s' if total > 1 else ''}, all up", observed, expected, evidence)


def judge_alert_rules(names: Sequence[str], rules: Sequence[AlertRule], *, server: str) -> Finding:
    """Every named alerting rule is loaded and evaluates (health not err)."""
    expected = "every rule in thresholds.monitoring.alert_rules loaded, health not err"
    by_name: dict[str, list[AlertRule]] = {}
    for rule in rules:
        by_name.setdefault(rule.name, []).append(rule)
    missing = [name for name in names if name not in by_name]
    broken = [rule for name in names for rule in by_name.get(name, []) if rule.health == "err"]
    observed = {
        name: ", ".join(f"{rule.state}/{rule.health}" for rule in by_name[name]) if name in by_name else "not loaded" for name in names
    }
    evidence: dict[str, Any] = {
        "prometheus": server,
        "rules": {name: [rule.evidence() for rule in by_name.get(name, [])] for name in names},
        "loaded_alert_rules": len(rules),
    }
    problems = []
    if missing:
        problems.append(f"not loaded: {', '.join(missing)}")
    if broken:
        problems.append("; ".join(f"{rule.name} ({rule.group}) fails to evaluate: {rule.last_error or 'no error text'}" for rule in broken))
    if problems:
        return Finding("failed", "; ".join(problems), observed, expected, evidence)
    firing = sorted({name for name in names for rule in by_name[name] if rule.state == "firing"})
    note = f"; firing now: {', '.join(firing)}" if firing else ""
    return Finding("passed", f"{len(names)} alert rule{'s' if len(names) > 1 else ''} loaded{note}", observed, expected, evidence)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))
