"""The web app: the built front-end served at `/`, beside the API.

The front-end lives in `web/` and is built into `taleweaver/webapp/` (package data, so
an installed wheel serves it without Node). GET requests outside the API's own paths
are answered from that folder; a path that names no file gets `index.html`, so the
app's client-side routes survive a reload. Hashed assets are cached for a year; the
rest is revalidated. Without a build, a plain page says how to make one.
"""

from __future__ import annotations

from pathlib import Path

from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["BUILT", "WebApp"]

BUILT = Path(__file__).resolve().parent.parent / "webapp"
RESERVED = (
    "/api/",
    "/v1/",
    "/openai/",
    "/docs",
    "/redoc",
    "/openapi.json",
    "/healthz",
    "/readyz",
    "/metrics",
)
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
APP_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; manifest-src 'self'; "
    "worker-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Taleweaver</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font: 16px/1.5 system-ui, sans-serif; max-width: 36rem; margin: 4rem auto;
padding: 0 1rem; color: #222">
<h1>Taleweaver is running, but its web app is not built</h1>
<p>The API works: see <a href="/docs">/docs</a>. To build the web app, run
<code>make run</code> (or <code>make web</code>) from a checkout with Node.js 20 or
newer, then reload this page.</p>
</body></html>
"""


class WebApp:
    """ASGI middleware that serves the built front-end for non-API GET requests."""

    def __init__(self, app: ASGIApp, *, directory: Path = BUILT) -> None:
        self.app = app
        self.directory = directory.resolve()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if (
            scope["type"] != "http"
            or scope["method"] not in ("GET", "HEAD")
            or path.startswith(RESERVED)
        ):
            await self.app(scope, receive, send)
            return
        response = self._response(path)
        if response is None:
            await self.app(scope, receive, send)
            return
        response.headers["content-security-policy"] = APP_CSP
        await response(scope, receive, send)

    def _response(self, path: str) -> Response | None:
        index = self.directory / "index.html"
        if not index.is_file():
            return HTMLResponse(NOT_BUILT, headers={"cache-control": REVALIDATE})
        found = self._file(path)
        if found is not None:
            cache = IMMUTABLE if path.startswith("/assets/") else REVALIDATE
            return FileResponse(found, headers={"cache-control": cache})
        if path.startswith("/assets/"):
            return None  # a missing asset is a plain 404, never the app's page
        return FileResponse(index, headers={"cache-control": REVALIDATE})

    def _file(self, path: str) -> Path | None:
        relative = path.lstrip("/")
        if not relative:
            return None
        candidate = (self.directory / relative).resolve()
        if not candidate.is_relative_to(self.directory) or not candidate.is_file():
            return None
        return candidate
