"""The CLI's non-interactive commands, over the engine."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.exc import SQLAlchemyError

from taleweaver.auth import Verification
from taleweaver.config import Settings
from taleweaver.domain.events import JSON, EventMetadata
from taleweaver.domain.sessions import SessionFilter
from taleweaver.engine import Engine
from taleweaver.engine.engine import database_from_settings
from taleweaver.llm import ScriptedModel
from taleweaver.store import migrate
from taleweaver.store.schema import DEFAULT_WORKSPACE_ID

log = logging.getLogger(__name__)


@asynccontextmanager
async def _engine(settings: Settings) -> AsyncIterator[Engine]:
    # Listing and exporting never generate: skip loading the configured model.
    engine = await Engine.open(settings, model=ScriptedModel())
    try:
        yield engine
    finally:
        await engine.close()


async def access_notice(settings: Settings) -> list[str]:
    """What the server says at start-up about logging in (and the setup token)."""
    from taleweaver.auth import is_loopback

    async with _engine(settings) as engine:
        accounts = await engine.accounts.real_account_count()
        needs_login = settings.require_login or not is_loopback(settings.bind_host) or accounts > 1
        if not needs_login:
            return ["single-user mode: no login needed (loopback bind, at most one account)"]
        lines = [
            "login required: "
            + (
                "bound to a non-loopback address"
                if not is_loopback(settings.bind_host)
                else "this instance has several accounts"
                if accounts > 1
                else "TALEWEAVER_REQUIRE_LOGIN is set"
            )
        ]
        token = await engine.accounts.issue_setup_token()
        if token is not None:
            lines.append(
                "no administrator yet: create one with POST /api/v1/auth/setup and this "
                f"one-time token: {token}"
            )
            lines.append("(or run `taleweaver users create-admin`)")
        return lines


async def create_admin(
    settings: Settings, email: str, password: str, display_name: str | None
) -> JSON:
    async with _engine(settings) as engine:
        return await engine.accounts.create_user(
            email,
            password=password,
            display_name=display_name,
            instance_admin=True,
            actor="cli",
        )


async def set_display_name(settings: Settings, name: str, email: str | None) -> JSON:
    """Rename the account with `email`, or the laptop's own user without one."""
    from taleweaver.auth import LOCAL_USER_ID
    from taleweaver.domain.errors import NotFound

    async with _engine(settings) as engine:
        user_id = LOCAL_USER_ID
        if email is not None:
            found = await engine.accounts.user_by_email(email)
            if found is None:
                raise NotFound(f"no account has the email {email}")
            user_id = str(found["id"])
        return await engine.accounts.set_display_name(user_id, name, actor="cli")


async def verify_audit(settings: Settings) -> Verification:
    async with _engine(settings) as engine:
        return await engine.audit.verify()


async def upgrade(settings: Settings) -> str | None:
    async with _engine(settings.model_copy(update={"auto_migrate": False})) as engine:
        await migrate.upgrade(engine.db.engine)
        return await migrate.current_revision(engine.db.engine)


async def wait_for_schema(settings: Settings, within_s: float, every_s: float = 1.0) -> bool:
    """Whether the database reaches the head revision within `within_s` seconds, for
    a replica that must not start on a schema another process is still migrating
    (it never migrates itself). A database not reachable yet counts as behind."""
    head = migrate.head_revision()
    deadline = time.monotonic() + within_s
    db = database_from_settings(settings)
    try:
        while True:
            try:
                if await migrate.current_revision(db.engine) == head:
                    return True
            except (OSError, SQLAlchemyError) as exc:
                log.info("database not reachable yet: %s", exc)
            if time.monotonic() + every_s > deadline:
                return False
            await asyncio.sleep(every_s)
    finally:
        await db.dispose()


async def delete_session(settings: Settings, session_id: str) -> str:
    """Delete a session (its events stay in the log as a deletion); its title."""
    async with _engine(settings) as engine:
        session = await engine.sessions.get(DEFAULT_WORKSPACE_ID, session_id)
        await engine.sessions.delete(
            DEFAULT_WORKSPACE_ID, session_id, metadata=EventMetadata(actor="cli")
        )
        return str(session["title"])


async def list_sessions(
    settings: Settings, *, kind: str | None, archived: bool | None
) -> list[JSON]:
    async with _engine(settings) as engine:
        rows, _ = await engine.sessions.list_page(
            DEFAULT_WORKSPACE_ID, SessionFilter(kind=kind, archived=archived), limit=1000, offset=0
        )
        return rows
