"""Pre-deploy security, auth family: protected endpoints refuse bad and forged tokens; tokens are short-lived and expire.

About eleven API requests in all against a target with two protected paths: three per path
(no token, garbage token, tampered copy of the gate's token), one alg none copy, one with the
valid token; then one login, one expired token and, only if that is accepted, one without a
token. The rate-limit checks that run after these share the per-IP bucket, so every request
here is one they cannot spend.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest

from releasegate.config import Gates, LoadedTarget
from releasegate.plugin import CheckRecorder
from releasegate.probes import auth, credentials, headers
from releasegate.probes.headers import Answer, Request
from releasegate.probes.http import HttpSettings
from releasegate.results import Finding


def _exchange(check: CheckRecorder, requests: Sequence[Request], settings: HttpSettings) -> list[Answer]:
    """The answers, or conclude ``error`` (which raises) when one could not be measured."""
    return check.measure(lambda: headers.exchange(requests, settings))


def _protected_urls(target: LoadedTarget) -> list[str]:
    paths = target.target.auth.protected
    if not paths:
        pytest.skip("auth.protected is empty: no endpoint to check")
    return [headers.join(target.target.base_url, path) for path in dict.fromkeys(paths)]


def _login(check: CheckRecorder, target: LoadedTarget, settings: HttpSettings) -> str | None:
    """A token fresh from the target's login, None when no login is configured; error when it is and fails.

    The password goes out in the request body only; neither it nor the token returned reaches the
    evidence (the login answer's body is parsed here and dropped).
    """
    login = target.target.auth.login
    if login is None:
        return None
    username, password = target.secret(login.username_env), target.secret(login.password_env)
    if not username or not password:
        unset = [env for env, value in ((login.username_env, username), (login.password_env, password)) if not value]
        check.conclude(Finding("error", f"cannot log in: {', '.join(unset)} not set", observed="no credentials", expected="a login"))
    body = {"username": username, "password": password}
    (answer,) = _exchange(check, [Request("POST", headers.join(target.target.base_url, login.path), json=body)], settings)
    token = auth.access_token(answer)
    if token is None:
        check.conclude(
            Finding(
                "error",
                f"log-in at {login.path} gave no access_token (HTTP {answer.status}): no fresh token to judge",
                observed=answer.status,
                expected="2xx with a JSON access_token",
                evidence={"url": answer.url, "status": answer.status},
            )
        )
    return token


@pytest.mark.check("security.auth.required")
def test_auth_required(check: CheckRecorder, target: LoadedTarget, http_settings: HttpSettings) -> None:
    urls = _protected_urls(target)
    token = target.token()
    # The forged copies need a JWT of the target's own issuer; a login supplies one when no token is configured.
    model = token or _login(check, target, http_settings)
    decoded = auth.decode_jwt(model) if model else None
    requests = [Request("GET", url) for url in urls] + [
        Request("GET", url, headers=credentials.bearer(credentials.GARBAGE_TOKEN)) for url in urls
    ]
    note = None
    if model is not None and decoded is not None:
        requests += [Request("GET", url, headers=credentials.bearer(credentials.tampered_jwt(model))) for url in urls]
        requests.append(Request("GET", urls[0], headers=credentials.bearer(auth.unsigned_copy(decoded))))
    else:
        note = "no JWT to copy (no token, or an opaque one): signature verification was not tested"
    if token:
        requests.append(Request("GET", urls[0], headers=credentials.bearer(token)))
    answers = _exchange(check, requests, http_settings)
    n = len(urls)
    missing, invalid = answers[:n], answers[n : 2 * n]
    forged = decoded is not None
    tampered = answers[2 * n : 3 * n] if forged else []
    unsigned = answers[3 * n] if forged else None
    valid = answers[-1] if token else None
    check.conclude(auth.judge_required(missing, invalid, valid, tampered=tampered, unsigned=unsigned, note=note))


@pytest.mark.check("security.auth.token_lifetime")
def test_token_lifetime(check: CheckRecorder, target: LoadedTarget, policy: Gates, http_settings: HttpSettings) -> None:
    url = _protected_urls(target)[0]
    fresh = _login(check, target, http_settings)
    token = fresh or target.token()
    if not token:
        pytest.skip("the target names neither auth.login nor auth.token_env: no token to judge")
    decoded = auth.decode_jwt(token)
    if decoded is None:
        pytest.skip("opaque token (not a JWT): its lifetime cannot be read from outside")
    now = time.time()
    source: auth.TokenSource
    problem: str | None = None
    expired_claims: auth.Jwt | None = None
    expired_env = target.target.auth.expired_token_env
    if expired_env:
        source = "target"
        given = target.secret(expired_env)
        if not given:
            problem = f"auth.expired_token_env names {expired_env}, which is not set: no expired token to present"
        else:
            problem = auth.expired_token_problem(given, now=now)
            expired_claims = auth.decode_jwt(given)
        expired_token = given
    else:
        source = "forged"
        expired_token = auth.forge_expired(decoded, now=now)
    expired = unauthenticated = None
    if problem is None and expired_token:
        (expired,) = _exchange(check, [Request("GET", url, headers=credentials.bearer(expired_token))], http_settings)
        if source == "target" and 200 <= expired.status < 400:
            # Accepted: is it the expiry that goes unchecked, or authentication altogether?
            (unauthenticated,) = _exchange(check, [Request("GET", url)], http_settings)
    check.conclude(
        auth.judge_token_lifetime(
            decoded,
            expired,
            max_lifetime_s=policy.thresholds.security.token_max_lifetime_s,
            now=now,
            source=source,
            lifetime_source="login" if fresh else "target",
            unauthenticated=unauthenticated,
            expired_problem=problem,
            expired_claims=expired_claims,
        )
    )
