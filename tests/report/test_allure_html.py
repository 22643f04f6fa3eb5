"""The browsable report: a failing gate run, `make report`, and the page a person sees in a browser.

Real components: Allure 3 (npm, node_modules/ from package-lock.json) builds the HTML, headless
Chromium (Debian package ``chromium``) renders it; the test reads the page's text after its scripts
ran, over the DevTools protocol. The report is one file (allurerc.yaml: singleFile), opened as
file:// the way a person opens it from a downloaded CI artifact, so no web server is involved, and
the browser resolves no name, so the page can load nothing from the network.
Skipped locally without node, Allure or Chromium, a failure under RELEASEGATE_REQUIRE_REAL=1.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from real import REQUIRE_REAL, require_binary
from releasegate.cli import main
from releasegate.reference.demo import running

pytestmark = pytest.mark.real

REPO = Path(__file__).resolve().parents[2]
ALLURE_CLI = REPO / "node_modules" / "allure" / "cli.js"
BROWSER_START_S = 20.0
RENDER_S = 20.0


def require_allure() -> None:
    require_binary("node")
    if not ALLURE_CLI.is_file():
        message = "Allure 3 is not installed: run `npm ci` in the repository (.ci/run does)"
        if REQUIRE_REAL:
            pytest.fail(message + " and RELEASEGATE_REQUIRE_REAL=1")
        pytest.skip(message)


class Page:
    """One browser tab over the DevTools protocol: send a command, wait for its answer."""

    def __init__(self, socket: ClientConnection) -> None:
        self._socket = socket
        self._ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        self._socket.send(json.dumps({"id": call_id, "method": method, "params": params}))
        deadline = time.monotonic() + RENDER_S
        while (left := deadline - time.monotonic()) > 0:
            message = json.loads(self._socket.recv(timeout=left))
            if message.get("id") == call_id:  # anything else is an event nobody subscribed to
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result
        raise AssertionError(f"{method}: no answer within {RENDER_S:g} s")

    def text(self) -> str:
        """The page's visible text (innerText: what is rendered, not what is in the markup)."""
        answer = self.call("Runtime.evaluate", expression="document.body ? document.body.innerText : ''", returnByValue=True)
        return str(answer["result"].get("value", ""))


@contextmanager
def chromium(url: str, profile: Path) -> Iterator[Page]:
    """Headless Chromium showing ``url``; its DevTools port is on loopback, picked by Chromium."""
    binary = require_binary("chromium")
    args = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        # No name resolves: the page gets nothing from the network (loopback-only tests), and a
        # report that needed it would show it here
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--window-size=1280,1000",
        f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
        url,
    ]
    log = (profile.parent / "chromium.log").open("wb")
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # Chromium writes the port it took into the profile once it listens
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + BROWSER_START_S
        while not (active.exists() and len(active.read_text().splitlines()) >= 2):
            assert process.poll() is None, f"chromium exited with {process.returncode}; see {log.name}"
            assert time.monotonic() < deadline, f"chromium did not open its DevTools port within {BROWSER_START_S:g} s"
            time.sleep(0.1)
        port = int(active.read_text().splitlines()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as answer:
            targets = json.load(answer)
        (tab,) = [t for t in targets if t["type"] == "page"]
        with connect(tab["webSocketDebuggerUrl"], max_size=64 * 2**20, open_timeout=5) as socket:
            yield Page(socket)
    finally:
        # Our own process group (start_new_session): the browser and the helpers it started
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()


def test_the_html_report_of_a_failing_run_shows_the_decision_and_the_failing_check(tmp_path: Path) -> None:
    require_allure()
    require_binary("chromium")
    make = require_binary("make")
    report_dir = tmp_path / "post-deploy"

    # Given a post-deploy gate run against the reference deployment with its database down
    with running(["db-down"]) as deployment:
        code = main(
            ["run", "--stage", "post-deploy", "--target", str(deployment.target_path), "--gates", str(deployment.gates_path)]
            + ["--report-dir", str(report_dir), "--only", "health.*"]
        )
    verdict = json.loads((report_dir / "verdict.json").read_text(encoding="utf-8"))
    assert (code, verdict["decision"]) == (1, "rollback"), verdict["reasons"]
    failed = [c["id"] for c in verdict["checks"] if c["outcome"] == "failed"]
    assert "health.readiness" in failed, verdict["checks"]

    # When `make report` builds the HTML (-o: never npm ci from a test, the packages are there)
    built = subprocess.run(
        [make, "--no-print-directory", "-o", "node_modules/.package-lock.json", "report", f"RESULTS={report_dir / 'allure-results'}"],
        cwd=REPO,
        # Not a sub-make of `make test`: its flags (and jobserver) do not apply here
        env={k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    index = report_dir / "allure-report" / "index.html"
    assert built.stdout.strip() == f"report: {index}"
    assert "googletagmanager" not in index.read_text(encoding="utf-8")  # make report cuts Allure's analytics out

    # Then a browser that opens it shows the decision and the failing check's id
    with chromium(index.as_uri(), tmp_path / "chromium-profile") as page:
        deadline = time.monotonic() + RENDER_S
        text = ""
        while time.monotonic() < deadline:
            text = page.text()
            if "ROLLBACK (exit 1)" in text and "health.readiness" in text:
                break
            time.sleep(0.25)
        shot = page.call("Page.captureScreenshot", format="png")
    screenshot = report_dir / "allure-report.png"
    screenshot.write_bytes(base64.b64decode(shot["data"]))
    assert "ROLLBACK (exit 1)" in text, text[:2000]
    for check_id in failed:
        assert check_id in text, (check_id, text[:2000])
    assert screenshot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)
