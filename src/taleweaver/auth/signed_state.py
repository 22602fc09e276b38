"""Short-lived signed values that a browser carries across a redirect.

The signing key is random, made on first use and kept in the database, so every
replica behind a load balancer accepts what another one signed and no setting is
needed. What is signed is readable by the browser that carries it, not secret.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from itsdangerous import BadSignature, URLSafeTimedSerializer

from taleweaver.auth.tokens import new_secret
from taleweaver.domain.errors import Unauthorized
from taleweaver.store.database import Database
from taleweaver.store.schema import instance_state

__all__ = ["SignedState"]


class SignedState:
    """Signs and checks JSON values for one purpose, valid for `max_age` seconds."""

    def __init__(self, db: Database, purpose: str, max_age: int) -> None:
        self.db = db
        self.purpose = purpose
        self.max_age = max_age
        self._serializer: URLSafeTimedSerializer | None = None

    async def dumps(self, value: dict[str, Any]) -> str:
        return str((await self._signer()).dumps(value))

    async def loads(self, text: str) -> dict[str, Any]:
        """The value, or Unauthorized when it was altered, expired or signed elsewhere."""
        try:
            value = (await self._signer()).loads(text, max_age=self.max_age)
        except BadSignature as exc:  # SignatureExpired included
            raise Unauthorized("the sign-in attempt expired or did not start here") from exc
        if not isinstance(value, dict):
            raise Unauthorized("the sign-in attempt expired or did not start here")
        return value

    async def _signer(self) -> URLSafeTimedSerializer:
        if self._serializer is None:
            key = await self._key()
            self._serializer = URLSafeTimedSerializer(key, salt=f"taleweaver.{self.purpose}")
        return self._serializer

    async def _key(self) -> str:
        name = f"signing_key:{self.purpose}"
        query = sa.select(instance_state.c.value).where(instance_state.c.key == name)
        async with self.db.read() as conn:
            found = await conn.scalar(query)
        if found is not None:
            return str(found)
        async with self.db.write() as conn:
            # Under the write lock, so two replicas starting at once agree on one key.
            await self.db.lock(conn)
            found = await conn.scalar(query)
            if found is None:
                found = new_secret()
                await conn.execute(instance_state.insert().values(key=name, value=found))
        return str(found)
