"""Errors as RFC 9457 problem+json: each error class maps to one status, here only."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException
from starlette.routing import Match

from taleweaver.api.logs import correlation_id
from taleweaver.domain.errors import (
    AlreadyImported,
    BudgetExceeded,
    Conflict,
    Forbidden,
    InvalidInput,
    ModelError,
    ModelUnavailable,
    NotFound,
    PayloadTooLarge,
    TaleweaverError,
    TooManyRequests,
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
    (BudgetExceeded, 402),
]


class FieldError(BaseModel):
    loc: list[str]
    msg: str


class Problem(BaseModel):
    """The body of every error response (RFC 9457 problem details)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    correlation_id: str | None = None
    errors: list[FieldError] | None = None


_PROBLEM_CONTENT = {
    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
}
_DOCUMENTED_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}},
    429: {
        "Retry-After": {
            "required": True,
            "description": "Seconds to wait before trying again.",
            "schema": {"type": "integer", "minimum": 1},
        }
    },
}


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, each a problem+json body."""
    return {
        status: {"content": _PROBLEM_CONTENT}
        | ({"headers": _DOCUMENTED_HEADERS[status]} if status in _DOCUMENTED_HEADERS else {})
        for status in sorted(set(statuses))
    }


# What an API route may answer besides success: every status of the table above,
# malformed or invalid requests (400, 422), and internal errors (500).
ERROR_RESPONSES = documented(400, 422, 500, *(code for _, code in STATUS))


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
        extra: dict[str, object] = {}
        if isinstance(exc, AlreadyImported):  # the client offers the choices
            extra = {"choices": list(exc.choices), "existing": exc.existing}
        response = problem(status_of(exc), exc.title, exc.detail, **extra)
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
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        titles = {400: "Bad request", 404: "Not found", 405: "Method not allowed"}
        if exc.status_code >= 500:  # never leak internals, whatever raised it
            return problem(exc.status_code, "Internal error", "something went wrong")
        response = problem(exc.status_code, titles.get(exc.status_code, "Error"), str(exc.detail))
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            response.headers["Allow"] = _allowed_methods(request)
        return response

    # A last resort: RequestContext answers errors from routes itself, inside the
    # middleware that adds the correlation id and the security headers.
    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return unexpected(request.method, request.url.path)


def unexpected(method: str, path: str) -> JSONResponse:
    """Log the error being handled; answer a bare 500 (the details stay in the log)."""
    log.exception("unhandled error on %s %s", method, path)
    return problem(500, "Internal error", "something went wrong; the log has the details")


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> str:
    """Every method some route takes at this path (Starlette's 405 names one route's)."""
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in _METHODS
        if any(r.matches({**request.scope, "method": method})[0] == Match.FULL for r in routes)
    )


def document(app: FastAPI) -> None:
    """Add the Problem schema that the documented error responses refer to."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()  # FastAPI caches it as app.openapi_schema
        found = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        models = schema.setdefault("components", {}).setdefault("schemas", {})
        models.update(found.pop("$defs", {}))
        models["Problem"] = found
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented hook
