"""Pre-deploy security, auth family: protected endpoints refuse bad tokens; tokens are short-lived.

About six API requests in all (two per protected path, one with the valid token, one or two
with an expired token): the rate-limit checks that run after these share the per-IP bucket.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest

from releasegate._exceptions import ProbeError
from releasegate.config import Gates, LoadedTarget
from releasegate.plugin import CheckRecorder
from releasegate.probes import auth, credentials, headers
from releasegate.probes.headers import Answer, Request
from releasegate.probes.http import HttpSettings
from releasegate.results import Finding


def _exchange(check: CheckRecorder, requests: Sequence[Request], settings: HttpSettings) -> list[Answer]:
    """The answers, or conclude ``error`` (which raises) when one could not be measured."""
    try:
        return headers.exchange(requests, settings)
    except ProbeError as exc:
        check.conclude(Finding("error", str(exc), observed=type(exc).__name__, evidence={"url": exc.url}))
        raise  # not reached: an error finding raises


def _protected_urls(target: LoadedTarget) -> list[str]:
    paths = target.target.auth.protected
    if not paths:
        pytest.skip("auth.protected is empty: no endpoint to check")
    return [headers.join(target.target.base_url, path) for path in dict.fromkeys(paths)]


@pytest.mark.check("security.auth.required")
def test_auth_required(check: CheckRecorder, target: LoadedTarget, http_settings: HttpSettings) -> None:
    urls = _protected_urls(target)
    token = target.token()
    requests = [Request("GET", url) for url in urls] + [
        Request("GET", url, headers=credentials.bearer(credentials.GARBAGE_TOKEN)) for url in urls
    ]
    if token:
        requests.append(Request("GET", urls[0], headers=credentials.bearer(token)))
    answers = _exchange(check, requests, http_settings)
    missing, invalid = answers[: len(urls)], answers[len(urls) : 2 * len(urls)]
    valid = answers[2 * len(urls)] if token else None
    check.conclude(auth.judge_required(missing, invalid, valid))


@pytest.mark.check("security.auth.token_lifetime")
def test_token_lifetime(check: CheckRecorder, target: LoadedTarget, policy: Gates, http_settings: HttpSettings) -> None:
    token = target.token()
    if not token:
        pytest.skip("the target names no auth.token_env: no token to judge")
    decoded = auth.decode_jwt(token)
    if decoded is None:
        pytest.skip("opaque token (not a JWT): its lifetime cannot be read from outside")
    url = _protected_urls(target)[0]
    now = time.time()
    source: auth.TokenSource
    given = target.secret(target.target.auth.expired_token_env)
    if given:
        source = "target"
        if (problem := auth.expired_token_problem(given, now=now)) is not None:
            check.conclude(Finding("error", problem, observed="unusable expired token", expected="an expired token"))
        expired_token = given
    else:
        source = "forged"
        expired_token = auth.forge_expired(decoded, now=now)
    (expired,) = _exchange(check, [Request("GET", url, headers=credentials.bearer(expired_token))], http_settings)
    unauthenticated = None
    if 200 <= expired.status < 400:
        # Accepted: is it the expiry that goes unchecked, or authentication altogether?
        (unauthenticated,) = _exchange(check, [Request("GET", url)], http_settings)
    max_lifetime_s = policy.thresholds.security.token_max_lifetime_s
    check.conclude(
        auth.judge_token_lifetime(decoded, expired, max_lifetime_s=max_lifetime_s, now=now, source=source, unauthenticated=unauthenticated)
    )
