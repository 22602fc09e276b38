"""Running the HTTP server: the one module outside `api/` that knows the transport.

`taleweaver serve` imports this lazily, so that every other command starts without
the web stack, and the CLI imports nothing from `taleweaver.api`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from taleweaver.config import Settings

__all__ = ["configure_logging", "create_app", "run"]


def configure_logging(settings: Settings) -> None:
    """Log as the server does: JSON lines on stderr, at the settings' level."""
    from taleweaver.api.logs import configure_logging as configure

    configure(settings.log_level)


def create_app(settings: Settings) -> FastAPI:
    """The application the server runs (its engine opens when the server starts)."""
    from taleweaver.api import create_app as create

    return create(settings)


def run(app: FastAPI, *, host: str, port: int) -> None:
    """Serve `app` until stopped; the application logs requests, not uvicorn."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)
