"""releasegate's Locust users and load shape: ``locust -f loadtests/locustfile.py``.

Run it as any locustfile (web UI, headless, distributed) or through ``releasegate load``; both
read the same environment (rg_settings.py): RELEASEGATE_TARGET, RELEASEGATE_PROFILE, ... The
classes live in the rg_* modules beside this file, named so they cannot clash with installed
packages. See loadtests/README.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import locust  # first: it monkey-patches the process with gevent before anything opens a socket

# Importable by path too (the gate's runner, tests), not only through Locust, which adds this folder itself.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import rg_settings  # noqa: E402
import rg_users  # noqa: E402
from locust.env import Environment  # noqa: E402
from locust.runners import MasterRunner  # noqa: E402
from rg_settings import SETTINGS  # noqa: E402
from rg_shapes import ProfileShape  # noqa: E402
from rg_users import ArrivalUser, ConversationUser, SyncUser  # noqa: E402

from releasegate.load.profiles import KNOWN_USER_CLASSES  # noqa: E402

__all__ = ["ArrivalUser", "ConversationUser", "ProfileShape", "SyncUser"]

# Profiles name classes by these names; a class renamed here must be renamed there too.
assert set(KNOWN_USER_CLASSES) == {ConversationUser.__name__, SyncUser.__name__, ArrivalUser.__name__} == set(rg_users.USER_CLASSES)


def _refuse_unsafe_runs(environment: Environment, **_: object) -> None:
    """Before any user starts: exit 3 for a host outside the allowlist or a missing token.

    A worker learns the host from its master later; every user checks again before its first request.
    """
    problems = SETTINGS.problems(environment.host or SETTINGS.base_url)
    if isinstance(environment.runner, MasterRunner):
        # The master sends no requests: its workers need the tokens, and check them themselves.
        problems = [p for p in problems if not p.startswith(rg_settings.TOKEN_PROBLEM)]
    if problems:
        for problem in problems:
            print(f"releasegate load: {problem}", file=sys.stderr, flush=True)
        raise SystemExit(3)


def _fresh_run(**_: object) -> None:
    rg_users.reset()


locust.events.init.add_listener(_refuse_unsafe_runs)
locust.events.test_start.add_listener(_fresh_run)
