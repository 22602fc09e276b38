"""One server replica as its own process, for tests that kill one: the app on a
PostgreSQL schema of the test's own (`python tests/live_replica.py PORT SCHEMA`,
every other setting from the TALEWEAVER_* environment)."""

from __future__ import annotations

import asyncio
import sys

import uvicorn

from taleweaver.api import create_app
from taleweaver.config import Settings
from taleweaver.engine import Engine
from taleweaver.store.database import Database


async def serve(port: int, schema: str) -> None:
    settings = Settings()
    assert settings.database_url is not None, "set TALEWEAVER_DATABASE_URL"
    db = Database(settings.database_url, connect_args={"server_settings": {"search_path": schema}})
    engine = await Engine.open(settings, database=db)
    app = create_app(settings, engine=engine)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    try:
        await uvicorn.Server(config).serve()
    finally:
        await engine.close()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), sys.argv[2]))
