"""Pre-deploy WebSocket security: who may open the sync socket, from where, over what, and how much.

Each check probes the target's ws_url (plus ``websocket.query``) with the websockets client and
concludes one finding; the probes and judges live in :mod:`releasegate.probes.websocket`. The
connection-limit check runs last (registry order): the connections it opens must not count
against the controls of the others.
"""

from __future__ import annotations

import pytest

from releasegate.config import Gates, LoadedTarget
from releasegate.plugin import CheckRecorder
from releasegate.probes import websocket


def _url(target: LoadedTarget) -> str:
    return websocket.endpoint(target.target) or pytest.skip("the target names no ws_url")


def _settings(target: LoadedTarget, policy: Gates, *, token: bool = True) -> websocket.WsSettings:
    settings = websocket.settings_for(target, policy)
    if token and settings.token is None:
        pytest.skip("the target names no bearer token (auth.token_env): the valid-token control cannot run")
    return settings


@pytest.mark.check("security.websocket.auth")
def test_websocket_auth(check: CheckRecorder, target: LoadedTarget, policy: Gates) -> None:
    url = _url(target)
    check.conclude(websocket.check_auth(url, _settings(target, policy)))


@pytest.mark.check("security.websocket.origin")
def test_websocket_origin(check: CheckRecorder, target: LoadedTarget, policy: Gates) -> None:
    url = _url(target)
    check.conclude(websocket.check_origin(url, _settings(target, policy)))


@pytest.mark.check("security.websocket.tls")
def test_websocket_tls(check: CheckRecorder, target: LoadedTarget, policy: Gates) -> None:
    url = _url(target)
    check.conclude(websocket.check_plaintext(url, target.target.http_url, _settings(target, policy, token=False)))


@pytest.mark.check("security.websocket.message_size")
def test_websocket_message_size(check: CheckRecorder, target: LoadedTarget, policy: Gates) -> None:
    url = _url(target)
    limit = target.target.websocket.max_message_bytes
    check.conclude(websocket.check_message_size(url, limit, _settings(target, policy)))


@pytest.mark.check("security.websocket.connection_limit")
def test_websocket_connection_limit(check: CheckRecorder, target: LoadedTarget, policy: Gates) -> None:
    url = _url(target)
    cap = target.target.websocket.max_connections_per_user
    if cap is None:
        pytest.skip("the target names no websocket.max_connections_per_user")
    check.conclude(websocket.check_connection_limit(url, cap, _settings(target, policy)))
