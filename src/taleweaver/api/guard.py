"""The input guard: what no route, importer or database ever sees.

Every request passes here before routing. A URL with a NUL or control character, or
a JSON body holding a NUL, a lone surrogate, NaN/Infinity or nesting past
`MAX_DEPTH`, is answered 422 at once, the same on SQLite and PostgreSQL, so nothing
downstream can half-write it. Raw-body imports (chat JSONL, cards, bundles) are
checked by their own parsers with the same rules (`domain.json_values`).
"""

from __future__ import annotations

import email.message
import json
import re
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taleweaver.api.problems import problem
from taleweaver.domain.errors import InvalidInput, NotFound
from taleweaver.domain.json_values import MAX_DEPTH, Unstorable, find_unstorable

__all__ = ["MAX_ID_LENGTH", "InputGuard", "check_path_ids", "load_storable"]

MAX_ID_LENGTH = 128
_CONTROL = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class _NotJSON(ValueError):
    """NaN or Infinity, which Python's json reads but JSON does not allow."""


def _refuse_constant(name: str) -> Any:
    raise _NotJSON(name)


def is_json(content_type: str | None) -> bool:
    """Whether FastAPI would read this body as JSON (it does when no type is given)."""
    if not content_type:
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def load_storable(text: bytes | str) -> Any:
    """`text` read as JSON; Unstorable when it holds what `body_problem` refuses, a
    plain ValueError when it is not JSON at all. Also for each live-channel frame."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except _NotJSON as exc:
        raise Unstorable("", f"holds {exc}, which JSON does not allow") from None
    except RecursionError:
        raise Unstorable("", f"nests deeper than {MAX_DEPTH} levels") from None
    found = find_unstorable(value)
    if found is not None:
        raise found
    return value


def body_problem(body: bytes) -> Unstorable | None:
    """Why this JSON body must be refused, or None (also when it is not JSON at all:
    FastAPI answers that with its own 400)."""
    try:
        load_storable(body)
    except Unstorable as exc:
        return exc
    except ValueError:  # malformed JSON or not UTF-8: left to FastAPI's 400
        return None
    return None


def url_problem(scope: Scope) -> str | None:
    if _CONTROL.search(scope["path"]):
        return "the URL path holds a NUL or control character"
    query = scope.get("query_string", b"").decode("latin-1")
    for key, value in parse_qsl(query, keep_blank_values=True):
        if "\x00" in key or "\x00" in value:
            return f"the query parameter {key.strip(chr(0))!r} holds a NUL character"
    return None


class InputGuard:
    """ASGI middleware refusing unstorable URLs and JSON bodies with a 422 problem."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        wrong = url_problem(scope)
        if wrong is not None:
            await problem(422, InvalidInput.title, wrong)(scope, receive, send)
            return
        headers = dict(scope["headers"])
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        if scope["method"] not in _BODY_METHODS or not is_json(content_type):
            await self.app(scope, receive, send)
            return
        messages, body = await _read(receive)
        found = body_problem(body) if body else None
        if found is not None:
            loc = ["body", *found.where.split(".")] if found.where else ["body"]
            detail = f"{found.where or 'body'}: {found.what}"
            errors = [{"loc": loc, "msg": found.what}]
            refused = problem(422, InvalidInput.title, detail, errors=errors)
            await refused(scope, receive, send)
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


async def _read(receive: Receive) -> tuple[list[Message], bytes]:
    """Every message of the request body (bounded by RequestContext), and the body."""
    messages: list[Message] = []
    parts: list[bytes] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return messages, b"".join(parts)


async def check_path_ids(request: Request) -> None:
    """Every `*_id` path parameter is an id's shape (1 to 128 printable characters)
    before any route or dependency looks it up; anything else names nothing."""
    for name, value in request.path_params.items():
        if name.endswith("_id") and not (0 < len(value) <= MAX_ID_LENGTH and value.isprintable()):
            raise NotFound(f"no such {name.removesuffix('_id')}: not a valid id")
