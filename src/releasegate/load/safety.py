"""Where load may go: loopback always, any other host only when the target lists it.

Load against the wrong host is an incident, so the check happens before anything starts (no
Locust process, no request) and a refusal is a configuration error (exit 3) naming the host,
the target file and the key to change. Worker processes check again, against the host the
master hands them, since a remote master could name any host.
"""

from __future__ import annotations

import ipaddress
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


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


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
