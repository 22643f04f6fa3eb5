"""A real Prometheus for the tests: started on a free loopback port, scraping loopback services.

Debian's ``prometheus`` package (the binary only: no systemd unit is involved). Each run gets a
temporary config (1 s scrape interval, https with the service's own CA) and TSDB folder, listens
on 127.0.0.1 only, logs to a file in its folder, and is always stopped: SIGTERM, then SIGKILL if
it has not exited within a few seconds. The free port is found by binding port 0 and letting it
go, so another process may take it before Prometheus binds it: then it is started once more on
another port.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
SCRAPE_INTERVAL = "1s"
START_ATTEMPTS = 2  # a second one only when the first port was taken meanwhile


class PortTaken(RuntimeError):
    """Prometheus exited because its port was taken between free_port() and its bind."""


@dataclass(frozen=True)
class ScrapeJob:
    """One https service to scrape: ``job`` becomes the series' job label."""

    job: str
    host_port: str  # e.g. localhost:43121 (the name must match the certificate)
    ca_path: Path
    server_name: str = "localhost"


@dataclass(frozen=True)
class RunningPrometheus:
    url: str  # http://127.0.0.1:<port>
    workdir: Path

    def query(self, promql: str, *, timeout_s: float = 5.0) -> dict[str, Any]:
        """The raw JSON answer of an instant query (whatever its status)."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - loopback http
                answer: dict[str, Any] = json.load(response)
        except urllib.error.HTTPError as exc:  # 400/422 carry the error document
            answer = json.load(exc)
        return answer

    def value(self, promql: str) -> float | None:
        """The single value of an instant query, or None (error, empty, several series)."""
        answer = self.query(promql)
        result = answer.get("data", {}).get("result") if answer.get("status") == "success" else None
        if not isinstance(result, list) or len(result) != 1:
            return None
        return float(result[0]["value"][1])

    def wait_until(self, promql: str, accept: Callable[[float], bool], *, timeout_s: float, what: str) -> float:
        """Poll ``promql`` until its value is accepted; RuntimeError (with the log) after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        last: float | None = None
        while time.monotonic() < deadline:
            last = self.value(promql)
            if last is not None and accept(last):
                return last
            time.sleep(0.25)
        raise RuntimeError(f"Prometheus: {what} not seen within {timeout_s:g} s (last value {last}); log:\n{self.log()}")

    def log(self) -> str:
        path = self.workdir / "prometheus.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def render_config(jobs: Sequence[ScrapeJob]) -> str:
    """prometheus.yml: one https job per service, every second."""
    lines = [
        "global:",
        f"  scrape_interval: {SCRAPE_INTERVAL}",
        f"  scrape_timeout: {SCRAPE_INTERVAL}",
        f"  evaluation_interval: {SCRAPE_INTERVAL}",
        "scrape_configs:",
    ]
    for job in jobs:
        lines += [
            f"  - job_name: {json.dumps(job.job)}",
            "    scheme: https",
            "    metrics_path: /metrics",
            "    tls_config:",
            f"      ca_file: {json.dumps(str(job.ca_path))}",
            f"      server_name: {json.dumps(job.server_name)}",
            "    static_configs:",
            f"      - targets: [{json.dumps(job.host_port)}]",
        ]
    return "\n".join(lines) + "\n"


def start_ready(binary: str, config: Path, workdir: Path) -> tuple[RunningPrometheus, subprocess.Popen[bytes]]:
    """Start Prometheus on a free loopback port with ``config`` and wait until it is ready.

    A port taken between choosing and binding is retried on another (START_ATTEMPTS). The caller
    owns the process: end it with :func:`stop`.
    """
    for attempt in range(1, START_ATTEMPTS + 1):
        port = free_port()
        prometheus = RunningPrometheus(url=f"http://127.0.0.1:{port}", workdir=workdir)
        process = _start(binary, config, workdir, port)
        try:
            _wait_ready(process, prometheus)
            return prometheus, process
        except PortTaken:
            stop(process)
            if attempt == START_ATTEMPTS:
                raise
        except BaseException:
            stop(process)
            raise
    raise AssertionError("unreachable: the last attempt raises")


@contextmanager
def running_prometheus(binary: str, jobs: Sequence[ScrapeJob], workdir: Path) -> Iterator[RunningPrometheus]:
    """Start Prometheus, wait until it is ready and every job's target is up; always stop it."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(render_config(jobs), encoding="utf-8")
    prometheus, process = start_ready(binary, config, workdir)
    try:
        for job in jobs:
            prometheus.wait_until(f'up{{job="{job.job}"}}', lambda v: v == 1, timeout_s=STARTUP_TIMEOUT_S, what=f"target {job.job} up")
        yield prometheus
    finally:
        stop(process)


def _start(binary: str, config: Path, workdir: Path, port: int) -> subprocess.Popen[bytes]:
    command = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=1h",
        "--log.level=warn",
    ]
    with (workdir / "prometheus.log").open("wb") as log:
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)


def _wait_ready(process: subprocess.Popen[bytes], prometheus: RunningPrometheus) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = prometheus.log()
            if "address already in use" in log:
                raise PortTaken(f"prometheus could not bind {prometheus.url}:\n{log}")
            raise RuntimeError(f"prometheus exited with {process.returncode}:\n{log}")
        try:
            with urllib.request.urlopen(f"{prometheus.url}/-/ready", timeout=1) as response:  # noqa: S310 - loopback http
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"prometheus was not ready within {STARTUP_TIMEOUT_S} s:\n{prometheus.log()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)
