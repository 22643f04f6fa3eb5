"""infra.capacity: what the service used under a load profile, against the deployment guide's sizing rules.

Two halves, as everywhere in releasegate:

- **Snapshots** (I/O): :func:`snapshot` reads the service's own Prometheus text (``/metrics``)
  with one bounded GET; :func:`snapshot_prometheus` asks a Prometheus server the same questions
  with instant queries. :func:`snapshot_target` picks the source a target names. Each gives a
  :class:`ResourceSnapshot` of cumulative figures (CPU seconds, bytes sent) and current ones
  (resident memory, pool use); a figure the metrics lack is None, never 0.
- **Judgement** (pure): :func:`judge_capacity` takes the snapshots taken just before and just
  after the load, the load's own figures (duration, concurrent conversations, active users,
  p95) and gates.yaml's ``load.capacity`` rules, and returns one :class:`~releasegate.results.Finding`.

The rules (deployment guide; defaults in gates.yaml ``load.capacity``), all per replica:

- cores per 10 conversations: ΔCPU seconds / duration, per 10 concurrent conversations, at most
  ``max_cores_per_10_conversations``;
- memory: resident bytes after the load, at most ``base_memory_gb`` + conversations ×
  ``max_memory_mb_per_conversation``;
- bandwidth: Δresponse bytes / duration / active users, at most ``max_kb_per_s_per_user`` KB/s;
- scaling triggers: CPU (cores used / cores available) over ``scale_at_cpu_percent``, the pool
  over ``scale_at_pool_percent`` in use, the load's HTTP p95 over the SLA (gates.yaml ``load``
  ``http_p95_ms``).

Choices worth knowing:

- *Cores available per replica* is not something the metrics tell: the host's core count is not
  the service's (a container's CPU limit, a Python process bound to one core by its GIL). The
  judge takes it as ``cores_per_replica`` (the target's ``load.cores_per_replica``: the replica's
  CPU request or limit; default 1.0, the unit the guide sizes in), so the CPU trigger reads like
  Kubernetes' CPU utilisation against the replica's CPU request.
- Figures are divided by the number of processes they cover (``/metrics``: one; Prometheus: as
  many series as match the selector) and the load by ``replicas`` (target ``load.replicas``):
  the cost of a conversation is per process, the conversations per replica.
- Memory: the guide budgets a base plus a share per conversation, so the resident size after the
  run is judged against that budget; the growth during the run divided by the conversations
  (reported as MB per conversation) is a lower bound of a conversation's footprint, since
  memory allocated earlier is reused.
- The pool trigger prefers a slot-seconds counter (its rate is the mean number in use, by
  Little's law); with only a gauge it reads the use at the two snapshots, which is a lower bound.
- Headroom is the number of further conversations a replica takes, at the measured cost per
  conversation, before the first scaling trigger (CPU, pool) or the memory budget is reached;
  recommended replicas for a size are ``ceil(size / conversations per replica)``.

A metric the source lacks (CPU seconds, resident memory, bytes sent) makes the finding
``error`` naming it: could not judge, never passed. The pool and latency triggers are judged
when measured and reported as not measured otherwise (many services export no pool gauge).
"""

from __future__ import annotations

import dataclasses
import math
import re
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from prometheus_client.parser import text_string_to_metric_families

from releasegate._exceptions import ProbeError
from releasegate.config import CapacityRules, LoadedTarget, LoadPolicy, LoadThreshold
from releasegate.probes import prometheus
from releasegate.probes.http import HttpSettings, get, ssl_context
from releasegate.results import Finding

if TYPE_CHECKING:
    from releasegate.load.results import LoadSummary

__all__ = [
    "BYTES_SENT_METRICS",
    "CPU_METRIC",
    "POOL_METRICS",
    "RESIDENT_METRIC",
    "ResourceSnapshot",
    "judge_capacity",
    "metrics_url",
    "parse_metrics",
    "sla_p95_ms",
    "snapshot",
    "snapshot_prometheus",
    "snapshot_target",
]

CPU_METRIC = "process_cpu_seconds_total"
RESIDENT_METRIC = "process_resident_memory_bytes"
# Response bytes, in order of preference: the reference's counter, then the sum of the response
# size histogram most HTTP instrumentations export (prometheus-fastapi-instrumentator, ...).
BYTES_SENT_METRICS = ("http_response_bytes_total", "http_response_size_bytes_sum")
# (in use, size, slot-seconds counter or None): the first pair a service exports is its "pool".
POOL_METRICS: tuple[tuple[str, str, str | None], ...] = (
    ("api_requests_in_flight", "api_requests_in_flight_limit", "api_requests_in_flight_seconds_total"),
    ("db_pool_connections_in_use", "db_pool_connections_max", None),
    ("hikaricp_connections_active", "hikaricp_connections_max", None),
)
GIB = 1024**3
MIB = 1024**2
# The metrics page is text; a service with thousands of series still stays far below this.
_ACCEPT = "text/plain; version=0.0.4"


@dataclass(frozen=True)
class ResourceSnapshot:
    """A service's resource figures at one moment; None where its metrics lack one.

    Counters (``cpu_seconds``, ``bytes_sent``, ``pool_busy_seconds``) are cumulative: only the
    difference between two snapshots means something. Each figure sums over ``processes``
    processes (replicas) of the service.
    """

    at_monotonic: float
    cpu_seconds: float | None
    resident_bytes: float | None
    bytes_sent: float | None
    pool_in_use: float | None
    pool_size: float | None
    # Slot-seconds the pool was in use (a counter); its rate is the mean number in use.
    pool_busy_seconds: float | None = None
    processes: int = 1
    # Where the figures came from (a URL, or "prometheus <url> {selector}"), for the evidence.
    source: str = ""
    # Wall-clock time of the samples when the source says (Prometheus: its last scrape), so
    # counter differences are divided by the time they really span.
    sampled_at: float | None = None
    # The metric names read for bytes sent and the pool, and why a figure is missing.
    names: Mapping[str, str] = dataclasses.field(default_factory=dict)
    problems: tuple[str, ...] = ()

    def evidence(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "source": self.source,
            "cpu_seconds": self.cpu_seconds,
            "resident_bytes": self.resident_bytes,
            "bytes_sent": self.bytes_sent,
            "pool_in_use": self.pool_in_use,
            "pool_size": self.pool_size,
            "pool_busy_seconds": self.pool_busy_seconds,
            "processes": self.processes,
            "metric_names": dict(self.names),
        }
        if self.sampled_at is not None:
            record["sampled_at"] = self.sampled_at
        if self.problems:
            record["problems"] = list(self.problems)
        return record


# --------------------------------------------------------------------------- snapshots (I/O)


def parse_metrics(text: str) -> dict[str, float]:
    """Every sample name of a Prometheus text page with its value summed over all label sets.

    Raises ProbeError when the text is not the Prometheus format.
    """
    totals: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                totals[sample.name] = totals.get(sample.name, 0.0) + float(sample.value)
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise ProbeError(f"not the Prometheus text format: {exc}") from None
    return totals


def _from_totals(totals: Mapping[str, float], *, at: float, source: str) -> ResourceSnapshot:
    names: dict[str, str] = {}
    problems: list[str] = []
    bytes_name = next((name for name in BYTES_SENT_METRICS if name in totals), None)
    if bytes_name is not None:
        names["bytes_sent"] = bytes_name
    pool = next(((used, size, busy) for used, size, busy in POOL_METRICS if used in totals and size in totals), None)
    if pool is not None:
        names["pool_in_use"], names["pool_size"] = pool[0], pool[1]
        if pool[2] is not None and pool[2] in totals:
            names["pool_busy_seconds"] = pool[2]
    for field, name in (("cpu_seconds", CPU_METRIC), ("resident_bytes", RESIDENT_METRIC)):
        if name not in totals:
            problems.append(f"{field}: no {name} in the metrics")
    if bytes_name is None:
        problems.append(f"bytes_sent: none of {', '.join(BYTES_SENT_METRICS)} in the metrics")
    return ResourceSnapshot(
        at_monotonic=at,
        cpu_seconds=totals.get(CPU_METRIC),
        resident_bytes=totals.get(RESIDENT_METRIC),
        bytes_sent=totals[bytes_name] if bytes_name else None,
        pool_in_use=totals[pool[0]] if pool else None,
        pool_size=totals[pool[1]] if pool else None,
        pool_busy_seconds=totals[names["pool_busy_seconds"]] if "pool_busy_seconds" in names else None,
        processes=1,
        source=source,
        names=names,
        problems=tuple(problems),
    )


def snapshot(url: str, settings: HttpSettings, *, clock: Callable[[], float] = time.monotonic) -> ResourceSnapshot:
    """The figures of the Prometheus text page at ``url`` (one bounded GET); ProbeError when it cannot be read.

    A page without some of the metrics is still a snapshot: the missing figures are None and
    ``problems`` says which; only the judgement decides whether that matters.
    """
    headers = {**settings.headers, "Accept": _ACCEPT}
    answer = get(url, dataclasses.replace(settings, headers=headers))
    at = clock()
    if answer.status != 200:
        raise ProbeError(f"metrics answered HTTP {answer.status} {answer.reason}, expected 200", url=url)
    if answer.truncated:
        raise ProbeError(f"the metrics page is larger than {settings.max_body_bytes} bytes (probe.max_body_bytes)", url=url)
    try:
        text = answer.body.decode("utf-8")
    except UnicodeDecodeError:
        raise ProbeError("the metrics page is not UTF-8 text", url=url) from None
    try:
        totals = parse_metrics(text)
    except ProbeError as exc:
        raise ProbeError(str(exc), url=url) from None
    if not totals:
        raise ProbeError("the metrics page holds no samples", url=url)
    return _from_totals(totals, at=at, source=url)


def _selected(metric: str, selector: str) -> str:
    return f"{metric}{{{selector}}}"


def snapshot_prometheus(
    server: str, selector: str, settings: HttpSettings, *, clock: Callable[[], float] = time.monotonic
) -> ResourceSnapshot:
    """The same figures from a Prometheus server: instant queries summed over the selector's series.

    Counters are as of each series' last scrape; ``sampled_at`` is that scrape's time, so a run
    should last several scrape intervals. ProbeError when Prometheus answers none of the queries.
    """
    readings: dict[str, prometheus.PromReading] = {}

    def ask(key: str, query: str) -> float | None:
        readings[key] = prometheus.read(server, query, settings)
        return readings[key].value

    cpu = ask("cpu_seconds", f"sum({_selected(CPU_METRIC, selector)})")
    at = clock()
    processes = ask("processes", f"count({_selected(CPU_METRIC, selector)})")
    sampled_at = ask("sampled_at", f"max(timestamp({_selected(CPU_METRIC, selector)}))")
    resident = ask("resident_bytes", f"sum({_selected(RESIDENT_METRIC, selector)})")
    names: dict[str, str] = {}
    sent: float | None = None
    for name in BYTES_SENT_METRICS:
        sent = ask("bytes_sent", f"sum({_selected(name, selector)})")
        if sent is not None:
            names["bytes_sent"] = name
            break
    in_use = size = busy = None
    for used_name, size_name, busy_name in POOL_METRICS:
        in_use = ask("pool_in_use", f"sum({_selected(used_name, selector)})")
        if in_use is None:
            continue
        size = ask("pool_size", f"sum({_selected(size_name, selector)})")
        names["pool_in_use"], names["pool_size"] = used_name, size_name
        if busy_name is not None:
            busy = ask("pool_busy_seconds", f"sum({_selected(busy_name, selector)})")
            if busy is not None:
                names["pool_busy_seconds"] = busy_name
        break
    required = ("cpu_seconds", "resident_bytes", "bytes_sent")
    if all(readings[key].value is None for key in required):
        raise ProbeError(f"Prometheus answered none of the capacity queries: {readings['cpu_seconds'].problem}", url=server)
    problems = tuple(f"{key}: {readings[key].problem}" for key in required if readings[key].value is None)
    return ResourceSnapshot(
        at_monotonic=at,
        cpu_seconds=cpu,
        resident_bytes=resident,
        bytes_sent=sent,
        pool_in_use=in_use,
        pool_size=size,
        pool_busy_seconds=busy,
        processes=max(1, round(processes)) if processes else 1,
        source=f"prometheus {server} {{{selector}}}",
        sampled_at=sampled_at,
        names=names,
        problems=problems,
    )


def metrics_url(loaded: LoadedTarget) -> str | None:
    """The target's ``load.metrics`` as an absolute URL (a path is relative to base_url); None when not named."""
    load = loaded.target.load
    if load is None or load.metrics is None:
        return None
    return urljoin(loaded.target.base_url.rstrip("/") + "/", load.metrics.lstrip("/")) if "://" not in load.metrics else load.metrics


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


def snapshot_target(loaded: LoadedTarget, *, timeout_s: float, max_body_bytes: int) -> ResourceSnapshot | None:
    """A snapshot from the source the target names: its ``prometheus``, else ``load.metrics``; None for neither.

    The target's bearer token goes only to a metrics URL on base_url's own origin (a metrics
    endpoint behind the same auth); never to Prometheus or another host.
    """
    target = loaded.target
    server = target.prometheus
    if server is not None:
        verify: ssl.SSLContext | bool = ssl_context(loaded.ca_bundle) if server.url.startswith("https:") else True
        settings = HttpSettings(timeout_s=timeout_s, max_body_bytes=max_body_bytes, verify=verify)
        return snapshot_prometheus(server.url, server.selector, settings)
    url = metrics_url(loaded)
    if url is None:
        return None
    token = loaded.token()
    same_origin = _origin(url) == _origin(target.base_url)
    headers = {"Authorization": f"Bearer {token}"} if token and same_origin else {}
    verify = ssl_context(loaded.ca_bundle) if url.startswith("https:") else True
    return snapshot(url, HttpSettings(timeout_s=timeout_s, max_body_bytes=max_body_bytes, verify=verify, headers=headers))


def sla_p95_ms(policy: LoadPolicy) -> float | None:
    """The latency SLA of the scaling trigger: the tightest global ``http_p95_ms`` upper bound in gates.yaml."""
    conditions = policy.thresholds.get("http_p95_ms")
    if conditions is None:
        return None
    bounds: list[float] = []
    for condition in conditions if isinstance(conditions, list) else [conditions]:
        text = condition.condition if isinstance(condition, LoadThreshold) else condition
        match = re.match(r"^\s*(<=|<)\s*(-?[0-9]+(?:\.[0-9]+)?)\s*$", text)
        if match:
            bounds.append(float(match.group(2)))
    return min(bounds) if bounds else None


# --------------------------------------------------------------------------- judgement (pure)


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _missing(before: ResourceSnapshot, after: ResourceSnapshot) -> list[str]:
    missing: list[str] = []
    for field, metric in (("cpu_seconds", CPU_METRIC), ("bytes_sent", " or ".join(BYTES_SENT_METRICS))):
        if getattr(before, field) is None or getattr(after, field) is None:
            missing.append(f"{field} ({metric})")
    if after.resident_bytes is None:
        missing.append(f"resident_bytes ({RESIDENT_METRIC})")
    return missing


def sizing_load(summary: LoadSummary) -> tuple[float, float]:
    """(conversations, users) to size a run's cost by: its time-weighted means.

    The CPU and bytes :func:`judge_capacity` divides are averages over the whole run, ramps
    included; dividing them by the peaks understates the cost per conversation (about 2x for a
    spike profile). The peak stands in only when a mean is missing (older results) or 0.
    """
    conversations = summary.mean_conversations or summary.concurrent_conversations
    users = summary.mean_users or summary.peak_users
    return float(conversations), float(users)


def judge_capacity(
    before: ResourceSnapshot,
    after: ResourceSnapshot,
    *,
    duration_s: float,
    concurrent_conversations: float,
    active_users: float,
    p95_ms: float | None,
    sla_p95_ms: float | None,
    rules: CapacityRules,
    replicas: int,
    cores_per_replica: float = 1.0,
) -> Finding:
    """Judge the resources used between two snapshots against the sizing rules (see the module docstring).

    ``duration_s`` is how long the load ran between the snapshots; ``concurrent_conversations``
    the simultaneous conversations (conversation and sync users), ``active_users`` the virtual
    users, each best the time-weighted mean over the run (:func:`sizing_load`); ``p95_ms`` the
    load's HTTP p95 and ``sla_p95_ms`` its objective (None: that trigger is not judged). Any rule
    exceeded -> failed; a figure that cannot be computed -> error.
    """
    source = after.source or before.source
    snapshots = {"before": before.evidence(), "after": after.evidence()}
    missing = _missing(before, after)
    if missing:
        why = "; ".join((*before.problems, *after.problems)) or "not in the metrics"
        return Finding(
            "error",
            f"could not measure {', '.join(missing)} from {source}: {why}",
            observed={"missing": missing},
            expected="process_cpu_seconds_total, process_resident_memory_bytes and response bytes in the service's metrics",
            evidence={"snapshots": snapshots},
        )
    assert before.cpu_seconds is not None and after.cpu_seconds is not None
    assert before.bytes_sent is not None and after.bytes_sent is not None and after.resident_bytes is not None
    if concurrent_conversations <= 0 or active_users <= 0:
        return Finding(
            "error",
            f"the load recorded {concurrent_conversations:g} concurrent conversations and {active_users:g} active users: "
            "nothing to size per conversation",
            observed={"concurrent_conversations": concurrent_conversations, "active_users": active_users},
            expected="a load with conversations",
            evidence={"snapshots": snapshots},
        )
    span_s, span_note = duration_s, "the load's duration"
    if before.sampled_at is not None and after.sampled_at is not None:
        span_s, span_note = after.sampled_at - before.sampled_at, "between the samples' scrape times"
    if not (span_s > 0 and math.isfinite(span_s)):
        return Finding(
            "error",
            f"no time passed {span_note} ({span_s:g} s): no new sample during the load (run longer than the scrape interval)",
            observed={"span_s": span_s},
            expected="a positive duration",
            evidence={"snapshots": snapshots},
        )
    backwards = [
        name
        for name, old, new in (
            ("cpu_seconds", before.cpu_seconds, after.cpu_seconds),
            ("bytes_sent", before.bytes_sent, after.bytes_sent),
            ("pool_busy_seconds", before.pool_busy_seconds, after.pool_busy_seconds),
        )
        if old is not None and new is not None and new < old
    ]
    if backwards:
        return Finding(
            "error",
            f"{', '.join(backwards)} went backwards during the load: the service restarted, the figures are not comparable",
            observed={"counters_reset": backwards},
            expected="counters that only grow",
            evidence={"snapshots": snapshots},
        )

    processes = max(after.processes, 1)
    conversations_per_replica = concurrent_conversations / replicas
    cores = (after.cpu_seconds - before.cpu_seconds) / span_s / processes
    cores_per_conversation = cores / conversations_per_replica
    cores_per_10 = cores_per_conversation * 10
    cpu_percent = 100.0 * cores / cores_per_replica
    resident = after.resident_bytes / processes
    memory_budget = rules.base_memory_gb * GIB + conversations_per_replica * rules.max_memory_mb_per_conversation * MIB
    mb_per_conversation: float | None = None
    if before.resident_bytes is not None:
        growth = (after.resident_bytes - before.resident_bytes) / processes
        mb_per_conversation = max(growth, 0.0) / conversations_per_replica / MIB
    kb_per_s_per_user = (after.bytes_sent - before.bytes_sent) / span_s / active_users / 1024

    pool_percent: float | None = None
    pool_in_use_per_replica: float | None = None
    pool_how = "not measured (the metrics name no pool)"
    pool_size = (after.pool_size / processes) if after.pool_size else None
    if pool_size:
        if before.pool_busy_seconds is not None and after.pool_busy_seconds is not None:
            pool_in_use_per_replica = (after.pool_busy_seconds - before.pool_busy_seconds) / span_s / processes
            pool_how = "mean in use over the load"
        elif after.pool_in_use is not None:
            readings = [x for x in (before.pool_in_use, after.pool_in_use) if x is not None]
            pool_in_use_per_replica = max(readings) / processes
            pool_how = "in use at the snapshots (a lower bound of the peak)"
        if pool_in_use_per_replica is not None:
            pool_percent = 100.0 * pool_in_use_per_replica / pool_size

    rules_table: list[dict[str, Any]] = [
        _rule("cores per 10 conversations", cores_per_10, rules.max_cores_per_10_conversations, "cores", "per replica"),
        _rule(
            "memory",
            resident / MIB,
            memory_budget / MIB,
            "MiB",
            f"resident per replica vs {rules.base_memory_gb:g} GiB + {conversations_per_replica:g} conversations × "
            f"{rules.max_memory_mb_per_conversation:g} MiB",
        ),
        _rule("bandwidth per user", kb_per_s_per_user, rules.max_kb_per_s_per_user, "KB/s", "response bytes per active user"),
        _rule("CPU trigger", cpu_percent, rules.scale_at_cpu_percent, "%", f"of {cores_per_replica:g} core(s) per replica"),
        _rule("pool trigger", pool_percent, rules.scale_at_pool_percent, "%", pool_how),
        _rule(
            "latency trigger",
            p95_ms,
            sla_p95_ms,
            "ms",
            "HTTP p95 of the load vs the SLA (gates.yaml load http_p95_ms)" if sla_p95_ms is not None else "no SLA in gates.yaml",
        ),
    ]

    # Conversations one replica takes before each limit, at the measured cost per conversation.
    cpu_budget = rules.scale_at_cpu_percent / 100 * cores_per_replica
    capacity: dict[str, float | None] = {
        "CPU trigger": cpu_budget / cores_per_conversation if cores_per_conversation > 0 else None,
        "pool trigger": None,
        "memory": None,
    }
    if pool_size and pool_in_use_per_replica:
        capacity["pool trigger"] = (rules.scale_at_pool_percent / 100 * pool_size) / (pool_in_use_per_replica / conversations_per_replica)
    if mb_per_conversation is not None and before.resident_bytes is not None and mb_per_conversation > rules.max_memory_mb_per_conversation:
        # base + n × measured <= budget base + n × allowed, for n conversations per replica
        idle = before.resident_bytes / processes
        excess = (mb_per_conversation - rules.max_memory_mb_per_conversation) * MIB
        capacity["memory"] = max(rules.base_memory_gb * GIB - idle, 0.0) / excess
    limits = {name: value for name, value in capacity.items() if value is not None}
    per_replica = min(limits.values()) if limits else None
    bound_by = min(limits, key=lambda name: limits[name]) if limits else None
    headroom = {
        "conversations_now_per_replica": _round(conversations_per_replica),
        "capacity_per_replica": {name: _round(value, 1) for name, value in capacity.items()},
        "conversations_per_replica": _round(per_replica, 1),
        "bound_by": bound_by,
        "more_conversations_per_replica": _round(per_replica - conversations_per_replica, 1) if per_replica is not None else None,
        "more_conversations_total": _round((per_replica - conversations_per_replica) * replicas, 1) if per_replica is not None else None,
    }
    sizes = sorted(rules.sizes.items(), key=lambda item: item[1])
    recommended = {size: (max(1, math.ceil(count / per_replica)) if per_replica else None) for size, count in sizes}

    exceeded = [row for row in rules_table if row["exceeded"]]
    figures = {
        "cores_used_per_replica": _round(cores, 4),
        "cores_per_10_conversations": _round(cores_per_10),
        "cpu_percent": _round(cpu_percent, 1),
        "resident_mib_per_replica": _round(resident / MIB, 1),
        "memory_mb_per_conversation": _round(mb_per_conversation, 2),
        "kb_per_s_per_user": _round(kb_per_s_per_user),
        "pool_percent": _round(pool_percent, 1),
        "p95_ms": _round(p95_ms, 1) if p95_ms is None or math.isfinite(p95_ms) else None,
    }
    load = {
        "duration_s": _round(duration_s, 2),
        "span_s": _round(span_s, 2),
        "span": span_note,
        "concurrent_conversations": concurrent_conversations,
        "active_users": active_users,
        "replicas": replicas,
        "processes_measured": processes,
        "cores_per_replica": cores_per_replica,
    }
    notes = [
        "memory_mb_per_conversation is the growth during the load per conversation: a lower bound, memory allocated "
        "before the load is reused",
        f"pool: {pool_how}",
    ]
    if after.processes != before.processes:
        notes.append(f"the source covered {before.processes} process(es) before and {after.processes} after")
    if processes != replicas:
        notes.append(f"figures cover {processes} process(es), the target names {replicas} replica(s)")
    evidence = {
        "source": source,
        "load": load,
        "figures": figures,
        "rules": rules_table,
        "headroom": headroom,
        "recommended_replicas": {size: {"conversations": rules.sizes[size], "replicas": n} for size, n in recommended.items()},
        "notes": notes,
        "snapshots": snapshots,
    }
    sizing = ", ".join(f"{size} ({rules.sizes[size]}): {n if n is not None else '?'}" for size, n in recommended.items())
    room = (
        f"headroom {headroom['more_conversations_per_replica']:+g} conversations per replica (bound by {bound_by})"
        if per_replica is not None
        else "no measured cost bounds the conversations per replica"
    )
    expected = {row["rule"]: f"<= {row['limit']:g} {row['unit']}" for row in rules_table if row["limit"] is not None}
    if exceeded:
        broken = "; ".join(
            f"{row['rule']} {'infinite' if row['measured'] is None else format(row['measured'], 'g')} {row['unit']} > {row['limit']:g}"
            for row in exceeded
        )
        summary = f"{len(exceeded)} sizing rule(s) exceeded: {broken}; {room}; replicas needed: {sizing}"
        return Finding("failed", summary, observed=figures, expected=expected, evidence=evidence)
    summary = (
        f"fits the sizing rules: {cores_per_10:.3g} cores per 10 conversations, CPU {cpu_percent:.1f} %, "
        f"{resident / MIB:.0f} MiB resident, {kb_per_s_per_user:.3g} KB/s per user; {room}; replicas needed: {sizing}"
    )
    return Finding("passed", summary, observed=figures, expected=expected, evidence=evidence)


def _rule(name: str, measured: float | None, limit: float | None, unit: str, note: str) -> dict[str, Any]:
    judged = measured is not None and limit is not None
    finite = measured is None or math.isfinite(measured)
    return {
        "rule": name,
        # An infinite p95 (samples lost) exceeds any limit; JSON has no infinity, the note says so.
        "measured": _round(measured) if finite else None,
        "limit": limit,
        "unit": unit,
        "exceeded": bool(judged and measured is not None and limit is not None and measured > limit),
        "judged": judged,
        "note": note if finite else f"{note}; infinite: samples were lost",
    }
