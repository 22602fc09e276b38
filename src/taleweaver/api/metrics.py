"""HTTP latency by route template, for `taleweaver_http_request_duration_seconds`."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Receive, Scope, Send

from taleweaver.api.status import ResponseStatus
from taleweaver.observability import observe_request


class HTTPMetrics:
    """Times each HTTP request; labels it with the route's template (never the path
    itself, which carries ids), or `unmatched` for the web app and unknown paths."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = ResponseStatus(send, default=500)
        try:
            await self.app(scope, receive, status.send)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            observe_request(route, scope["method"], status.code, time.perf_counter() - started)
