"""Read what a server says about its rate limits: Retry-After and the three RateLimit header families.

Pure functions over a response's headers (names lower-cased) and "now"; nothing here does I/O.
Understood, in order of preference:

- ``Retry-After`` (RFC 9110 §10.2.3): delay-seconds or an HTTP-date;
- the IETF draft (draft-ietf-httpapi-ratelimit-headers-08 and later), Structured-Field lists
  (RFC 8941): ``RateLimit-Policy: "burst";q=100;w=60`` and ``RateLimit: "burst";r=50;t=30``;
- the draft-07 dictionary form ``RateLimit: limit=100, remaining=50, reset=30``;
- the drafts up to -06, ``RateLimit-Limit``/``-Remaining``/``-Reset`` (``RateLimit-Limit`` may carry
  a quota-policy list such as ``100, 100;w=60``: the first integer is the limit);
- the vendor family ``X-RateLimit-Limit``/``-Remaining``/``-Reset``, whose reset is sometimes a
  Unix time (GitHub) rather than seconds: a value that large is read as a time.

A value that cannot be read is not fatal: it becomes a ``problem`` in the result, so a check can
report "Retry-After present but unreadable" instead of crashing or pretending it was absent.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

# A reset value at least this large is a Unix time, not a number of seconds (2001-09-09).
EPOCH_THRESHOLD = 1_000_000_000
MAX_MEMBERS = 10  # members kept per field: evidence stays bounded whatever the server sends
MAX_RAW_CHARS = 200

BareItem = int | float | str | bytes | bool
Parameters = dict[str, BareItem]


@dataclass(frozen=True)
class QuotaPolicy:
    """One member of ``RateLimit-Policy``: a named quota over a window."""

    name: str  # "" when the field names no policy (the older integer form)
    quota: int | None  # q: requests (or ``unit``) per window
    window_s: int | None  # w: seconds
    unit: str | None = None  # qu: requests | content-bytes | concurrent-requests
    partitioned: bool = False  # pk present: the server says which partition (key) this counts

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "quota": self.quota, "window_s": self.window_s, "unit": self.unit, "partitioned": self.partitioned}


@dataclass(frozen=True)
class QuotaState:
    """How much of a quota is left and when it is whole again, from any of the families."""

    source: str  # "RateLimit", "RateLimit (draft-07)", "RateLimit-*", "X-RateLimit-*"
    name: str  # policy name; "" when the family has none
    remaining: int | None
    reset_s: float | None  # seconds from the answer until the quota is full again
    limit: int | None = None  # the older families state the limit next to the remaining count

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "name": self.name, "remaining": self.remaining, "reset_s": self.reset_s, "limit": self.limit}


@dataclass(frozen=True)
class RateLimitHeaders:
    """Everything one answer advertised about rate limits, plus what could not be read."""

    retry_after_s: float | None = None
    retry_after_raw: str | None = None
    policies: tuple[QuotaPolicy, ...] = ()
    states: tuple[QuotaState, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def families(self) -> tuple[str, ...]:
        found = ["Retry-After"] if self.retry_after_raw is not None else []
        if self.policies:
            found.append("RateLimit-Policy")
        found.extend(dict.fromkeys(s.source for s in self.states))
        return tuple(found)

    @property
    def advertised(self) -> bool:
        """Whether the answer said anything at all about a limit."""
        return bool(self.policies or self.states or self.retry_after_raw is not None)

    def min_remaining(self) -> int | None:
        """The most restrictive remaining count advertised, if any."""
        counts = [s.remaining for s in self.states if s.remaining is not None]
        return min(counts) if counts else None

    def full_reset_s(self) -> float | None:
        """Seconds until every advertised quota is whole again (and Retry-After has passed); None: nothing said."""
        waits = [s.reset_s for s in self.states if s.reset_s is not None]
        if self.retry_after_s is not None:
            waits.append(self.retry_after_s)
        return max(waits) if waits else None

    def to_json(self) -> dict[str, Any]:
        return {
            "families": list(self.families),
            "retry_after": self.retry_after_raw,
            "retry_after_s": self.retry_after_s,
            "policies": [p.to_json() for p in self.policies],
            "states": [s.to_json() for s in self.states],
            "problems": list(self.problems),
        }


# --------------------------------------------------------------------------- entry point


def parse(headers: Mapping[str, str], now: datetime) -> RateLimitHeaders:
    """Read every rate-limit field of one answer; ``headers`` has lower-case names, ``now`` is aware."""
    problems: list[str] = []
    retry_raw = headers.get("retry-after")
    retry_s: float | None = None
    if retry_raw is not None:
        retry_s = parse_retry_after(retry_raw, now)
        if retry_s is None:
            problems.append(f"Retry-After {_short(retry_raw)} is neither delay-seconds nor an HTTP-date")
    policies: list[QuotaPolicy] = []
    states: list[QuotaState] = []
    if (raw := headers.get("ratelimit-policy")) is not None:
        try:
            policies.extend(parse_policy(raw))
        except ValueError as exc:
            problems.append(f"RateLimit-Policy {_short(raw)}: {exc}")
    if (raw := headers.get("ratelimit")) is not None:
        try:
            states.extend(parse_ratelimit(raw))
        except ValueError as exc:
            problems.append(f"RateLimit {_short(raw)}: {exc}")
    for prefix, source in (("ratelimit-", "RateLimit-*"), ("x-ratelimit-", "X-RateLimit-*")):
        state = _legacy(headers, prefix, source, now, problems)
        if state is not None:
            states.append(state)
    return RateLimitHeaders(
        retry_after_s=retry_s,
        retry_after_raw=None if retry_raw is None else retry_raw[:MAX_RAW_CHARS],
        policies=tuple(policies[:MAX_MEMBERS]),
        states=tuple(states[:MAX_MEMBERS]),
        problems=tuple(problems),
    )


def parse_retry_after(value: str, now: datetime) -> float | None:
    """Seconds to wait: delay-seconds (digits only) or an HTTP-date (a past date means 0); None if neither."""
    text = value.strip()
    if re.fullmatch(r"[0-9]+", text):
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; parsedate gives naive for "-0000"
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def parse_policy(value: str) -> list[QuotaPolicy]:
    """``RateLimit-Policy``: ``"name";q=..;w=..`` members, or the older ``10;w=1`` integers."""
    policies = []
    for item, params in _list_items(value):
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise ValueError(f"a policy is a name or a quota, not {item!r}")
        name, quota = (item, _int(params.get("q"))) if isinstance(item, str) else ("", item)
        unit = params.get("qu")
        policies.append(
            QuotaPolicy(
                name=name,
                quota=quota,
                window_s=_int(params.get("w")),
                unit=unit if isinstance(unit, str) else None,
                partitioned="pk" in params,
            )
        )
    return policies


def parse_ratelimit(value: str) -> list[QuotaState]:
    """``RateLimit``: the draft's ``"name";r=..;t=..`` list, else the draft-07 ``limit=, remaining=, reset=`` dictionary."""
    try:
        items = _list_items(value)
    except ValueError as list_error:
        try:
            fields = _SfParser(value).dictionary()
        except ValueError:
            raise list_error from None
        if not {"limit", "remaining", "reset"} & fields.keys():
            raise ValueError("a dictionary without limit, remaining or reset") from None
        return [
            QuotaState(
                source="RateLimit (draft-07)",
                name="",
                remaining=_int(fields.get("remaining", (None, {}))[0]),
                reset_s=_seconds(fields.get("reset", (None, {}))[0]),
                limit=_int(fields.get("limit", (None, {}))[0]),
            )
        ]
    states = []
    for item, params in items:
        if not isinstance(item, str):
            raise ValueError(f"a RateLimit member names its policy, not {item!r}")
        states.append(QuotaState(source="RateLimit", name=item, remaining=_int(params.get("r")), reset_s=_seconds(params.get("t"))))
    return states


def _legacy(headers: Mapping[str, str], prefix: str, source: str, now: datetime, problems: list[str]) -> QuotaState | None:
    raw = {key: headers.get(prefix + key) for key in ("limit", "remaining", "reset")}
    if all(value is None for value in raw.values()):
        return None
    values: dict[str, float | None] = {}
    for key, text in raw.items():
        if text is None:
            values[key] = None
            continue
        # RateLimit-Limit of drafts -01..-03 may carry quota policies ("100, 100;w=60"): the first number is the limit.
        match = re.match(r"\s*([0-9]{1,15}(?:\.[0-9]{1,6})?)\s*(?:[,;]|$)", text)
        if match is None:
            problems.append(f"{source.removesuffix('*')}{key.capitalize()} {_short(text)} is not a number")
            values[key] = None
        else:
            values[key] = float(match.group(1))
    reset = values["reset"]
    if reset is not None and reset >= EPOCH_THRESHOLD:
        reset = max(0.0, reset - now.timestamp())
    limit, remaining = values["limit"], values["remaining"]
    return QuotaState(
        source=source,
        name="",
        remaining=None if remaining is None else int(remaining),
        reset_s=reset,
        limit=None if limit is None else int(limit),
    )


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _seconds(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or not math.isfinite(value):
        return None
    return float(value)


def _short(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


# --------------------------------------------------------------------------- RFC 8941 (the subset these fields use)


def _list_items(value: str) -> list[tuple[BareItem, Parameters]]:
    """Top-level items of a Structured-Field list; inner lists are refused (no rate-limit field uses them)."""
    return _SfParser(value).list()


class _SfParser:
    """Recursive descent over RFC 8941 lists and dictionaries of items with parameters."""

    _TOKEN_REST = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
    _KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*")
    _NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")

    def __init__(self, text: str) -> None:
        self.text = text.strip(" \t")
        self.pos = 0

    def list(self) -> list[tuple[BareItem, Parameters]]:
        members: list[tuple[BareItem, Parameters]] = []
        if not self.text:
            return members
        while True:
            members.append(self._item())
            if not self._next_member():
                return members

    def dictionary(self) -> dict[str, tuple[BareItem, Parameters]]:
        members: dict[str, tuple[BareItem, Parameters]] = {}
        if not self.text:
            return members
        while True:
            key = self._key()
            if self._peek() == "=":
                self.pos += 1
                members[key] = self._item()
            else:
                members[key] = (True, self._parameters())
            if not self._next_member():
                return members

    def _next_member(self) -> bool:
        self._skip(" \t")
        if self.pos >= len(self.text):
            return False
        if self._peek() != ",":
            raise ValueError(f"expected ',' at position {self.pos}")
        self.pos += 1
        self._skip(" \t")
        if self.pos >= len(self.text):
            raise ValueError("trailing ','")
        return True

    def _item(self) -> tuple[BareItem, Parameters]:
        if self._peek() == "(":
            raise ValueError("inner lists are not expected here")
        return self._bare_item(), self._parameters()

    def _parameters(self) -> Parameters:
        params: Parameters = {}
        while self._peek() == ";":
            self.pos += 1
            self._skip(" ")
            key = self._key()
            value: BareItem = True
            if self._peek() == "=":
                self.pos += 1
                value = self._bare_item()
            params[key] = value
        return params

    def _key(self) -> str:
        match = self._KEY.match(self.text, self.pos)
        if match is None:
            raise ValueError(f"expected a key at position {self.pos}")
        self.pos = match.end()
        return match.group(0)

    def _bare_item(self) -> BareItem:
        char = self._peek()
        if char == '"':
            return self._string()
        if char == "?":
            flag = self.text[self.pos + 1 : self.pos + 2]
            if flag not in ("0", "1"):
                raise ValueError(f"bad boolean at position {self.pos}")
            self.pos += 2
            return flag == "1"
        if char == ":":
            end = self.text.find(":", self.pos + 1)
            if end < 0:
                raise ValueError("unterminated byte sequence")
            try:
                decoded = base64.b64decode(self.text[self.pos + 1 : end], validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"bad byte sequence at position {self.pos}") from None
            self.pos = end + 1
            return decoded
        if char.isdigit() or char == "-":
            match = self._NUMBER.match(self.text, self.pos)
            if match is None:
                raise ValueError(f"bad number at position {self.pos}")
            self.pos = match.end()
            digits = match.group(0).lstrip("-").split(".")
            # RFC 8941 bounds: integers of at most 15 digits, decimals 12.3; also keeps every value a finite float.
            if len(digits[0]) > (12 if match.group(1) else 15) or (match.group(1) and len(digits[1]) > 3):
                raise ValueError(f"number out of range at position {match.start()}")
            return float(match.group(0)) if match.group(1) else int(match.group(0))
        if char.isalpha() or char == "*":
            match = self._TOKEN_REST.match(self.text, self.pos + 1)
            end = match.end() if match else self.pos + 1
            token = self.text[self.pos : end]
            self.pos = end
            return token
        raise ValueError(f"unexpected {char!r} at position {self.pos}" if char else "value ends too early")

    def _string(self) -> str:
        out: list[str] = []
        self.pos += 1
        while self.pos < len(self.text):
            char = self.text[self.pos]
            self.pos += 1
            if char == "\\":
                escaped = self.text[self.pos : self.pos + 1]
                if escaped not in ('"', "\\"):
                    raise ValueError("bad escape in string")
                out.append(escaped)
                self.pos += 1
            elif char == '"':
                return "".join(out)
            elif not " " <= char <= "~":
                raise ValueError("non-printable character in string")
            else:
                out.append(char)
        raise ValueError("unterminated string")

    def _peek(self) -> str:
        return self.text[self.pos : self.pos + 1]

    def _skip(self, chars: str) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in chars:
            self.pos += 1
