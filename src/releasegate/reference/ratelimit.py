"""Token buckets for the reference service, and the IETF RateLimit header fields that advertise them.

Time comes through one injected ``Clock`` (monotonic seconds) so the tests can step time instead
of sleeping. Nothing here touches the network: the edge middleware (app.py) asks a limiter for a
``Verdict`` and turns it into a 429 or into headers on the answer.

Header form follows draft-ietf-httpapi-ratelimit-headers (structured-field lists)::

    RateLimit-Policy: "ip";q=30;w=3
    RateLimit: "ip";r=29;t=1

plus the older ``RateLimit-Limit/-Remaining/-Reset`` trio that many clients still parse.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from releasegate.reference.settings import RateLimit

Clock = Callable[[], float]

# A limiter keyed by client IP must not grow without bound when a probe (or an attacker) rotates
# keys: the oldest idle bucket is dropped first, and a dropped bucket is simply a full one again.
MAX_KEYS = 10_000


@dataclass(frozen=True)
class Verdict:
    """One limiter's answer for one request: allowed or not, and what to advertise."""

    policy: str  # the policy's name in the RateLimit fields: "ip", "user", "login", ...
    allowed: bool
    burst: int  # q: the quota
    window_s: int  # w: seconds for an empty bucket to refill completely
    remaining: int  # r: whole tokens left after this request
    reset_s: int  # t: seconds until the bucket is full again
    retry_after_s: int  # seconds until one token is back (meaningful when not allowed)


class TokenBucket:
    """A classic token bucket: ``rate`` tokens per second, holding at most ``burst``; starts full."""

    def __init__(self, limit: RateLimit, clock: Clock) -> None:
        if limit.rate <= 0 or limit.burst < 1:
            raise ValueError(f"impossible rate limit {limit!r}: rate must be > 0 and burst >= 1")
        self.limit = limit
        self._clock = clock
        self._tokens = float(limit.burst)
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._stamp)  # a clock that steps back must not mint tokens
        self._tokens = min(float(self.limit.burst), self._tokens + elapsed * self.limit.rate)
        self._stamp = now

    def take(self, policy: str) -> Verdict:
        """Spend one token if there is one; either way say what the bucket looks like now."""
        self._refill()
        allowed = self._tokens >= 1.0
        if allowed:
            self._tokens -= 1.0
        rate, burst = self.limit.rate, self.limit.burst
        missing = burst - self._tokens
        return Verdict(
            policy=policy,
            allowed=allowed,
            burst=burst,
            window_s=max(1, math.ceil(burst / rate)),
            remaining=int(self._tokens),
            reset_s=math.ceil(missing / rate) if missing > 1e-9 else 0,
            retry_after_s=max(1, math.ceil((1.0 - self._tokens) / rate)) if not allowed else 0,
        )


class KeyedLimiter:
    """One token bucket per key (client IP, user name, connection...), all with the same policy."""

    def __init__(self, name: str, limit: RateLimit, clock: Clock = time.monotonic, max_keys: int = MAX_KEYS) -> None:
        self.name = name
        self.limit = limit
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, key: str) -> Verdict:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.limit, self._clock)
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(self.name)


def header_fields(verdicts: list[Verdict]) -> list[tuple[str, str]]:
    """The RateLimit fields for the policies that applied to a request, most restrictive first.

    Most restrictive first, so a client that reads only the first list member (or the legacy
    trio, which can carry one policy) sees the limit it is about to hit.
    """
    if not verdicts:
        return []
    ordered = sorted(verdicts, key=lambda v: (v.allowed, v.remaining))
    policy = ", ".join(f'"{v.policy}";q={v.burst};w={v.window_s}' for v in ordered)
    state = ", ".join(f'"{v.policy}";r={v.remaining};t={v.reset_s}' for v in ordered)
    first = ordered[0]
    fields = [
        ("RateLimit-Policy", policy),
        ("RateLimit", state),
        ("RateLimit-Limit", str(first.burst)),
        ("RateLimit-Remaining", str(first.remaining)),
        ("RateLimit-Reset", str(first.reset_s)),
    ]
    if not first.allowed:
        fields.append(("Retry-After", str(first.retry_after_s)))
    return fields
