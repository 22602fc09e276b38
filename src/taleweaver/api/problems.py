"""Errors as RFC 9457 problem+json: each error class maps to one status, here only."""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from taleweaver.api.logs import correlation_id
from taleweaver.domain.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    ModelError,
    ModelUnavailable,
    NotFound,
    PayloadTooLarge,
    TaleweaverError,
    TooManyRequests,
    TurnCancelled,
    Unauthorized,
)

log = logging.getLogger(__name__)

STATUS: list[tuple[type[TaleweaverError], int]] = [
    (Unauthorized, 401),
    (Forbidden, 403),
    (TooManyRequests, 429),
    (NotFound, 404),
    (Conflict, 409),
    (InvalidInput, 422),
    (PayloadTooLarge, 413),
    (ModelUnavailable, 503),
    (ModelError, 502),
    (TurnCancelled, 409),
]


def status_of(error: TaleweaverError) -> int:
    return next((code for cls, code in STATUS if isinstance(error, cls)), 500)


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def problem(status: int, title: str, detail: str, **extra: object) -> JSONResponse:
    body: dict[str, object] = {
        "type": f"/problems/{_slug(title)}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    cid = correlation_id.get()
    if cid is not None:
        body["correlation_id"] = cid
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def problem_body(error: TaleweaverError) -> dict[str, object]:
    """The same problem as a plain dict, for an SSE `error` event."""
    return {
        "type": f"/problems/{_slug(error.title)}",
        "title": error.title,
        "status": status_of(error),
        "detail": error.detail,
    }


def install(app: FastAPI) -> None:
    @app.exception_handler(TaleweaverError)
    async def _ours(_: Request, exc: TaleweaverError) -> JSONResponse:
        response = problem(status_of(exc), exc.title, exc.detail)
        if isinstance(exc, TooManyRequests):
            response.headers["Retry-After"] = str(exc.retry_after)
        if isinstance(exc, Unauthorized):
            response.headers["WWW-Authenticate"] = 'Bearer realm="taleweaver"'
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", "")}
            for e in exc.errors()
        ]
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return problem(400, "Malformed JSON", "the request body is not valid JSON")
        summary = "; ".join(f"{'.'.join(e['loc'][1:]) or 'body'}: {e['msg']}" for e in errors)
        return problem(422, "Invalid input", summary, errors=errors)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "Error")
        if exc.status_code >= 500:  # never leak internals, whatever raised it
            return problem(exc.status_code, "Internal error", "something went wrong")
        return problem(exc.status_code, title, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "Internal error", "something went wrong; the log has the details")
