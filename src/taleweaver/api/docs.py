"""The interactive API docs at /docs: Swagger UI from the files the swagger-ui-py
package ships, at local routes, so that the page works with no network."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from taleweaver.api.security import PUBLIC, requires

__all__ = ["ASSETS", "install"]

ASSETS = "/docs/assets"
_REDIRECT = "/docs/oauth2-redirect"


def _swagger_files() -> Path:
    # The package's files only: importing it would load its web framework adapters.
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed: pip install swagger-ui-py")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def install(app: FastAPI) -> None:
    """Add /docs, its OAuth2 redirect page and its assets (the app is built with
    `docs_url=None`, so FastAPI's CDN-backed page is not there)."""
    app.mount(ASSETS, StaticFiles(directory=_swagger_files()), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    title = f"{app.title} API"

    @app.get("/docs", include_in_schema=False, dependencies=[requires(PUBLIC)])
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=title,
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
            oauth2_redirect_url=_REDIRECT,
        )

    @app.get(_REDIRECT, include_in_schema=False, dependencies=[requires(PUBLIC)])
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
