"""The harness itself: a health endpoint that accepts and never answers ends in error and hold, within the deadline."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from harness import assert_fails_closed, run_gate


def test_a_server_that_never_answers_holds_within_the_deadline(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])  # accepted, never answered
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    port = listener.getsockname()[1]
    try:
        result = run_gate(
            tmp_path,
            target=f"name: silent\nbase_url: http://127.0.0.1:{port}\nhealth: {{liveness: /healthz}}\n",
            gates="deadline_s: 30\nprobe: {timeout_s: 2, retry: {timeout_s: 0}}\n",
            stage="post-deploy",
            only=["health.liveness"],
        )
    finally:
        stop.set()
        listener.close()
        for conn in held:
            conn.close()

    assert_fails_closed(result, affected=["health.liveness"], deadline_s=30, cause="no complete answer within 2 s")
    assert result.seconds < 30
