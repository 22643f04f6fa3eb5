"""ProfileShape: the profile's stages (and open model) as a Locust LoadTestShape.

The schedule itself is plain data (:meth:`releasegate.load.profiles.LoadProfile.tick_at`, tested
over simulated time); this class only hands it to Locust, about once a second. ``tick()`` returns
None once the profile is over, and never later than its ``max_duration_s`` (or
RELEASEGATE_MAX_DURATION_S, if lower). With RELEASEGATE_PROFILE=none the shape is abstract, so
Locust's own -u/-r/-t (or its web-UI form) decide instead.
"""

from __future__ import annotations

from locust import LoadTestShape, User
from rg_settings import SETTINGS
from rg_users import USER_CLASSES


class ProfileShape(LoadTestShape):
    abstract = SETTINGS.profile is None

    def tick(self) -> tuple[int, float, list[type[User]]] | None:
        profile = SETTINGS.profile
        if profile is None:
            return None
        step = profile.tick_at(self.get_run_time(), cap_s=SETTINGS.max_duration_s)  # type: ignore[no-untyped-call]
        if step is None:
            return None
        return step.users, step.spawn_rate, [USER_CLASSES[name] for name in step.user_classes]
