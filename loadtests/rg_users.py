"""The virtual users: ConversationUser (REST), SyncUser (WebSocket) and ArrivalUser (open-model pacer).

Every sample goes through Locust's request event, under names the gate reads back:

    POST/GET ...   HTTP, ids grouped: /api/v1/conversations/[id]/messages, /api/v1/tool-runs/[id], ...
    WS  "sync edit->event"     an edit sent until its event (the server echoes to the sender) came back
    WS  "sync connect"         the WebSocket upgrade, and a connection lost while in use (failure)
    ARRIVAL "dropped iteration" an open-model arrival that found every virtual user busy (failure)

Users act as the target's identities round robin, with tokens from the environment: logging in
per virtual user would run into the login rate limit (the reference allows 10/s per IP). A
profile with ``login: true`` logs in instead, for deployments that issue short-lived tokens.

SyncUser uses websocket-client, which gevent can patch; the asyncio ``websockets`` package would
block the whole worker. One receive-loop greenlet per connection matches events to the edits
waiting for them by nonce, so the edit rate does not drop when events are late (the latency shows).
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import time
from typing import Any, ClassVar
from urllib.parse import quote

import gevent
import websocket
from gevent.event import AsyncResult
from gevent.pool import Pool
from locust import between, constant, task
from locust.contrib.fasthttp import FastHttpUser
from locust.exception import StopUser
from rg_settings import SETTINGS, Settings, http_ssl_context_factory, scrub, ws_ssl_context

from releasegate.config import Identity

log = logging.getLogger("releasegate.load")

CONVERSATIONS = "/api/v1/conversations"
MESSAGES = "/api/v1/conversations/[id]/messages"
PARTICIPANTS = "/api/v1/conversations/[id]/participants"
TOOLS = "/api/v1/conversations/[id]/tools"
TOOL_RUN = "/api/v1/tool-runs/[id]"
COMPLETIONS = "/api/v1/assistant/completions"
ME = "/api/v1/me"
SYNC_EDIT = "sync edit->event"
SYNC_CONNECT = "sync connect"
DROPPED = "dropped iteration"
CUT_AT_STOP = "iteration cut at stop"

TOOL_POLLS = 5  # a tool run not finished after this many polls is a failed sample
TOOL_POLL_INTERVAL_S = 0.2
WS_CONNECT_TIMEOUT_S = 10.0
WS_RECV_WAIT_S = 0.5  # how often the receive loop looks for edits whose event is overdue
ROOM_WAIT_S = 15.0  # a SyncUser waits this long for the first of its room to open the conversation
MAX_PENDING = 500  # edits waiting for their event, per connection
DRAIN_S = 5.0  # after the last arrival, in-flight iterations get this long before the pacer idles
# At stop, at most this many unfired arrivals are reported one by one (a stop long before the end of
# a fast schedule would otherwise fire millions of events from on_stop); past it the rest is logged.
MAX_REPORTED_AT_STOP = 10_000
LINT_CODE = "def add(a, b):\n    return a + b\n"

_user_numbers = itertools.count()
_sync_numbers = itertools.count()


class LoadError(Exception):
    """A failed sample that is not an HTTP answer (sync timeout, lost connection, dropped arrival)."""


def reset() -> None:
    """A new run (test_start): number users and rooms afresh."""
    global _user_numbers, _sync_numbers
    _user_numbers, _sync_numbers = itertools.count(), itertools.count()
    SyncUser.rooms.clear()
    _BaseUser.usernames.clear()


def _json_field(response: Any, key: str) -> Any:
    # json.loads on the bytes: JSON on the wire is UTF-8 (RFC 8259), and decoding to text first
    # (FastResponse.json does) costs as much as the parse, on every checked request.
    try:
        body = json.loads(response.content)
    except Exception:  # noqa: BLE001 - any undecodable body is simply "no such field"
        return None
    return body.get(key) if isinstance(body, dict) else None


@functools.lru_cache(maxsize=4096)
def _messages_path(cid: str) -> str:
    # The same few conversations are read and written on every task: quote each id once.
    return f"{CONVERSATIONS}/{quote(cid)}/messages"


class _BaseUser(FastHttpUser):
    """Identity, token and the host allowlist, shared by the three user classes."""

    abstract = True
    insecure = False
    connection_timeout = 10.0
    network_timeout = 30.0
    # identity -> username (GET /api/v1/me), for adding collaborators to a conversation.
    usernames: ClassVar[dict[str, AsyncResult]] = {}

    def __init__(self, environment: Any) -> None:
        # An instance attribute: as a class attribute the function would become a bound method.
        self.ssl_context_factory = http_ssl_context_factory(SETTINGS.ca_bundle)
        super().__init__(environment)
        self.number = next(_user_numbers)
        # Workers number their users from 0 each: offset by the worker's index, or every worker
        # would start with the same identity.
        self.offset = int(getattr(environment.runner, "worker_index", 0) or 0)
        self.identity = self.identity_for(self.number)
        self.token: str | None = None

    def identity_for(self, number: int) -> Identity:
        return SETTINGS.identities[(number + self.offset) % len(SETTINGS.identities)]

    # -- setup

    def on_start(self) -> None:
        self._refuse_unless_allowed()
        self.token = self._acquire_token()

    def _refuse_unless_allowed(self) -> None:
        problems = SETTINGS.problems(self.host)
        if not problems:
            return
        for problem in problems:
            log.error("releasegate load: %s", problem)
        self.environment.process_exit_code = 3
        if self.environment.runner is not None:
            gevent.spawn(self.environment.runner.quit)
        raise StopUser()

    def _acquire_token(self) -> str:
        profile = SETTINGS.profile
        if profile is not None and profile.login and SETTINGS.login is not None:
            credentials = SETTINGS.login_credentials()
            assert credentials is not None  # problems() refused the run otherwise
            body = {"username": credentials[0], "password": credentials[1]}
            with self.client.post(SETTINGS.login.path, json=body, name=SETTINGS.login.path, catch_response=True) as response:
                token = _json_field(response, "access_token")
                if response.ok and not isinstance(token, str):
                    response.failure("the login answer has no access_token")
            if not isinstance(token, str):
                raise StopUser()
            return token
        token = SETTINGS.token_of(self.identity)
        if not token:
            raise StopUser()  # problems() names it; nothing to send without one
        return token

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    # -- requests shared by the users

    def create_conversation(self, title: str, token: str | None = None) -> str | None:
        with self.client.post(
            CONVERSATIONS, json={"title": title}, headers=self.auth(token), name=CONVERSATIONS, catch_response=True
        ) as response:
            cid = _json_field(response, "id")
            if response.ok and not isinstance(cid, str):
                response.failure("the answer names no conversation id")
        return cid if isinstance(cid, str) else None

    def post_message(self, cid: str, text: str, token: str | None = None) -> None:
        self.client.post(_messages_path(cid), json={"text": text}, headers=self.auth(token), name=MESSAGES)

    def read_messages(self, cid: str, token: str | None = None) -> None:
        with self.client.get(_messages_path(cid), headers=self.auth(token), name=MESSAGES, catch_response=True) as response:
            if response.ok and not isinstance(_json_field(response, "messages"), list):
                response.failure("the answer has no messages list")

    def username_of(self, identity: Identity) -> str | None:
        """Who ``identity`` is (cached per run); None if the service would not say."""
        result = _BaseUser.usernames.get(identity)
        if result is None:
            result = _BaseUser.usernames[identity] = AsyncResult()
            token = SETTINGS.token_of(identity)
            name = None
            if token:
                with self.client.get(ME, headers=self.auth(token), name=ME, catch_response=True) as response:
                    name = _json_field(response, "username")
                    if response.ok and not isinstance(name, str):
                        response.failure("the answer names no username")
            result.set(name if isinstance(name, str) else None)
        try:
            value = result.get(timeout=ROOM_WAIT_S)
        except gevent.Timeout:
            return None
        return value if isinstance(value, str) else None


class ConversationUser(_BaseUser):
    """A developer in a conversation with the assistant: messages, reads, tool runs, completions."""

    weight = 3
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        super().on_start()
        self.posted = 0
        self.cid: str | None = self.create_conversation(f"releasegate load {self.number}")

    def conversation(self) -> str | None:
        if self.cid is None:
            self.cid = self.create_conversation(f"releasegate load {self.number}")
        return self.cid

    @task(4)
    def post(self) -> None:
        if (cid := self.conversation()) is not None:
            self.posted += 1
            self.post_message(cid, f"please refactor step {self.posted} of the parser")

    @task(3)
    def read(self) -> None:
        if (cid := self.conversation()) is not None:
            self.read_messages(cid)

    @task(1)
    def run_tool(self) -> None:
        cid = self.conversation()
        if cid is None:
            return
        with self.client.post(
            f"{CONVERSATIONS}/{quote(cid)}/tools",
            json={"tool": "lint", "code": LINT_CODE},
            headers=self.auth(),
            name=TOOLS,
            catch_response=True,
        ) as response:
            run_id = _json_field(response, "run_id")
            if response.ok and not isinstance(run_id, str):
                response.failure("the answer names no run_id")
        if not isinstance(run_id, str):
            return
        for attempt in range(TOOL_POLLS):
            gevent.sleep(TOOL_POLL_INTERVAL_S)
            with self.client.get(f"/api/v1/tool-runs/{quote(run_id)}", headers=self.auth(), name=TOOL_RUN, catch_response=True) as polled:
                status = _json_field(polled, "status")
                if status == "finished":
                    return
                if attempt == TOOL_POLLS - 1 and polled.ok:
                    polled.failure(f"tool run still {status!r} after {TOOL_POLLS} polls")

    @task(1)
    def complete(self) -> None:
        with self.client.post(
            COMPLETIONS,
            json={"prompt": "write a function that adds two numbers"},
            headers=self.auth(),
            name=COMPLETIONS,
            catch_response=True,
        ) as response:
            if response.ok and not isinstance(_json_field(response, "text"), str):
                response.failure("the answer has no text")


class SyncUser(_BaseUser):
    """A collaborator on the WebSocket sync channel: edits (timed to their event) and typing.

    SyncUsers share conversations in rooms of the profile's ``sync_room_size``: the first of a
    room creates it and adds the others' identities, the rest join, so edits fan out as they do
    between real collaborators.
    """

    weight = 1
    wait_time = between(0.2, 1.0)
    # room number -> conversation id (None: the room could not be opened), for this run.
    rooms: ClassVar[dict[int, AsyncResult]] = {}

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        # Numbered among SyncUsers only, so that a room's identities are known to its creator.
        self.sync_number = next(_sync_numbers)
        self.identity = self.identity_for(self.sync_number)
        self.cid: str | None = None
        self.ws: websocket.WebSocket | None = None
        self.receiver: gevent.Greenlet | None = None
        self.closing = False
        self.sent = 0
        # nonce -> (perf_counter, wall clock) of the edit waiting for its event
        self.pending: dict[str, tuple[float, float]] = {}

    def on_start(self) -> None:
        super().on_start()
        self.cid = self._join_room()
        if self.cid is not None:
            self._connect()

    def on_stop(self) -> None:
        self.closing = True
        if self.receiver is not None:
            self.receiver.kill(block=True, timeout=2)
        if self.ws is not None:
            try:
                self.ws.close(timeout=1)
            except Exception:  # noqa: BLE001 - the connection is going away either way
                pass
        self.ws, self.pending = None, {}

    # -- room and connection

    def _room_size(self) -> int:
        return SETTINGS.profile.sync_room_size if SETTINGS.profile is not None else 2

    def _join_room(self) -> str | None:
        room = self.sync_number // self._room_size()
        result = SyncUser.rooms.get(room)
        if result is None:
            result = SyncUser.rooms[room] = AsyncResult()
            cid = self._open_room(room)
            result.set(cid)
            return cid
        try:
            cid = result.get(timeout=ROOM_WAIT_S)
        except gevent.Timeout:
            cid = None
        # Without a shared room the edits still deserve measuring: work alone.
        return cid if isinstance(cid, str) else self.create_conversation(f"releasegate sync {self.sync_number}")

    def _open_room(self, room: int) -> str | None:
        cid = self.create_conversation(f"releasegate sync room {room}")
        if cid is None or (SETTINGS.profile is not None and SETTINGS.profile.login):
            return cid  # one login user: nobody else to add
        size = self._room_size()
        members = {self.identity_for(n) for n in range(room * size, room * size + size)}
        for identity in sorted(members - {self.identity}):
            username = self.username_of(identity)
            if username is not None:
                self.client.post(
                    f"{CONVERSATIONS}/{quote(cid)}/participants", json={"username": username}, headers=self.auth(), name=PARTICIPANTS
                )
        return cid

    def _connect(self) -> None:
        assert self.cid is not None
        url = SETTINGS.ws_url_for(self.host or "")
        url += ("&" if "?" in url else "?") + "conversation=" + quote(self.cid)
        options: dict[str, Any] = {}
        if url.startswith("wss://"):
            options["sslopt"] = {"context": ws_ssl_context(SETTINGS.ca_bundle)}
        started, wall = time.perf_counter(), time.time()
        try:
            ws = websocket.create_connection(
                url,
                header=[f"Authorization: Bearer {self.token}"],
                timeout=WS_CONNECT_TIMEOUT_S,
                suppress_origin=True,  # not a browser; a wrong Origin would be refused
                **options,
            )
        except Exception as exc:  # noqa: BLE001 - every way a connection can fail is one failed sample
            self._fire(SYNC_CONNECT, started, wall, error=f"cannot connect: {type(exc).__name__}: {exc}")
            return
        self._fire(SYNC_CONNECT, started, wall)
        ws.settimeout(WS_RECV_WAIT_S)
        self.ws, self.closing = ws, False
        self.receiver = gevent.spawn(self._receive_loop, ws)

    def _usable(self) -> websocket.WebSocket | None:
        if self.ws is None or not self.ws.connected:
            if self.cid is None:
                self.cid = self._join_room()
            if self.cid is not None:
                self._connect()
        return self.ws

    # -- measuring

    def _fire(self, name: str, started: float, wall: float, *, length: int = 0, error: str | None = None) -> None:
        self.environment.events.request.fire(
            request_type="WS",
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=length,
            response=None,
            context={},
            exception=None if error is None else LoadError(scrub(error, SETTINGS)),
            start_time=wall,
            url=None,
        )

    def _receive_loop(self, ws: websocket.WebSocket) -> None:
        # Bounded by the connection: each recv waits at most WS_RECV_WAIT_S, and the loop ends
        # when the connection closes or on_stop kills it.
        while not self.closing:
            try:
                frame = ws.recv()
            except websocket.WebSocketTimeoutException:
                self._expire()
                continue
            except (websocket.WebSocketException, OSError) as exc:
                self._lost(ws, f"{type(exc).__name__}: {exc}")
                return
            if not frame and not ws.connected:
                self._lost(ws, "closed by the server")
                return
            self._on_frame(frame)
            self._expire()

    def _on_frame(self, frame: str | bytes) -> None:
        try:
            event = json.loads(frame)
        except (ValueError, TypeError):
            return
        data = event.get("data") if isinstance(event, dict) else None
        nonce = data.get("nonce") if isinstance(data, dict) else None
        if isinstance(nonce, str) and nonce in self.pending:
            started, wall = self.pending.pop(nonce)
            self._fire(SYNC_EDIT, started, wall, length=len(frame))

    def _expire(self) -> None:
        timeout = SETTINGS.profile.sync_timeout_s if SETTINGS.profile is not None else 5.0
        now = time.perf_counter()
        for nonce, (started, wall) in list(self.pending.items()):
            if now - started > timeout:
                del self.pending[nonce]
                self._fire(SYNC_EDIT, started, wall, error=f"no event for the edit within {timeout:g} s")

    def _lost(self, ws: websocket.WebSocket, why: str) -> None:
        if self.closing:
            return
        for started, wall in self.pending.values():
            self._fire(SYNC_EDIT, started, wall, error=f"connection lost before the event arrived ({why})")
        self.pending = {}
        self._fire(SYNC_CONNECT, time.perf_counter(), time.time(), error=f"connection lost: {why}")
        if self.ws is ws:
            self.ws = None

    def _send(self, message: dict[str, Any]) -> bool:
        ws = self._usable()
        if ws is None:
            return False
        try:
            ws.send(json.dumps(message))
        except (websocket.WebSocketException, OSError) as exc:
            self._lost(ws, f"{type(exc).__name__}: {exc}")
            return False
        return True

    @task(3)
    def edit(self) -> None:
        if len(self.pending) >= MAX_PENDING:
            self._fire(SYNC_EDIT, time.perf_counter(), time.time(), error=f"{MAX_PENDING} edits still wait for their event")
            return
        # Connect (or reconnect) first: a rejoin's handshake must not be timed as this edit's latency.
        if self._usable() is None:
            self._fire(SYNC_EDIT, time.perf_counter(), time.time(), error="no sync connection to send the edit on")
            return
        self.sent += 1
        nonce = f"rg-{self.sync_number}-{self.sent}"
        self.pending[nonce] = (time.perf_counter(), time.time())
        message = {"type": "edit", "doc": "main.py", "text": f"counter = {self.sent}\n", "nonce": nonce}
        if not self._send(message):
            started, wall = self.pending.pop(nonce, (time.perf_counter(), time.time()))
            self._fire(SYNC_EDIT, started, wall, error="the edit could not be sent")

    @task(1)
    def typing(self) -> None:
        self.sent += 1
        self._send({"type": "typing", "typing": True, "nonce": f"rg-{self.sync_number}-t{self.sent}"})


class ArrivalUser(_BaseUser):
    """The open-model pacer: one instance starts a conversation iteration at every arrival.

    Arrivals follow a fixed schedule (``i / arrival_rate_per_s``), never waiting for earlier ones.
    Each runs in a gevent pool of ``max_vus``; an arrival that finds the pool full is dropped and
    reported (ARRIVAL "dropped iteration", a failure), so a slow service shows as lost work
    instead of as a politely lower request rate (coordinated omission).

    The schedule counts from the pacer's own start, which comes after the run's (spawning), while
    the shape ends the run ``duration_s`` after the run's start: arrivals still due then were never
    made, and are reported at stop as dropped iterations too (the planned load was not sent). An
    iteration still in flight at stop is killed; it is reported as one failed ARRIVAL sample
    "iteration cut at stop", so the lost work leaves a trace instead of vanishing.
    """

    fixed_count = 1
    wait_time = constant(1)

    def __init__(self, environment: Any) -> None:
        open_model = SETTINGS.profile.open_model if SETTINGS.profile is not None else None
        # Every iteration in flight may hold one connection.
        self.concurrency = open_model.max_vus if open_model is not None else 1
        super().__init__(environment)
        self.pool: Pool | None = None
        self.done = False
        self.planned = 0  # arrivals of the schedule
        self.fired = 0  # arrivals made or dropped so far

    def on_stop(self) -> None:
        open_model = SETTINGS.profile.open_model if SETTINGS.profile is not None else None
        unfired = max(0, self.planned - self.fired)
        if unfired and open_model is not None:
            reported = min(unfired, MAX_REPORTED_AT_STOP)
            if unfired > reported:
                log.warning("%d arrivals never made at stop; %d reported as dropped iterations", unfired, reported)
            for _ in range(reported):
                self._report(DROPPED, f"the run stopped before this arrival was due (pacer schedule of {self.planned})")
        if self.pool is not None:
            in_flight = len(self.pool)
            self.pool.kill(block=False)
            for _ in range(in_flight):
                self._report(CUT_AT_STOP, "the run stopped while this iteration was in flight")
        self.fired = self.planned

    def _report(self, name: str, why: str) -> None:
        self.environment.events.request.fire(
            request_type="ARRIVAL",
            name=name,
            response_time=0,
            response_length=0,
            response=None,
            context={},
            exception=LoadError(why),
            start_time=time.time(),
            url=None,
        )

    @task
    def pace(self) -> None:
        open_model = SETTINGS.profile.open_model if SETTINGS.profile is not None else None
        if open_model is None or self.done:
            return
        self.done = True
        self.pool = pool = Pool(open_model.max_vus)
        arrivals = self.planned = int(open_model.duration_s * open_model.arrival_rate_per_s)
        tokens = (
            [self.token] if SETTINGS.profile is not None and SETTINGS.profile.login else [SETTINGS.token_of(i) for i in SETTINGS.identities]
        )
        first = time.perf_counter()
        for index in range(arrivals):
            due = first + index / open_model.arrival_rate_per_s
            gevent.sleep(max(0.0, due - time.perf_counter()))
            self.fired = index + 1
            if pool.full():
                self._report(DROPPED, f"no free virtual user (max_vus {open_model.max_vus})")
                continue
            pool.spawn(self._iteration, index, tokens[index % len(tokens)])
        pool.join(timeout=DRAIN_S)

    def _iteration(self, index: int, token: str | None) -> None:
        cid = self.create_conversation(f"releasegate arrival {index}", token)
        if cid is None:
            return
        self.post_message(cid, "what does this stack trace mean?", token)
        self.read_messages(cid, token)


USER_CLASSES: dict[str, type[_BaseUser]] = {cls.__name__: cls for cls in (ConversationUser, SyncUser, ArrivalUser)}


def configure(settings: Settings) -> None:
    """Weights, think times and the pacer from the profile (class attributes, read when users spawn)."""
    profile = settings.profile
    if settings.base_url is not None:
        for cls in USER_CLASSES.values():
            cls.host = settings.base_url  # --host still wins: Locust sets it on every class at start
    ArrivalUser.abstract = profile is None or profile.open_model is None
    if profile is None:
        return
    for name, weight in profile.user_classes.items():
        USER_CLASSES[name].weight = weight
    ConversationUser.wait_time = between(*profile.think_time_s)
    SyncUser.wait_time = between(*profile.sync_think_time_s)


configure(SETTINGS)
