"""Real components (nginx, prometheus, postgres, chromium...): found, or skipped, or failed.

Under RELEASEGATE_REQUIRE_REAL=1 (set by .ci/run, which installs them) a test that would skip
for a missing component fails instead: CI must never go green by skipping the real thing.
"""

from __future__ import annotations

import os
import shutil

import pytest

REQUIRE_REAL = os.environ.get("RELEASEGATE_REQUIRE_REAL") == "1"
# Debian installs daemons under sbin, which is not on every user's PATH.
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def require_binary(name: str) -> str:
    """Path of a real component's binary; skip locally, fail under RELEASEGATE_REQUIRE_REAL=1."""
    path = shutil.which(name, path=SEARCH_PATH)
    if path is None:
        message = f"{name} is not installed (Debian package needed; .ci/run installs it)"
        if REQUIRE_REAL:
            pytest.fail(message + " and RELEASEGATE_REQUIRE_REAL=1")
        pytest.skip(message)
    return path
