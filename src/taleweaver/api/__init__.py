"""The HTTP API (FastAPI): parse, authenticate, call the engine."""

from taleweaver.api.app import create_app

__all__ = ["create_app"]
