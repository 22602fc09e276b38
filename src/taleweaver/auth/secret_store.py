"""A workspace's secrets (provider API keys): written encrypted, listed by name only.

Values are sealed with the key ring and bound to their workspace and name, so a
row copied elsewhere does not decrypt. Only `get_secret` (for the model router)
ever returns a value; every change is audited, never with the value.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import sqlalchemy as sa

from taleweaver.auth.audit import AuditLog
from taleweaver.domain.errors import InvalidInput, KeyMissing, NotFound
from taleweaver.domain.events import JSON
from taleweaver.store.crypto import KeyRing
from taleweaver.store.database import Database
from taleweaver.store.schema import secrets
from taleweaver.store.sealing import secret_aad

__all__ = ["MAX_SECRET_BYTES", "NAME_PATTERN", "SecretStore"]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
MAX_SECRET_BYTES = 8 * 1024
_NAME = re.compile(NAME_PATTERN)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidInput(
            "a secret's name is 1-100 letters, digits, '_', '.' or '-', starting with a "
            "letter or digit"
        )
    return name


class SecretStore:
    def __init__(self, db: Database, keys: KeyRing | None, audit: AuditLog) -> None:
        self.db = db
        self._keys = keys
        self.audit = audit

    @property
    def keys(self) -> KeyRing:
        if self._keys is None:
            raise KeyMissing("secrets need encryption keys and this engine was given none")
        return self._keys

    async def set(self, workspace_id: str, name: str, value: str, *, actor: str) -> JSON:
        """Create or replace a secret; returns its name and when it was written."""
        _check_name(name)
        if not value:
            raise InvalidInput("a secret's value must not be empty")
        if len(value.encode("utf-8")) > MAX_SECRET_BYTES:
            raise InvalidInput(f"a secret's value must be at most {MAX_SECRET_BYTES} bytes")
        sealed = self.keys.encrypt(value, secret_aad(workspace_id, name))
        now = datetime.now(UTC)
        where = (secrets.c.workspace_id == workspace_id, secrets.c.name == name)
        async with self.db.write() as conn:
            replaced = await conn.execute(
                secrets.update().where(*where).values(ciphertext=sealed, updated_at=now)
            )
            if replaced.rowcount == 0:
                await conn.execute(
                    secrets.insert().values(
                        workspace_id=workspace_id, name=name, ciphertext=sealed, updated_at=now
                    )
                )
            await self.audit.record(
                actor,
                "secret.replaced" if replaced.rowcount else "secret.created",
                workspace_id=workspace_id,
                target=name,
                conn=conn,
            )
        return {"name": name, "updated_at": now}

    async def names(self, workspace_id: str) -> list[JSON]:
        """Every secret's name and when it was last written; never a value."""
        query = (
            sa.select(secrets.c.name, secrets.c.updated_at)
            .where(secrets.c.workspace_id == workspace_id)
            .order_by(secrets.c.name)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [{"name": r.name, "updated_at": _utc(r.updated_at)} for r in rows]

    async def delete(self, workspace_id: str, name: str, *, actor: str) -> None:
        async with self.db.write() as conn:
            gone = await conn.execute(
                secrets.delete().where(
                    secrets.c.workspace_id == workspace_id, secrets.c.name == name
                )
            )
            if gone.rowcount == 0:
                raise NotFound(f"secret {name!r} not found")
            await self.audit.record(
                actor, "secret.deleted", workspace_id=workspace_id, target=name, conn=conn
            )

    async def get_secret(self, workspace_id: str, name: str) -> str | None:
        """The plaintext value, for the model router; None when there is no such secret."""
        async with self.db.read() as conn:
            sealed = await conn.scalar(
                sa.select(secrets.c.ciphertext).where(
                    secrets.c.workspace_id == workspace_id, secrets.c.name == name
                )
            )
        if sealed is None:
            return None
        return self.keys.decrypt(sealed, secret_aad(workspace_id, name))
