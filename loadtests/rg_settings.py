"""Configuration of the Locust users, from the environment (read once, at import).

The same variables serve the gate's runner and an engineer running plain ``locust``:

    RELEASEGATE_TARGET        target file: base_url, ws_url, tls.ca_bundle, the token variables, load.*
    RELEASEGATE_PROFILE       profile name in the profiles folder (default smoke); "none": no shape,
                              Locust's own -u/-r/-t and web-UI form decide
    RELEASEGATE_PROFILES_DIR  folder of <name>.yaml profiles (default: target load.profiles_dir, else
                              loadtests/profiles beside this file)
    RELEASEGATE_TOKEN         bearer token when no target is given (RELEASEGATE_TOKEN_2: a second user)
    RELEASEGATE_CA_BUNDLE     extra trust anchors (PEM) when no target is given
    RELEASEGATE_WS_URL        WebSocket URL of the sync endpoint, if not the target's / <host>/ws/sync
    RELEASEGATE_ALLOWED_HOSTS comma-separated hosts load may go to besides loopback (no target given)
    RELEASEGATE_MAX_DURATION_S an upper bound on the run, below the profile's own max_duration_s

``--host`` overrides the target's base_url (Locust sets it on every user class). Load goes only to
loopback or an allowed host; anything else stops the run with exit code 3 before a request is sent.
Tokens live in memory only: never in a request name, a URL or an error message (:func:`scrub`).
"""

from __future__ import annotations

import logging
import os
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from releasegate._exceptions import ConfigError, Problem
from releasegate.config import Identity, LoadedTarget, load_target
from releasegate.load import safety
from releasegate.load.profiles import LoadProfile, load_profile, profiles_folder

HERE = Path(__file__).resolve().parent
TARGET_ENV = "RELEASEGATE_TARGET"
PROFILE_ENV = "RELEASEGATE_PROFILE"
PROFILES_DIR_ENV = "RELEASEGATE_PROFILES_DIR"
TOKEN_ENV = "RELEASEGATE_TOKEN"
SECOND_TOKEN_ENV = "RELEASEGATE_TOKEN_2"
CA_BUNDLE_ENV = "RELEASEGATE_CA_BUNDLE"
WS_URL_ENV = "RELEASEGATE_WS_URL"
ALLOWED_HOSTS_ENV = "RELEASEGATE_ALLOWED_HOSTS"
MAX_DURATION_ENV = "RELEASEGATE_MAX_DURATION_S"
DEFAULT_PROFILE = "smoke"
NO_PROFILE = "none"
DEFAULT_WS_PATH = "/ws/sync"
REDACTED = "[redacted]"
TOKEN_PROBLEM = "no token"

log = logging.getLogger("releasegate.load")


@dataclass(frozen=True)
class Login:
    path: str
    username_env: str
    password_env: str


@dataclass(frozen=True)
class Settings:
    target: LoadedTarget | None
    profile: LoadProfile | None
    base_url: str | None
    ws_url: str | None
    # ws_url came from RELEASEGATE_WS_URL: used as it is, whatever --host says.
    ws_url_fixed: bool
    ca_bundle: Path | None
    identities: tuple[Identity, ...]
    allowed_hosts: frozenset[str]
    max_duration_s: float | None
    login: Login | None

    def token_of(self, identity: Identity) -> str | None:
        """The bearer token of ``identity``; never log or store it."""
        if self.target is not None:
            return self.target.token_of(identity)
        env = {"primary": TOKEN_ENV, "second": SECOND_TOKEN_ENV}.get(identity)
        return os.environ.get(env) if env else None

    def login_credentials(self) -> tuple[str, str] | None:
        if self.login is None:
            return None
        user, password = os.environ.get(self.login.username_env), os.environ.get(self.login.password_env)
        return (user, password) if user and password else None

    def secrets(self) -> list[str]:
        values = [self.token_of(identity) for identity in ("primary", "second")]
        if self.target is not None:
            values += [value for _, value in self.target.secrets()]
        if self.login is not None:
            values.append(os.environ.get(self.login.password_env))
        return sorted({v for v in values if v}, key=len, reverse=True)

    def host_allowed(self, url: str) -> bool:
        # The gate's own rule (loopback is 127.0.0.0/8, ::1, localhost), so both sides agree.
        return safety.allowed(url, self.allowed_hosts)

    def ws_url_for(self, base_url: str) -> str:
        """The sync endpoint for ``base_url`` (which --host may have changed)."""
        base = urlsplit(base_url)
        scheme = "wss" if base.scheme == "https" else "ws"
        if self.ws_url is None:
            return urlunsplit((scheme, base.netloc, DEFAULT_WS_PATH, "", ""))
        if self.ws_url_fixed or self.base_url is None or base_url.rstrip("/") == self.base_url:
            return self.ws_url
        # --host points elsewhere: keep the endpoint's path, move it to that host.
        ws = urlsplit(self.ws_url)
        return urlunsplit((scheme, base.netloc, ws.path, ws.query, ""))

    def problems(self, host: str | None) -> list[str]:
        """Why load must not start (empty: it may); ``host`` is Locust's --host, if known yet."""
        found: list[str] = []
        if host:
            if not self.host_allowed(host):
                found.append(
                    f"refusing load to {urlsplit(host).hostname or host!r}: not loopback and not in the allowed hosts "
                    f"({', '.join(sorted(self.allowed_hosts)) or 'none'}); add it to the target's load.allowed_hosts "
                    f"(or {ALLOWED_HOSTS_ENV} without a target)"
                )
            elif not self.host_allowed(self.ws_url_for(host)):
                found.append(f"refusing WebSocket load to {urlsplit(self.ws_url_for(host)).hostname!r}: not an allowed host")
        if self.profile is not None and self.profile.login:
            if self.login_credentials() is None:
                found.append(f"{TOKEN_PROBLEM} to log in with (login: true): the target names no auth.login, or its variables are unset")
        else:
            for identity in self.identities:
                if not self.token_of(identity):
                    where = f"the target's token variable for {identity!r}" if self.target is not None else TOKEN_ENV
                    found.append(f"{TOKEN_PROBLEM} for identity {identity!r}: set {where}")
        return found


def scrub(text: str, settings: Settings) -> str:
    """``text`` without any secret the settings know of (for error messages Locust will store)."""
    for secret in settings.secrets():
        text = text.replace(secret, REDACTED)
    return text


def http_ssl_context_factory(ca_bundle: Path | None) -> Callable[..., ssl.SSLContext]:
    """For FastHttpUser (geventhttpclient calls it with cafile=its default CA file): verify, and trust the bundle too."""

    def factory(cafile: str | None = None, **_: Any) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=cafile)
        if ca_bundle is not None:
            context.load_verify_locations(cafile=str(ca_bundle))
        return context

    return factory


def ws_ssl_context(ca_bundle: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_bundle is not None:
        context.load_verify_locations(cafile=str(ca_bundle))
    return context


def from_environment(environ: dict[str, str] | None = None) -> Settings:
    """Settings from the environment; ConfigError for a bad target or profile."""
    env = dict(os.environ if environ is None else environ)
    target_file = env.get(TARGET_ENV)
    target = load_target(Path(target_file)) if target_file else None
    load = target.target.load if target is not None else None

    profile_name = env.get(PROFILE_ENV) or DEFAULT_PROFILE
    profile: LoadProfile | None = None
    if profile_name != NO_PROFILE:
        if env.get(PROFILES_DIR_ENV):
            folder = Path(env[PROFILES_DIR_ENV]).resolve()
        elif load is not None and load.profiles_dir is not None:
            folder = profiles_folder(target)
        else:
            folder = HERE / "profiles"
        profile = load_profile(profile_name, folder)

    if target is not None:
        identities: tuple[Identity, ...] = tuple(load.identities) if load is not None else ("primary", "second")
        if load is None and target.target.auth.second_token_env is None:
            identities = ("primary",)
        allowed = frozenset(h.lower() for h in (load.allowed_hosts if load is not None else []))
        base_url, ca_bundle = target.target.base_url, target.ca_bundle
        ws_url = env.get(WS_URL_ENV) or target.target.ws_url
        auth_login = target.target.auth.login
        login = None if auth_login is None else Login(auth_login.path, auth_login.username_env, auth_login.password_env)
    else:
        identities = ("primary", "second") if env.get(SECOND_TOKEN_ENV) else ("primary",)
        allowed = frozenset(h.strip().lower() for h in env.get(ALLOWED_HOSTS_ENV, "").split(",") if h.strip())
        base_url, ws_url, login = None, env.get(WS_URL_ENV), None
        ca_bundle = Path(env[CA_BUNDLE_ENV]).resolve() if env.get(CA_BUNDLE_ENV) else None
        if ca_bundle is not None and not ca_bundle.is_file():
            raise ConfigError([Problem(str(ca_bundle), None, CA_BUNDLE_ENV, "file does not exist", "point it at a PEM file")])

    cap: float | None = None
    if env.get(MAX_DURATION_ENV):
        try:
            cap = float(env[MAX_DURATION_ENV])
        except ValueError:
            cap = -1.0
        if not cap > 0:
            raise ConfigError([Problem(MAX_DURATION_ENV, None, MAX_DURATION_ENV, "not a positive number of seconds", "e.g. 900")])
    return Settings(
        target=target,
        profile=profile,
        base_url=base_url,
        ws_url=ws_url,
        ws_url_fixed=bool(env.get(WS_URL_ENV)),
        ca_bundle=ca_bundle,
        identities=identities,
        allowed_hosts=allowed,
        max_duration_s=cap,
        login=login,
    )


def load_or_exit() -> Settings:
    """:func:`from_environment`, or exit 3 (the project's configuration error) with every problem listed."""
    try:
        return from_environment()
    except ConfigError as exc:
        # Logging is not set up yet while Locust imports the locustfile: write to stderr.
        print(f"releasegate load: configuration error\n{exc}", file=sys.stderr, flush=True)
        raise SystemExit(3) from None


SETTINGS = load_or_exit()
