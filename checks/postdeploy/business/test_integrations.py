"""Post-deploy: every external dependency the target lists answers and is not degraded.

Components are read from the deep health document (one GET), URLs are fetched once each; the
whole judgement is retried within gates.yaml ``probe.retry`` while the deployment converges.
"""

from __future__ import annotations

import pytest

from releasegate.config import Gates, LoadedTarget
from releasegate.plugin import CheckRecorder
from releasegate.probes import integrations
from releasegate.probes.http import HttpSettings
from releasegate.probes.retry import until_passed


@pytest.mark.check("business.integrations")
def test_integrations(check: CheckRecorder, target: LoadedTarget, policy: Gates, http_settings: HttpSettings) -> None:
    if not target.target.integrations:
        pytest.skip("the target lists no integrations (key: integrations)")
    check.conclude(until_passed(lambda: integrations.measure(target.target, http_settings), policy.probe.retry))
