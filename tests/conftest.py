"""Fixtures shared by the harness's own tests."""

from __future__ import annotations

import os

import pytest

# Under RELEASEGATE_REQUIRE_REAL=1 (set by .ci/run) a test that would skip for a missing real
# component (nginx, prometheus, postgres, chromium...) fails instead.
REQUIRE_REAL = os.environ.get("RELEASEGATE_REQUIRE_REAL") == "1"


def require_binary(name: str) -> str:
    """Path of a real component's binary; skip locally, fail under RELEASEGATE_REQUIRE_REAL=1."""
    import shutil

    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian package needed; .ci/run installs it)"
        if REQUIRE_REAL:
            pytest.fail(message + " and RELEASEGATE_REQUIRE_REAL=1")
        pytest.skip(message)
    return path
