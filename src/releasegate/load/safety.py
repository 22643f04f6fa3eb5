"""Where load may go: loopback always, any other host only when the target lists it.

Load against the wrong host is an incident, so the check happens before anything starts (no
Locust process, no request) and a refusal is a configuration error (exit 3) naming the host,
the target file and the key to change. Worker processes check again, against the host the
master hands them, since a remote master could name any host.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from releasegate._exceptions import ConfigError, Problem


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 and ::1 (also in brackets)."""
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# The authority as WHATWG URL parsers (and urllib3, so Locust's requests) read it: a backslash
# ends it like a slash. urlsplit reads on to the next slash instead.
_WHATWG_AUTHORITY = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[/\\]{2}(?P<authority>[^/\\?#]*)")


def host_of(url: str) -> str:
    """The host ``url`` names, lower-case; "" when there is none or parsers would disagree on it.

    ``http://evil.test\\@allowed.test`` is host allowed.test to urlsplit (and httpx) but
    evil.test to urllib3, which Locust's HTTP users send through: such a URL names no host
    the allowlist can vouch for.
    """
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:  # "http://[": no host at all
        return ""
    whatwg = _WHATWG_AUTHORITY.match(url)
    if whatwg is None or whatwg["authority"] != parts.netloc or any(ch.isspace() or not ch.isprintable() for ch in parts.netloc):
        return ""
    return host


def allowed(url: str, allowed_hosts: Iterable[str]) -> bool:
    host = host_of(url)
    if not host:
        return False
    return is_loopback(host) or host in {h.strip().lower().rstrip(".") for h in allowed_hosts}


def refuse_unless_allowed(url: str, allowed_hosts: Iterable[str], *, target_file: str, what: str = "base_url") -> None:
    """ConfigError (exit 3) unless ``url``'s host is loopback or in ``allowed_hosts``."""
    hosts = list(allowed_hosts)
    if allowed(url, hosts):
        return
    host = host_of(url) or url
    listed = ", ".join(hosts) if hosts else "none"
    raise ConfigError(
        [
            Problem(
                target_file,
                None,
                "load.allowed_hosts",
                f"load refused: {what} host {host!r} is neither loopback nor in load.allowed_hosts (listed: {listed}); no request was sent",
                f"if {host} really is the deployment to load, add it to load.allowed_hosts in the target file",
            )
        ]
    )
