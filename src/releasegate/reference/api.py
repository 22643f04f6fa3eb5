"""The REST API under /api/v1: log-in, conversations, participants, messages, tool runs and completions.

Authentication and rate limits already happened at the edge (edge.py); a handler finds the
caller in ``request.scope[PRINCIPAL]`` and checks only what is its own business: that the caller
takes part in the conversation (403), that the ids exist (404) and that the body makes sense (400/422).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from releasegate.reference.auth import Principal
from releasegate.reference.edge import PRINCIPAL, problem
from releasegate.reference.service import Service
from releasegate.reference.store import Conversation
from releasegate.reference.tools import TOOLS

MAX_TITLE = 200


class ApiError(Exception):
    """An error answer with a status and a detail the client may see (app.py renders it as a problem)."""

    def __init__(self, status: int, title: str, detail: str, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.headers = status, title, detail, headers or []

    def response(self) -> Response:
        status, headers, body = problem(self.status, self.title, self.detail, self.headers)
        return Response(body, status_code=status, headers=dict(headers))


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _principal(request: Request) -> Principal:
    principal: Principal = request.scope[PRINCIPAL]
    return principal


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body: Any = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "Bad Request", f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(422, "Unprocessable Content", "the body must be a JSON object")
    return body


async def _json_object(request: Request, *fields: str) -> dict[str, str]:
    """The body as a JSON object whose named fields are non-empty strings (422 otherwise)."""
    body = await _json_body(request)
    for name in fields:
        if not isinstance(body.get(name), str) or not body[name]:
            raise ApiError(422, "Unprocessable Content", f"field {name!r} must be a non-empty string")
    return {name: body[name] for name in fields}


def _conversation_for(request: Request, cid: str) -> frozenset[str]:
    """The participants of a conversation the caller may use: 404 unknown, 403 not a participant."""
    participants = _service(request).store.participants(cid)
    if participants is None:
        raise ApiError(404, "Not Found", f"no conversation {cid}")
    principal = _principal(request)
    if principal.username not in participants and not principal.anonymous:
        raise ApiError(403, "Forbidden", f"{principal.username} does not take part in conversation {cid}")
    return participants


def _conversation_json(conversation: Conversation | None, cid: str) -> dict[str, Any]:
    if conversation is None:
        raise ApiError(404, "Not Found", f"no conversation {cid}")
    return conversation.to_json()


async def login(request: Request) -> Response:
    service = _service(request)
    body = await _json_object(request, "username", "password")
    if not service.auth.check_password(body["username"], body["password"]):
        raise ApiError(
            401, "Unauthorized", "unknown user or wrong password", [("WWW-Authenticate", 'Bearer realm="releasegate-reference"')]
        )
    issued = service.auth.issue(body["username"])
    response = JSONResponse({"access_token": issued.access_token, "token_type": "Bearer", "expires_in": issued.expires_in})
    response.headers.append("Set-Cookie", service.auth.session_cookie(issued))
    return response


async def me(request: Request) -> Response:
    """Who the token belongs to: the cheapest protected endpoint, handy for auth and rate-limit probes."""
    return JSONResponse({"username": _principal(request).username})


async def list_conversations(request: Request) -> Response:
    conversations = _service(request).store.conversations_of(_principal(request).username)
    return JSONResponse({"conversations": [c.to_json() for c in conversations]})


async def create_conversation(request: Request) -> Response:
    body = await _json_object(request, "title")
    if len(body["title"]) > MAX_TITLE:
        raise ApiError(422, "Unprocessable Content", f"the title is longer than {MAX_TITLE} characters")
    conversation = _service(request).store.create_conversation(body["title"], _principal(request).username)
    return JSONResponse(conversation.to_json(), status_code=201, headers={"Location": f"/api/v1/conversations/{conversation.id}"})


async def get_conversation(request: Request) -> Response:
    cid = request.path_params["cid"]
    _conversation_for(request, cid)
    service = _service(request)
    return JSONResponse(_conversation_json(service.store.get_conversation(cid, as_of=service.read_as_of()), cid))


async def add_participant(request: Request) -> Response:
    service, cid = _service(request), request.path_params["cid"]
    _conversation_for(request, cid)
    conversation = service.store.get_conversation(cid)
    principal = _principal(request)
    if conversation is not None and conversation.owner != principal.username and not principal.anonymous:
        raise ApiError(403, "Forbidden", "only the owner adds participants")
    body = await _json_object(request, "username")
    if not service.auth.known_user(body["username"]):
        raise ApiError(422, "Unprocessable Content", f"no user {body['username']!r}")
    service.store.add_participant(cid, body["username"])
    return JSONResponse(_conversation_json(service.store.get_conversation(cid), cid))


async def post_message(request: Request) -> Response:
    service, cid = _service(request), request.path_params["cid"]
    _conversation_for(request, cid)
    body = await _json_object(request, "text")
    message = service.post_message(cid, _principal(request).username, body["text"])
    return JSONResponse(message.to_json(), status_code=201)


async def list_messages(request: Request) -> Response:
    service, cid = _service(request), request.path_params["cid"]
    _conversation_for(request, cid)
    messages = service.store.messages(cid, as_of=service.read_as_of())
    return JSONResponse({"conversation_id": cid, "messages": [m.to_json() for m in messages]})


async def completion(request: Request) -> Response:
    """One prompt, one suggestion, synchronously: the editor's inline-completion path (no conversation).

    The conversation path delivers the reply as a sync event; this one answers in the response,
    so the golden prompts judge the model and not the event delivery.
    """
    body = await _json_object(request, "prompt")
    service = _service(request)
    text = service.suggestion(body["prompt"])
    service.metrics.assistant_replies.labels("ok" if text else "empty").inc()
    return JSONResponse({"text": text, "model": "reference-rules", "release": service.release_id})


async def run_tool(request: Request) -> Response:
    service, cid = _service(request), request.path_params["cid"]
    _conversation_for(request, cid)
    body = await _json_body(request)
    tool, code = body.get("tool"), body.get("code", "")
    if tool not in TOOLS or not isinstance(tool, str):
        raise ApiError(422, "Unprocessable Content", f"field 'tool' must be one of {', '.join(TOOLS)}")
    if not isinstance(code, str):
        raise ApiError(422, "Unprocessable Content", "field 'code' must be a string")
    run = service.store.create_tool_run(cid, tool, code, _principal(request).username)
    service.worker.submit(run.id)
    payload = {"run_id": run.id, "status": run.status, "tool": run.tool, "conversation_id": cid}
    return JSONResponse(payload, status_code=202, headers={"Location": f"/api/v1/tool-runs/{run.id}"})


async def get_tool_run(request: Request) -> Response:
    service, run_id = _service(request), request.path_params["run_id"]
    run = service.store.get_tool_run(run_id)
    if run is None:
        raise ApiError(404, "Not Found", f"no tool run {run_id}")
    _conversation_for(request, run.conversation_id)
    return JSONResponse(run.to_json())


def routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/auth/login", login, methods=["POST"]),
        Route("/api/v1/me", me, methods=["GET"]),
        Route("/api/v1/assistant/completions", completion, methods=["POST"]),
        Route("/api/v1/conversations", list_conversations, methods=["GET"]),
        Route("/api/v1/conversations", create_conversation, methods=["POST"]),
        Route("/api/v1/conversations/{cid}", get_conversation, methods=["GET"]),
        Route("/api/v1/conversations/{cid}/participants", add_participant, methods=["POST"]),
        Route("/api/v1/conversations/{cid}/messages", post_message, methods=["POST"]),
        Route("/api/v1/conversations/{cid}/messages", list_messages, methods=["GET"]),
        Route("/api/v1/conversations/{cid}/tools", run_tool, methods=["POST"]),
        Route("/api/v1/tool-runs/{run_id}", get_tool_run, methods=["GET"]),
    ]
