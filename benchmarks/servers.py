"""Servers the turn benchmark drives: the real engine, and a bare FastAPI baseline.

Run as `python -m benchmarks.servers engine|bare PORT [BODY_FILE]`, each in its
own process so that client and server never share a GIL.
"""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request, Response


def bare_app(body: bytes) -> FastAPI:
    """The least a FastAPI endpoint can do: parse the JSON body, return fixed bytes."""
    app = FastAPI()

    @app.post("/api/v1/sessions/{session_id}/turns", status_code=201)
    async def turn(session_id: str, request: Request) -> Response:
        await request.json()
        return Response(body, status_code=201, media_type="application/json")

    return app


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    if kind == "bare":
        app = bare_app(Path(sys.argv[3]).read_bytes())
    else:
        from taleweaver.api import create_app

        app = create_app()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
