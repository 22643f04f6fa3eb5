"""nginx as the TLS-terminating proxy in front of the reference service, the way the deployment
guide runs it. The test writes its own config into a temp dir, starts nginx on loopback ports
(no daemon, no system paths), and stops it. Nothing here is global: several can run at once.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from releasegate.reference.tls import MOZILLA_TLS12_CIPHERS, TlsPaths

STARTUP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ProxyConfig:
    """What differs between a well-run proxy and the broken ones the tests need."""

    protocols: str = "TLSv1.2 TLSv1.3"
    ciphers: str = MOZILLA_TLS12_CIPHERS
    hsts: bool = True
    # False: the upstream's HSTS passes through next to the proxy's own, so answers carry two
    # identical fields (the common `add_header ... always` setup in front of an app setting HSTS).
    hide_upstream_hsts: bool = True


@dataclass(frozen=True)
class RunningProxy:
    https_port: int
    http_port: int

    @property
    def base_url(self) -> str:
        return f"https://localhost:{self.https_port}"

    @property
    def http_url(self) -> str:
        return f"http://localhost:{self.http_port}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def render(config: ProxyConfig, *, tls: TlsPaths, upstream: str, https_port: int, http_port: int, prefix: Path) -> str:
    hsts = 'add_header Strict-Transport-Security "max-age=31536000; includeSubDomains" always;' if config.hsts else ""
    # The proxy owns HSTS: by default the upstream's copy is dropped so there is never two.
    hide_hsts = "proxy_hide_header Strict-Transport-Security;" if config.hide_upstream_hsts else ""
    # As root (CI), workers would run as nobody and could not use the temp dirs under pytest's
    # 0700 tmp folder (streamed request bodies would fail with 500); elsewhere nginx ignores it.
    user = "user root;" if os.geteuid() == 0 else ""
    return f"""
daemon off;
master_process on;
{user}
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server_tokens off;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    server {{
        listen 127.0.0.1:{http_port};
        server_name localhost;
        return 308 https://localhost:{https_port}$request_uri;
    }}
    server {{
        listen 127.0.0.1:{https_port} ssl;
        server_name localhost;
        ssl_certificate {tls.cert};
        ssl_certificate_key {tls.key};
        ssl_protocols {config.protocols};
        ssl_ciphers {config.ciphers};
        ssl_ecdh_curve X25519:prime256v1:secp384r1;
        ssl_prefer_server_ciphers off;
        ssl_session_tickets off;
        {hsts}
        location / {{
            proxy_pass {upstream};
            proxy_ssl_verify off;
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            {hide_hsts}
        }}
    }}
}}
"""


@contextmanager
def running_nginx(binary: str, config: ProxyConfig, *, tls: TlsPaths, upstream: str, workdir: Path) -> Iterator[RunningProxy]:
    workdir.mkdir(parents=True, exist_ok=True)
    proxy = RunningProxy(https_port=free_port(), http_port=free_port())
    conf = workdir / "nginx.conf"
    conf.write_text(render(config, tls=tls, upstream=upstream, https_port=proxy.https_port, http_port=proxy.http_port, prefix=workdir))
    process = subprocess.Popen([binary, "-p", str(workdir), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_listening(process, proxy.https_port, workdir)
        yield proxy
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGQUIT)  # graceful: workers finish, then the master exits
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if process.stderr is not None:
            process.stderr.close()


def _wait_listening(process: subprocess.Popen[bytes], port: int, workdir: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (workdir / "error.log").read_text(errors="replace") if (workdir / "error.log").exists() else ""
            raise RuntimeError(f"nginx exited with {process.returncode}: {log[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nginx did not listen on {port} within {STARTUP_TIMEOUT_S} s")
