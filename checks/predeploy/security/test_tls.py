"""Pre-deploy TLS and transport: HTTPS only, modern protocols and suites, a valid certificate.

The three TLS checks share one sslyze scan per run (a module-scoped fixture), limited to the
scan commands the selected checks need. A scan that could not complete makes every TLS check
``error``, never ``passed``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest

from releasegate._exceptions import ProbeError
from releasegate.config import Gates, LoadedTarget
from releasegate.plugin import CheckRecorder, gate_run
from releasegate.probes import tls, transport
from releasegate.results import Finding

# Measured against the reference deployment on loopback: 5 parallel connections finish the full
# Mozilla scan fastest; more only queue handshakes on the server.
SCAN_CONNECTIONS = 5
_NEEDS: dict[str, tls.CheckNeed] = {
    "security.tls.protocols": "protocols",
    "security.tls.ciphers": "ciphers",
    "security.tls.certificate": "certificate",
}


@pytest.fixture(scope="module")
def tls_scan(request: pytest.FixtureRequest) -> tls.ScanOutcome:
    """The one scan of this run: a plain :class:`tls.TlsScan`, or :class:`tls.ScanFailed`."""
    run = gate_run(request.config)
    if run is None:
        raise pytest.UsageError("the TLS checks need the gate on: pass --stage and --target")
    parts = urlsplit(run.target.target.base_url)
    if parts.scheme != "https" or parts.hostname is None:
        pytest.skip("base_url is not https://: there is no TLS endpoint to scan")
    selected = [_NEEDS[i] for i in run.selected if i in _NEEDS] or list(_NEEDS.values())
    commands = set().union(*(tls.COMMANDS_NEEDED[need] for need in selected))
    return tls.scan(
        parts.hostname,
        parts.port or 443,
        ca_file=run.target.ca_bundle,
        timeout_s=run.gates.gates.probe.timeout_s,
        commands=commands,
        concurrency=SCAN_CONNECTIONS,
    )


def _profile(policy: Gates, request: pytest.FixtureRequest) -> tls.TlsProfile | Finding:
    run = gate_run(request.config)
    gates_path = run.gates.path if run is not None else None
    spec = policy.thresholds.security.tls_profile
    try:
        return tls.load_profile(spec, base_dir=gates_path.parent if gates_path is not None else None)
    except ProbeError as exc:
        return Finding("error", str(exc), expected=f"a readable TLS profile ({spec})", evidence={"tls_profile": spec})


def _api_paths(target: LoadedTarget) -> list[str]:
    """Paths a half-done port-80 block may still proxy over http: protected, rate-limited and upload paths."""
    settings = target.target
    return [
        *settings.auth.protected,
        *([settings.rate_limit.path] if settings.rate_limit is not None else []),
        *([settings.limits.body_path] if settings.limits is not None else []),
    ]


@pytest.mark.check("security.transport.https")
def test_plain_http_refused_or_redirected(check: CheckRecorder, target: LoadedTarget, policy: Gates) -> None:
    base_url = target.target.base_url
    if not base_url.startswith("https:"):
        pytest.skip("base_url is not https://: no HTTPS endpoint to redirect to")
    url = target.target.http_url or transport.default_http_url(base_url)
    # Not only "/": a port-80 block that redirects the root may still proxy /api/ over http.
    urls, left_out = transport.plan(url, _api_paths(target))
    try:
        answers = transport.probe_paths(urls, policy.probe.timeout_s)
    except ProbeError as exc:
        check.conclude(Finding("error", str(exc), observed=type(exc).__name__, evidence={"url": url}))
        return
    check.conclude(transport.judge(answers, https_url=base_url, left_out=left_out))


@pytest.mark.check("security.tls.protocols")
def test_protocols(check: CheckRecorder, tls_scan: tls.ScanOutcome, policy: Gates, request: pytest.FixtureRequest) -> None:
    profile = _profile(policy, request)
    # A TLS 1.3-only profile (Mozilla "modern") does not ask for TLS 1.2.
    require_tls12 = not isinstance(profile, tls.TlsProfile) or "TLSv1.2" in profile.versions
    check.conclude(tls.judge_protocols(tls_scan, require_tls12=require_tls12))


@pytest.mark.check("security.tls.ciphers")
def test_ciphers(check: CheckRecorder, tls_scan: tls.ScanOutcome, policy: Gates, request: pytest.FixtureRequest) -> None:
    profile = _profile(policy, request)
    check.conclude(tls.judge_ciphers(tls_scan, profile) if isinstance(profile, tls.TlsProfile) else profile)


@pytest.mark.check("security.tls.certificate")
def test_certificate(check: CheckRecorder, tls_scan: tls.ScanOutcome, policy: Gates) -> None:
    limits = policy.thresholds.security
    check.conclude(
        tls.judge_certificate(
            tls_scan,
            now=datetime.now(UTC),
            min_days=limits.cert_min_days,
            warn_days=limits.cert_warn_days,
            max_lifespan_days=limits.cert_max_lifespan_days,
        )
    )
