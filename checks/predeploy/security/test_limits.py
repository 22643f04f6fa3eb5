"""Pre-deploy limits: request size (413/431) and rate limits per IP, per user and per endpoint.

The registry runs these last in the stage, in this order: request size, then the rate limits
(ip, user, endpoint). Every request comes from this one address, so the rate-limit checks share
the server's per-IP bucket: a module-wide :class:`~releasegate.probes.limits.Ledger` remembers
when the quotas drained by one check are whole again, and the next check waits for that
(bounded) before it starts its own burst.
"""

from __future__ import annotations

import pytest

from releasegate.config import LoadedTarget, RateLimitSettings
from releasegate.load import safety
from releasegate.plugin import CheckRecorder
from releasegate.probes import credentials, limits
from releasegate.probes.http import HttpSettings
from releasegate.results import Finding


@pytest.fixture(scope="module")
def quota_ledger() -> limits.Ledger:
    """Shared by the three rate-limit checks of one run: when the quotas they drained are whole again."""
    return limits.Ledger()


def _rate_limit(check: CheckRecorder, target: LoadedTarget) -> RateLimitSettings:
    """The target's rate_limit section; error, before any request, when its host may not take a burst."""
    settings = target.target.rate_limit
    if settings is None:
        pytest.skip("the target names no rate_limit")
    # A burst is load: it goes only where load may (loopback, or load.allowed_hosts), so a target
    # file pointed at the wrong host cannot hammer it.
    listed = target.target.load.allowed_hosts if target.target.load is not None else []
    if not safety.allowed(target.target.base_url, listed):
        host = safety.host_of(target.target.base_url) or target.target.base_url
        check.conclude(
            Finding(
                "error",
                f"rate-limit burst refused: host {host!r} is neither loopback nor in load.allowed_hosts; no request was sent",
                observed=f"host {host}",
                expected="loopback or a host listed in load.allowed_hosts",
            )
        )
    return settings


def _bearer(token: str | None) -> dict[str, str]:
    return credentials.bearer(token) if token else {}


@pytest.mark.check("security.request_size")
def test_request_size(check: CheckRecorder, target: LoadedTarget, http_settings: HttpSettings) -> None:
    settings = target.target.limits
    if settings is None:
        pytest.skip("the target names no limits (body_path, max_body_bytes)")
    attempts = limits.observe_request_size(
        target.target.base_url + settings.body_path,
        http_settings,
        max_body_bytes=settings.max_body_bytes,
        max_header_bytes=settings.max_header_bytes,
    )
    check.conclude(limits.judge_request_size(attempts, max_body_bytes=settings.max_body_bytes, max_header_bytes=settings.max_header_bytes))


@pytest.mark.check("security.rate_limit.ip")
def test_rate_limit_ip(check: CheckRecorder, target: LoadedTarget, http_settings: HttpSettings, quota_ledger: limits.Ledger) -> None:
    rate_limit = _rate_limit(check, target)
    # Unauthenticated on purpose: a per-IP limit applies before authentication, a per-user one
    # only after it, so no user quota can be what answers 429 here.
    spec = limits.RequestSpec("GET", target.target.base_url + rate_limit.path, "anonymous")
    observation = limits.observe_limit(http_settings, quota_ledger, spec, None, cap=rate_limit.max_probe_requests)
    check.conclude(limits.judge_ip_limit(observation))


@pytest.mark.check("security.rate_limit.user")
def test_rate_limit_user(check: CheckRecorder, target: LoadedTarget, http_settings: HttpSettings, quota_ledger: limits.Ledger) -> None:
    rate_limit = _rate_limit(check, target)
    token, second = target.token(), target.secret(target.target.auth.second_token_env)
    if not token:
        pytest.skip("the target names no auth.token_env: one identity is needed to exhaust")
    if not second:
        pytest.skip("the target names no auth.second_token_env: a per-user limit cannot be told from a per-IP one")
    url = target.target.base_url + rate_limit.path
    spec = limits.RequestSpec("GET", url, "token", _bearer(token))
    other = limits.RequestSpec("GET", url, "second", _bearer(second))
    observation = limits.observe_limit(http_settings, quota_ledger, spec, other, cap=rate_limit.max_probe_requests)
    check.conclude(limits.judge_user_limit(observation))


@pytest.mark.check("security.rate_limit.endpoint")
def test_rate_limit_endpoint(check: CheckRecorder, target: LoadedTarget, http_settings: HttpSettings, quota_ledger: limits.Ledger) -> None:
    rate_limit = _rate_limit(check, target)
    if rate_limit.endpoint_path is None or rate_limit.other_path is None:
        pytest.skip("the target names no rate_limit.endpoint_path and rate_limit.other_path")
    base = target.target.base_url
    # A log-in that cannot succeed: never the real credentials, never a real account name.
    spec = limits.RequestSpec("POST", base + rate_limit.endpoint_path, "anonymous", json_body=limits.BOGUS_LOGIN)
    other = limits.RequestSpec("GET", base + rate_limit.other_path, "token", _bearer(target.token()))
    observation = limits.observe_limit(http_settings, quota_ledger, spec, other, cap=rate_limit.max_probe_requests)
    check.conclude(limits.judge_endpoint_limit(observation))
