"""Log-in and bearer tokens: short-lived HS256 JWTs, checked on every protected request.

Only the ``Authorization: Bearer`` header (or the WebSocket ``bearer`` subprotocol) authenticates.
The ``rg_session`` cookie set at log-in is an opaque session marker for browsers and is never
accepted as a credential: a cookie-authenticated API would be open to cross-site requests, and a
probe client that keeps cookies would look authenticated when it sent no token.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import jwt

from releasegate.reference.settings import ServiceSettings

Clock = Callable[[], float]

ISSUER = "releasegate-reference"
REALM = "releasegate-reference"
ANONYMOUS = "anonymous"  # the principal of requests let through by faults auth-bypass and ws-no-auth
COOKIE = "rg_session"
CLOCK_SKEW_S = 30


class TokenError(Exception):
    """A bearer token is missing, malformed, forged or expired; ``str()`` is safe to show."""

    def __init__(self, description: str, *, missing: bool = False) -> None:
        super().__init__(description)
        self.missing = missing

    def www_authenticate(self) -> str:
        """RFC 6750 §3: no error code when the request carried no credentials at all."""
        if self.missing:
            return f'Bearer realm="{REALM}"'
        return f'Bearer realm="{REALM}", error="invalid_token", error_description="{self}"'


@dataclass(frozen=True)
class Principal:
    username: str
    anonymous: bool = False  # let in by a fault: skips participant checks too, so the fault is unmistakable


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    jti: str


class Authenticator:
    """Checks passwords and issues and verifies tokens for one service instance."""

    def __init__(self, settings: ServiceSettings, wall: Clock = time.time) -> None:
        self._users = dict(settings.users)
        self._secret = settings.jwt_secret
        self._wall = wall
        self.ttl_s = settings.long_token_ttl_s if settings.has("long-token-ttl") else settings.token_ttl_s
        self._insecure_cookie = settings.has("insecure-cookie")

    def known_user(self, username: str) -> bool:
        return username in self._users

    def check_password(self, username: str, password: str) -> bool:
        expected = self._users.get(username)
        # Compare against something even for unknown users so timing does not reveal which exist.
        candidate = expected if expected is not None else secrets.token_urlsafe(16)
        same = hmac.compare_digest(candidate.encode(), password.encode())
        return expected is not None and same

    def issue(self, username: str) -> IssuedToken:
        now = int(self._wall())
        jti = secrets.token_urlsafe(12)
        claims = {"iss": ISSUER, "sub": username, "iat": now, "exp": now + self.ttl_s, "jti": jti}
        return IssuedToken(jwt.encode(claims, self._secret, algorithm="HS256"), self.ttl_s, jti)

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],  # never "none", never what the token's header asks for
                issuer=ISSUER,
                options={"require": ["sub", "iat", "exp", "jti"], "verify_exp": False, "verify_iat": False, "verify_nbf": False},
            )
        except jwt.InvalidTokenError as exc:
            raise TokenError("the token is malformed or its signature does not verify") from exc
        # Times against our own (injectable) clock rather than PyJWT's, so tests need not sleep.
        now = self._wall()
        if int(claims["exp"]) <= now:
            raise TokenError("the token has expired")
        if int(claims["iat"]) > now + CLOCK_SKEW_S:
            raise TokenError("the token was issued in the future")
        sub = claims["sub"]
        if not isinstance(sub, str) or not self.known_user(sub):
            raise TokenError("the token names no known user")
        return Principal(sub)

    def from_authorization(self, header: str | None) -> Principal:
        """The principal of an ``Authorization`` header value; TokenError when it does not authenticate."""
        if not header:
            raise TokenError("no bearer token", missing=True)
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenError("the Authorization header is not a bearer token")
        return self.verify(token.strip())

    def session_cookie(self, issued: IssuedToken) -> str:
        """The log-in's Set-Cookie value for ``issued``; fault insecure-cookie drops its protective attributes."""
        return session_cookie(issued.jti, issued.expires_in, hardened=not self._insecure_cookie)


def session_cookie(jti: str, max_age_s: int, *, hardened: bool = True) -> str:
    """The Set-Cookie value, written by hand to keep the attribute spelling a cookie audit expects.

    ``hardened=False`` (fault insecure-cookie) leaves out Secure, HttpOnly and SameSite, so the
    cookie would travel over plain HTTP, be readable from script and ride along cross-site.
    """
    attributes = "; Secure; HttpOnly; SameSite=Strict" if hardened else ""
    return f"{COOKIE}={jti}; Max-Age={max_age_s}; Path=/{attributes}"
