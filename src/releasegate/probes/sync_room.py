"""Joining a sync conversation: run the target's ``sync.setup`` driver, then render the room's URL and frames.

Shared by the business sync checks (checks/postdeploy/business/test_sync.py), which prepare one
room on the target, and the canary's sync_latency probe (releasegate.canary.collect), which
prepares one on each side with that side's URLs in ``ctx``.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from releasegate._exceptions import ProbeError
from releasegate.config import SyncSettings
from releasegate.probes import sync as sync_probe
from releasegate.probes.api import token_allowed
from releasegate.probes.http import ssl_context
from releasegate.scenarios import ScenarioSuite, runner, template


@dataclass(frozen=True)
class Room:
    """A conversation ready to join: its WebSocket URL, how to compose each action's frame, how to connect."""

    url: str
    compose: sync_probe.Compose
    options: sync_probe.WsOptions


async def prepare_room(
    suite: ScenarioSuite,
    settings: SyncSettings,
    ctx: runner.RunContext,
    *,
    setup_s: float,
    actions: Sequence[str],
    ca_bundle: Path | None,
    timeout_s: float,
    max_frame_bytes: int,
) -> Room:
    """Run the setup driver and check that ``actions`` compose; ProbeError (or runner.DriverFailed) when any of it fails.

    The driver's outputs (a conversation id) join the built-in variables for ``sync.url`` and the
    actions' templates. A URL that would carry the token to another host is refused.
    """
    try:
        # The driver's own deadline: it stops itself and keeps its evidence, not cut by a backstop.
        outputs = await runner.run_driver(suite, settings.setup, ctx, {}, deadline_s=setup_s)
    except ValueError as exc:  # the driver declares inputs nobody gives it
        raise ProbeError(f"could not set up the conversation: driver {settings.setup}: {exc}") from None
    variables = runner.builtin_variables(ctx) | outputs
    try:
        url = template.render(settings.url, variables)
    except (template.UndefinedVariable, template.TemplateSyntaxError) as exc:
        raise ProbeError(f"sync.url: {exc} (neither the target nor driver {settings.setup}'s outputs define it)") from None
    if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
        raise ProbeError(f"sync.url renders to {str(url)[:120]!r}, not a ws:// or wss:// URL")
    refused = token_allowed(url, ctx.base_url, ctx.ws_url, explicit=False)
    if refused is not None:
        raise ProbeError(f"sync.url: {refused}")

    def compose(kind: str, marker: str) -> str:
        value: Any = template.render(settings.actions[kind], {**variables, "nonce": marker})
        return value if isinstance(value, str) else json.dumps(value)

    problem = sync_probe.composer_problem(compose, actions)
    if problem is not None:
        raise ProbeError(problem)
    verify = ctx.http.verify
    context = verify if isinstance(verify, ssl.SSLContext) else ssl_context(ca_bundle)
    return Room(url, compose, sync_probe.WsOptions(timeout_s=timeout_s, max_frame_bytes=max_frame_bytes, ssl=context))
