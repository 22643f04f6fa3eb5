"""The scenario file format, as frozen models (parsing and checks across steps: loader.py).

A scenario is a named list of steps; each step does exactly one thing::

    name: conversation                      # check id business.scenario.conversation (default: file stem)
    description: Start a conversation, post a message, the assistant replies.
    inputs: {prompt: "How do I sort a list?"}   # variables with defaults; a caller (driver) may override
    steps:
      - name: start a conversation
        http: {method: POST, path: /api/v1/conversations, as: primary, json: {title: "gate ${run_id}"}}
        expect: {status: 201, json: {"$.id": {matches: "^[0-9a-f]+$"}}, max_ms: 2000}
        save: {conversation_id: "$.id"}
      - name: listen
        ws_connect: {connection: alice, url: "${ws_url}?conversation=${conversation_id}", as: primary}
      - name: the assistant replies
        ws_expect:
          connection: alice
          match: {"$.type": message.created, "$.sender": assistant}
          expect: {"$.data.text": {contains: "```python"}}
          within_ms: 3000
        save: {reply: "$.data.text"}

Variables are written ``${name}`` inside any string (``$$`` is a literal ``$``); they come from
``inputs``, from ``save`` of an earlier step, or are built in (:data:`BUILTIN_VARIABLES`). A
value that is exactly one variable keeps its type. Files under ``drivers/`` have the same format
and are procedures other checks call (they declare ``outputs``); files under ``golden/`` are
golden prompt sets (:class:`GoldenSet`). ``http.path`` is another spelling of ``http.url``.
The user's reference is scenarios/README.md.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from releasegate.config import Identity

# Variables every scenario may use without defining them.
BUILTIN_VARIABLES = frozenset({"run_id", "base_url", "ws_url"})
MAX_STEPS = 100  # evidence lists every step run: keep it bounded
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
JsonType = Literal["string", "number", "integer", "boolean", "array", "object", "null"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Matcher(_Strict):
    """A test on one value; every key given must hold. A plain (non-mapping) value in an
    expectation means ``equals``; to compare against a mapping write ``{equals: {...}}``."""

    equals: Any = None
    matches: str | None = None  # regular expression, searched (re.search) in the value as text
    contains: str | None = None  # substring of the value as text
    exists: bool | None = None  # the path resolves (true) or does not (false)
    type: JsonType | None = None
    min_length: int | None = Field(default=None, ge=0)  # of a string, array or object
    # ``equals: null`` is told apart from "no equals key" by ``model_fields_set``.


class Expect(_Strict):
    """What an HTTP answer must look like."""

    status: int | list[int] | None = None
    # JSON path ($.a.b[0]) -> value or Matcher
    json_: dict[str, Any] = Field(default_factory=dict, alias="json")
    # header name (case-insensitive) -> value or Matcher
    headers: dict[str, Any] = Field(default_factory=dict)
    body_contains: str | None = None
    # Budget for the whole exchange, in milliseconds.
    max_ms: float | None = Field(default=None, gt=0)


class HttpRequest(_Strict):
    method: str = "GET"
    # Relative to base_url (starts with /) or an absolute URL (${base_url} works too);
    # ``path`` is accepted as another spelling of the same key.
    url: str
    as_: Identity = Field(default="primary", alias="as")
    headers: dict[str, str] = Field(default_factory=dict)
    json_: Any = Field(default=None, alias="json")
    body: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _path_is_url(cls, data: Any) -> Any:
        if isinstance(data, dict) and "path" in data:
            if "url" in data:
                raise ValueError("url or path: give one (they are the same key)")
            data = {("url" if key == "path" else key): value for key, value in data.items()}
        return data

    @model_validator(mode="after")
    def _one_body(self) -> HttpRequest:
        if self.method.upper() not in HTTP_METHODS:
            raise ValueError(f"method must be one of {', '.join(HTTP_METHODS)}")
        if self.json_ is not None and self.body is not None:
            raise ValueError("json or body: give at most one")
        return self


class WsConnect(_Strict):
    connection: str = Field(min_length=1)  # name later steps use
    url: str  # ws:// or wss:// URL; ${ws_url} is the target's
    as_: Identity = Field(default="primary", alias="as")
    headers: dict[str, str] = Field(default_factory=dict)


class WsSend(_Strict):
    connection: str
    json_: Any = Field(default=None, alias="json")
    text: str | None = None

    @model_validator(mode="after")
    def _one_payload(self) -> WsSend:
        if (self.json_ is None) == (self.text is None):
            raise ValueError("json or text: give exactly one")
        return self


class WsExpect(_Strict):
    """Wait for an event (a JSON text frame) on a connection matching every path given.

    Events that do not match are skipped (they stay visible in the evidence); the step fails
    when none matched within ``within_ms`` or the connection closed.
    """

    connection: str
    match: dict[str, Any] = Field(min_length=1)  # JSON path -> value or Matcher
    # Then the event that matched must also satisfy these (JSON path -> value or Matcher): a
    # wrong reply fails at once with its content, instead of waiting for a matching one.
    expect: dict[str, Any] = Field(default_factory=dict)
    within_ms: float = Field(default=5000.0, gt=0, le=600_000)


class WsClose(_Strict):
    connection: str


class Step(_Strict):
    name: str = Field(min_length=1)
    # Exactly one action:
    http: HttpRequest | None = None
    ws_connect: WsConnect | None = None
    ws_send: WsSend | None = None
    ws_expect: WsExpect | None = None
    ws_close: WsClose | None = None
    # For http only:
    expect: Expect | None = None
    # For http and ws_expect: variable -> JSON path of the answer/event ("header:Name" for a header).
    save: dict[str, str] = Field(default_factory=dict)
    # Upper bound on the step, whatever it does.
    timeout_ms: float = Field(default=10_000.0, gt=0, le=600_000)

    @model_validator(mode="after")
    def _one_action(self) -> Step:
        actions = [name for name in ACTIONS if getattr(self, name) is not None]
        if len(actions) != 1:
            raise ValueError(f"name exactly one action per step ({', '.join(ACTIONS)}); this step has {len(actions)}")
        if self.expect is not None and self.http is None:
            raise ValueError("expect belongs to an http step (a ws_expect step takes its own ws_expect.expect)")
        if self.save and self.http is None and self.ws_expect is None:
            raise ValueError("save belongs to an http or ws_expect step")
        return self

    @property
    def action(self) -> str:
        return next(name for name in ACTIONS if getattr(self, name) is not None)


ACTIONS = ("http", "ws_connect", "ws_send", "ws_expect", "ws_close")


class Scenario(_Strict):
    name: str | None = None  # default: the file name without .yaml
    description: str = ""
    # Variables a caller may set, with their defaults; null: a driver's caller must give it.
    inputs: dict[str, str | None] = Field(default_factory=dict)
    # Drivers: the variables they promise to save for their caller.
    outputs: list[str] = Field(default_factory=list)
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)


class GoldenCheck(_Strict):
    """One test on the assistant's reply; exactly one key.

    ``python_parses``, ``defines`` and ``json_schema`` read the first fenced block tagged with
    the language (python, python3, py, py3; json), else the first untagged fenced block, else
    the whole reply (:func:`releasegate.probes.golden.code_block`). ``regex`` and ``not_regex``
    search the first 64 KiB of the reply.
    """

    regex: str | None = None  # searched in the reply
    not_regex: str | None = None  # must not occur
    python_parses: bool | None = None  # the code (see above) is valid Python
    defines: str | None = None  # ... and defines this name (def, class, assignment or import)
    json_schema: dict[str, Any] | None = None  # the JSON (see above) validates
    min_length: int | None = Field(default=None, ge=1)  # characters

    @model_validator(mode="after")
    def _one_test(self) -> GoldenCheck:
        given = [name for name in type(self).model_fields if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"name exactly one test per check ({', '.join(type(self).model_fields)})")
        return self


class GoldenCase(_Strict):
    name: str = Field(min_length=1)
    prompt: str = Field(min_length=1)
    checks: list[GoldenCheck] = Field(min_length=1)


class GoldenSet(_Strict):
    """scenarios/golden/<set>.yaml: prompts and what a good reply contains."""

    # Driver that asks the assistant: it receives the prompt as input ``input`` and saves the
    # reply as ``output``.
    driver: str
    input: str = "prompt"
    output: str = "reply"
    cases: list[GoldenCase] = Field(min_length=1)
