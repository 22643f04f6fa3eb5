"""Pre-deploy security, headers family: HSTS, browser security headers, login cookies.

Each check sends a few HTTPS requests (security.hsts at most five credential-free GETs, the others
at most one API request or one log-in), judges the header fields as received (repeats kept), and
concludes one finding. The rate-limit checks run after these and share the client's per-IP
bucket, so the request count is kept small on purpose.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from releasegate.config import Gates, LoadedTarget
from releasegate.plugin import CheckRecorder
from releasegate.probes import credentials, headers
from releasegate.probes.headers import Answer, Request
from releasegate.probes.http import HttpSettings
from releasegate.results import Finding


def _exchange(check: CheckRecorder, requests: Sequence[Request], settings: HttpSettings) -> list[Answer]:
    """The answers, or conclude ``error`` (which raises) when one could not be measured."""
    return check.measure(lambda: headers.exchange(requests, settings))


def _api_url(target: LoadedTarget) -> str:
    """The first protected path: the API answer every header check looks at."""
    protected = target.target.auth.protected or ["/api/"]
    return headers.join(target.target.base_url, protected[0])


# security.hsts samples at most this many answers: the site root, every protected path and the
# login path cover the layers that may set HSTS differently (proxy, app, API router) while the
# rate-limit checks, which run later from the same client IP, still find their buckets nearly full.
HSTS_MAX_SAMPLES = 5


def hsts_urls(target: LoadedTarget) -> list[str]:
    """The site root, each protected path, then the login path: deduplicated, at most HSTS_MAX_SAMPLES."""
    base = target.target.base_url
    auth = target.target.auth
    paths = [*(auth.protected or ["/api/"]), *([auth.login.path] if auth.login is not None else [])]
    return list(dict.fromkeys([base, *(headers.join(base, path) for path in paths)]))[:HSTS_MAX_SAMPLES]


@pytest.mark.check("security.hsts")
def test_hsts(check: CheckRecorder, target: LoadedTarget, policy: Gates, http_settings: HttpSettings) -> None:
    if not target.target.base_url.startswith("https://"):
        pytest.skip("base_url is plain http://: HSTS only counts on HTTPS answers (security.transport.https judges http)")
    # No token: HSTS belongs on every answer, a 401 or a 405 included, and this spends no per-user budget.
    # The login path is only GET (no log-in), so it spends nothing of the log-in budget either.
    answers = _exchange(check, [Request("GET", url) for url in hsts_urls(target)], http_settings)
    check.conclude(headers.judge_hsts(answers, min_max_age_s=policy.thresholds.security.hsts_min_max_age_s))


@pytest.mark.check("security.headers")
def test_security_headers(check: CheckRecorder, target: LoadedTarget, http_settings: HttpSettings) -> None:
    base = target.target.base_url
    api_headers = {**http_settings.headers, "Origin": credentials.FOREIGN_ORIGIN}
    site, api = _exchange(check, [Request("GET", base), Request("GET", _api_url(target), headers=api_headers)], http_settings)
    check.conclude(headers.judge_security_headers(site, api, api_authenticated=bool(http_settings.headers)))


@pytest.mark.check("security.cookies")
def test_cookies(check: CheckRecorder, target: LoadedTarget, http_settings: HttpSettings) -> None:
    login = target.target.auth.login
    if login is None:
        pytest.skip("the target names no auth.login flow: no cookies to judge")
    username, password = target.secret(login.username_env), target.secret(login.password_env)
    if not username or not password:
        unset = [env for env, value in ((login.username_env, username), (login.password_env, password)) if not value]
        check.conclude(Finding("error", f"cannot log in: {', '.join(unset)} not set", observed="no credentials", expected="a login"))
    body = {"username": username, "password": password}  # sent, never recorded
    (answer,) = _exchange(check, [Request("POST", headers.join(target.target.base_url, login.path), json=body)], http_settings)
    check.conclude(headers.judge_cookies(answer))
