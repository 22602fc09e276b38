"""Signed webhooks that tell therapists about a crisis, delivered in the background.

Each delivery is a JSON POST with headers `X-Taleweaver-Timestamp` (Unix seconds)
and `X-Taleweaver-Signature: sha256=<hex>`, the HMAC-SHA256, keyed by the
webhook's secret, of `<timestamp>.<body>`: a receiver recomputes it and rejects
old timestamps, so a captured request cannot be replayed later. Failures are
retried with exponential backoff; every delivery's status is recorded.

Secrets are sealed at rest with the key ring, bound to their workspace and user;
a row from before they were (plaintext, no `tw1:` prefix) still signs, until
`taleweaver keys rotate` seals it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from taleweaver.config import SafetySettings
from taleweaver.domain.errors import InvalidInput, KeyMissing, NotFound
from taleweaver.domain.events import JSON
from taleweaver.store.crypto import KeyRing, is_sealed

if TYPE_CHECKING:
    import httpx
from taleweaver.store.database import Database
from taleweaver.store.safety_schema import (
    safety_deliveries,
    safety_webhooks,
    webhook_secret_aad,
)

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Taleweaver-Signature"
TIMESTAMP_HEADER = "X-Taleweaver-Timestamp"
MAX_URL_CHARS = 2000


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify(
    secret: str, timestamp: str, body: bytes, signature: str, *, max_age_s: int = 300
) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent."""
    try:
        age = abs(time.time() - int(timestamp))
    except ValueError:
        return False
    return age <= max_age_s and hmac.compare_digest(sign(secret, timestamp, body), signature)


def check_url(url: str) -> str:
    problem = InvalidInput("the webhook url must be an absolute http(s) URL")
    if len(url) > MAX_URL_CHARS or any(ord(c) < 32 or c.isspace() for c in url.strip()):
        raise problem
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
        _ = parts.port  # raises on a port out of range
    except ValueError as exc:  # a malformed host or port
        raise problem from exc
    if parts.scheme not in ("http", "https") or not host:
        raise problem
    return url.strip()


def _now() -> datetime:
    return datetime.now(UTC)


class Webhooks:
    def __init__(
        self,
        db: Database,
        *,
        keys: KeyRing | None = None,
        attempts: int | None = None,
        backoff_s: float | None = None,
        timeout_s: float = 5.0,
        client: Callable[[], httpx.AsyncClient] | None = None,
    ) -> None:
        self.db = db
        self._keys = keys
        configured = SafetySettings.read()
        self.attempts = attempts or configured.safety_webhook_attempts
        self.backoff_s = backoff_s if backoff_s is not None else configured.safety_webhook_backoff_s
        self.timeout_s = timeout_s
        self._client = client or self._default_client
        self._tasks: set[asyncio.Task[None]] = set()

    def _default_client(self) -> httpx.AsyncClient:
        # httpx loads with the first delivery, not with every engine (CLI commands).
        import httpx

        return httpx.AsyncClient(timeout=self.timeout_s)

    @property
    def keys(self) -> KeyRing:
        if self._keys is None:
            raise KeyMissing("webhook secrets need encryption keys and none were given")
        return self._keys

    def _open(self, workspace_id: str, user_id: str, stored: str) -> str:
        if not is_sealed(stored):  # written before secrets were sealed
            return stored
        return self.keys.decrypt(stored, webhook_secret_aad(workspace_id, user_id))

    # --- registration ---------------------------------------------------------------

    async def register(self, workspace_id: str, user_id: str, url: str) -> JSON:
        """Set the user's webhook; a new secret each time, returned only here."""
        url = check_url(url)
        secret = secrets.token_urlsafe(32)
        sealed = self.keys.encrypt(secret, webhook_secret_aad(workspace_id, user_id))
        where = (
            safety_webhooks.c.workspace_id == workspace_id,
            safety_webhooks.c.user_id == user_id,
        )
        async with self.db.write() as conn:
            await conn.execute(safety_webhooks.delete().where(*where))
            await conn.execute(
                safety_webhooks.insert().values(
                    workspace_id=workspace_id,
                    user_id=user_id,
                    url=url,
                    secret=sealed,
                    created_at=_now(),
                )
            )
        return {"user_id": user_id, "url": url, "secret": secret}

    async def get(self, workspace_id: str, user_id: str) -> JSON:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    sa.select(safety_webhooks.c.url, safety_webhooks.c.created_at).where(
                        safety_webhooks.c.workspace_id == workspace_id,
                        safety_webhooks.c.user_id == user_id,
                    )
                )
            ).first()
        if row is None:
            raise NotFound("no safety webhook is registered for this user")
        return {"user_id": user_id, "url": row.url}

    async def targets(self, workspace_id: str, user_ids: list[str]) -> list[tuple[str, str, str]]:
        """(user, url, secret) of those users who registered a webhook."""
        if not user_ids:
            return []
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(
                        safety_webhooks.c.user_id, safety_webhooks.c.url, safety_webhooks.c.secret
                    ).where(
                        safety_webhooks.c.workspace_id == workspace_id,
                        safety_webhooks.c.user_id.in_(user_ids),
                    )
                )
            ).all()
        return [(r.user_id, r.url, self._open(workspace_id, r.user_id, r.secret)) for r in rows]

    # --- delivery ---------------------------------------------------------------------

    async def notify(
        self, workspace_id: str, flag_id: str, recipients: list[str], payload: JSON
    ) -> list[str]:
        """Record a pending delivery per recipient webhook and send them in the background."""
        targets = await self.targets(workspace_id, recipients)
        body = json.dumps(payload, separators=(",", ":"), default=str).encode()
        ids: list[str] = []
        for user_id, url, secret in targets:
            delivery_id = uuid.uuid4().hex
            async with self.db.write() as conn:
                await conn.execute(
                    safety_deliveries.insert().values(
                        id=delivery_id,
                        workspace_id=workspace_id,
                        flag_id=flag_id,
                        user_id=user_id,
                        url=url,
                        status="pending",
                        attempts=0,
                        created_at=_now(),
                        updated_at=_now(),
                    )
                )
            task = asyncio.create_task(self._deliver_logged(delivery_id, url, secret, body))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            ids.append(delivery_id)
        return ids

    async def _deliver_logged(self, delivery_id: str, url: str, secret: str, body: bytes) -> None:
        try:
            await self._deliver(delivery_id, url, secret, body)
        except Exception:  # a background task: nobody else would ever see this failure
            log.exception(
                "safety webhook %s to %s could not be delivered or recorded", delivery_id, url
            )

    async def _deliver(self, delivery_id: str, url: str, secret: str, body: bytes) -> None:
        import httpx

        error: str | None = None
        status: int | None = None
        async with self._client() as client:
            for attempt in range(1, self.attempts + 1):
                timestamp = str(int(time.time()))
                headers = {
                    "Content-Type": "application/json",
                    TIMESTAMP_HEADER: timestamp,
                    SIGNATURE_HEADER: sign(secret, timestamp, body),
                    "X-Taleweaver-Delivery": delivery_id,
                }
                try:
                    response = await client.post(url, content=body, headers=headers)
                    status, error = response.status_code, None
                    if response.is_success:
                        await self._record(delivery_id, "delivered", attempt, status, None)
                        return
                    error = f"HTTP {status}"
                except httpx.HTTPError as exc:
                    status, error = None, f"{type(exc).__name__}: {exc}"[:500]
                final = attempt == self.attempts
                await self._record(
                    delivery_id, "failed" if final else "pending", attempt, status, error
                )
                if not final:
                    await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
        log.warning("safety webhook %s to %s failed: %s", delivery_id, url, error)

    async def _record(
        self, delivery_id: str, status: str, attempts: int, code: int | None, error: str | None
    ) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                safety_deliveries.update()
                .where(safety_deliveries.c.id == delivery_id)
                .values(
                    status=status,
                    attempts=attempts,
                    response_status=code,
                    last_error=error,
                    updated_at=_now(),
                )
            )

    async def deliveries(self, workspace_id: str, flag_id: str) -> list[JSON]:
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(
                        safety_deliveries.c.id,
                        safety_deliveries.c.user_id,
                        safety_deliveries.c.status,
                        safety_deliveries.c.attempts,
                        safety_deliveries.c.response_status,
                        safety_deliveries.c.last_error,
                    )
                    .where(
                        safety_deliveries.c.workspace_id == workspace_id,
                        safety_deliveries.c.flag_id == flag_id,
                    )
                    .order_by(safety_deliveries.c.created_at)
                )
            ).all()
        return [dict(r._mapping) for r in rows]

    async def drain(self) -> None:
        """Wait for every delivery in flight (tests; shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self, *, wait_s: float = 5.0) -> None:
        """Give deliveries in flight a moment, then stop them (their rows say pending)."""
        if not self._tasks:
            return
        _done, pending = await asyncio.wait(list(self._tasks), timeout=wait_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def payload_for(flag: dict[str, Any]) -> JSON:
    """What a therapist's webhook receives: who, where, how severe; never the words."""
    return {"type": "safety.crisis", **flag}
