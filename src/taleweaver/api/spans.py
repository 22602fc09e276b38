"""A server span around each HTTP request, added only when tracing is on: it
continues the caller's trace from a W3C `traceparent` header, and every log line
written while the request is served carries its trace id."""

from __future__ import annotations

from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Receive, Scope, Send

from taleweaver.api.status import ResponseStatus
from taleweaver.observability.tracing import TRACER


class ServerSpans:
    """Named and labelled by the route's template (as the HTTP semantic conventions
    ask); the path itself, with its ids and query, is left out."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        status = ResponseStatus(send, default=0)

        with TRACER.start_as_current_span(
            method,
            context=propagate.extract(carrier),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.scheme": scope["scheme"]},
        ) as span:
            try:
                await self.app(scope, receive, status.send)
            finally:
                route = getattr(scope.get("route"), "path", None)
                if route is not None:
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                if status.code:
                    span.set_attribute("http.response.status_code", status.code)
                if status.code >= 500:
                    span.set_status(Status(StatusCode.ERROR))
