"""Outgoing webhooks on the studio's content events, and the workspace's studio
policy, both kept as event streams (no tables of their own):

- `studio-hooks:<workspace>`: hooks added and removed. A hook's secret is sealed
  with the store's key ring, bound to its workspace and hook id, and shown once.
- `studio-hook:<hook id>`: the hook's delivery log, one event per delivery queued
  and per attempt made (status code or error), read back as deliveries.
- `studio-policy:<workspace>`: each save of the policy (providers, models,
  fields to redact); the last one holds.

A delivery is one signed POST per attempt (`attempt`), signed as safety's webhooks
are: `X-Taleweaver-Signature: sha256=<hex>`, the HMAC-SHA256 keyed by the hook's
secret of `<timestamp>.<body>`, with the timestamp in `X-Taleweaver-Timestamp`.
Retrying is the engine's: each delivery is a background job, retried with the job
queue's doubling backoff.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from taleweaver.domain.errors import ConcurrencyConflict, InvalidInput, KeyMissing, NotFound
from taleweaver.domain.events import JSON, EventMetadata, NewEvent, RecordedEvent
from taleweaver.domain.studio.policy import clean_policy, default_policy
from taleweaver.safety import SIGNATURE_HEADER, TIMESTAMP_HEADER, check_url, sign
from taleweaver.store.crypto import KeyRing
from taleweaver.store.database import Database
from taleweaver.store.events import EventStore

HOOK_EVENTS = ("entry.canonised", "blueprint.saved", "packet.ready")
MAX_HOOKS = 20
HOOK_ADDED = "studio.hook.added"
HOOK_REMOVED = "studio.hook.removed"
DELIVERY_QUEUED = "studio.delivery.queued"
DELIVERY_ATTEMPTED = "studio.delivery.attempted"
POLICY_SET = "studio.policy.set"
_APPEND_TRIES = 20


def hooks_stream(workspace_id: str) -> str:
    return f"studio-hooks:{workspace_id}"


def log_stream(hook_id: str) -> str:
    return f"studio-hook:{hook_id}"


def policy_stream(workspace_id: str) -> str:
    return f"studio-policy:{workspace_id}"


def secret_aad(workspace_id: str, hook_id: str) -> str:
    return f"studio-webhook\x00{workspace_id}\x00{hook_id}"


def _now() -> str:
    return datetime.now(UTC).isoformat()


def clean_events(events: Sequence[Any] | None) -> list[str]:
    chosen = list(events) if events else list(HOOK_EVENTS)
    unknown = sorted({str(e) for e in chosen} - set(HOOK_EVENTS))
    if unknown:
        raise InvalidInput(
            f"events: unknown {', '.join(unknown)}; choose from {', '.join(HOOK_EVENTS)}"
        )
    return sorted(set(chosen))


class StudioRecords:
    def __init__(self, db: Database, store: EventStore, keys: KeyRing | None) -> None:
        self.db = db
        self.store = store
        self._keys = keys

    @property
    def keys(self) -> KeyRing:
        if self._keys is None:
            raise KeyMissing("studio webhook secrets need encryption keys and none were given")
        return self._keys

    # --- streams ---------------------------------------------------------------------

    async def _read(self, workspace_id: str, stream_id: str) -> list[RecordedEvent]:
        found = await self.store.read_stream(stream_id)
        return [e for e in found if e.workspace_id == workspace_id]

    async def _append(
        self, workspace_id: str, stream_id: str, event: NewEvent, meta: EventMetadata
    ) -> None:
        """Append at the stream's end; a racing writer's append makes it try again."""
        for _ in range(_APPEND_TRIES):
            last = await self.store.read_stream(stream_id)
            version = last[-1].version if last else 0
            try:
                async with self.db.write() as conn:
                    await self.store.append(
                        conn,
                        stream_id=stream_id,
                        workspace_id=workspace_id,
                        expected_version=version,
                        new_events=[event],
                        metadata=meta,
                    )
                return
            except ConcurrencyConflict:
                continue
        raise ConcurrencyConflict(stream_id, -1)

    # --- hooks -----------------------------------------------------------------------

    async def _hooks(self, workspace_id: str) -> dict[str, JSON]:
        hooks: dict[str, JSON] = {}
        for event in await self._read(workspace_id, hooks_stream(workspace_id)):
            if event.type == HOOK_ADDED:
                hooks[event.payload["hook"]["id"]] = event.payload["hook"]
            elif event.type == HOOK_REMOVED:
                hooks.pop(event.payload["hook_id"], None)
        return hooks

    @staticmethod
    def _public(hook: Mapping[str, Any]) -> JSON:
        return {k: v for k, v in hook.items() if k != "secret"}

    async def add_hook(
        self, workspace_id: str, url: str, events: Sequence[str] | None, meta: EventMetadata
    ) -> JSON:
        """A new hook; its secret is returned here only."""
        url = check_url(url)
        chosen = clean_events(events)
        if len(await self._hooks(workspace_id)) >= MAX_HOOKS:
            raise InvalidInput(f"a workspace has at most {MAX_HOOKS} studio webhooks")
        hook_id = uuid.uuid4().hex
        secret = secrets.token_urlsafe(32)
        hook = {
            "id": hook_id,
            "url": url,
            "events": chosen,
            "secret": self.keys.encrypt(secret, secret_aad(workspace_id, hook_id)),
            "created_at": _now(),
            "created_by": meta.actor,
        }
        stream = hooks_stream(workspace_id)
        await self._append(workspace_id, stream, NewEvent(HOOK_ADDED, {"hook": hook}), meta)
        return self._public(hook) | {"secret": secret}

    async def hooks(self, workspace_id: str) -> list[JSON]:
        return [self._public(h) for h in (await self._hooks(workspace_id)).values()]

    async def hook(self, workspace_id: str, hook_id: str) -> JSON:
        found = (await self._hooks(workspace_id)).get(hook_id)
        if found is None:
            raise NotFound(f"webhook {hook_id} not found")
        return self._public(found)

    async def remove_hook(self, workspace_id: str, hook_id: str, meta: EventMetadata) -> None:
        await self.hook(workspace_id, hook_id)
        event = NewEvent(HOOK_REMOVED, {"hook_id": hook_id})
        await self._append(workspace_id, hooks_stream(workspace_id), event, meta)

    async def targets(self, workspace_id: str, event_type: str) -> list[JSON]:
        """The hooks that want this event, each with its opened secret."""
        return [
            h | {"secret": self.keys.decrypt(h["secret"], secret_aad(workspace_id, h["id"]))}
            for h in (await self._hooks(workspace_id)).values()
            if event_type in h["events"]
        ]

    async def target(self, workspace_id: str, hook_id: str) -> JSON | None:
        hook = (await self._hooks(workspace_id)).get(hook_id)
        if hook is None:
            return None
        return hook | {
            "secret": self.keys.decrypt(hook["secret"], secret_aad(workspace_id, hook_id))
        }

    # --- sending ----------------------------------------------------------------------

    async def attempt(
        self,
        workspace_id: str,
        hook_id: str,
        delivery: Mapping[str, Any],
        attempt: int,
        *,
        last: bool,
        timeout_s: float = 10.0,
    ) -> str | None:
        """POST the delivery's body once and log the attempt; why it failed, or None.
        `last`: no attempt follows a failure of this one. A removed hook is skipped."""
        import httpx

        hook = await self.target(workspace_id, hook_id)
        if hook is None:
            return None
        body = str(delivery["body"]).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(hook["secret"], timestamp, body),
            "X-Taleweaver-Delivery": str(delivery["delivery_id"]),
            "X-Taleweaver-Event": str(delivery["event"]),
        }
        status: int | None = None
        error: str | None = None
        try:
            async with httpx.AsyncClient(timeout=timeout_s) as client:
                response = await client.post(hook["url"], content=body, headers=headers)
            status = response.status_code
            if not response.is_success:
                error = f"HTTP {status}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        await self.attempted(
            workspace_id,
            hook_id,
            str(delivery["delivery_id"]),
            attempt,
            status_code=status,
            error=error,
            final=error is not None and last,
        )
        return error

    # --- the delivery log ------------------------------------------------------------

    async def queued(
        self, workspace_id: str, hook_id: str, delivery_id: str, event_type: str
    ) -> None:
        payload = {"delivery_id": delivery_id, "event": event_type, "at": _now()}
        meta = EventMetadata(actor="studio:webhooks")
        await self._append(
            workspace_id, log_stream(hook_id), NewEvent(DELIVERY_QUEUED, payload), meta
        )

    async def attempted(
        self,
        workspace_id: str,
        hook_id: str,
        delivery_id: str,
        attempt: int,
        *,
        status_code: int | None,
        error: str | None,
        final: bool = False,
    ) -> None:
        """One attempt; `final`: it failed and no other will be made."""
        payload = {
            "delivery_id": delivery_id,
            "attempt": attempt,
            "status_code": status_code,
            "ok": error is None,
            "error": error,
            "final": final,
            "at": _now(),
        }
        meta = EventMetadata(actor="studio:webhooks")
        event = NewEvent(DELIVERY_ATTEMPTED, payload)
        await self._append(workspace_id, log_stream(hook_id), event, meta)

    async def deliveries(self, workspace_id: str, hook_id: str) -> list[JSON]:
        """The hook's deliveries, newest first, each with its attempts."""
        await self.hook(workspace_id, hook_id)
        found: dict[str, JSON] = {}
        for event in await self._read(workspace_id, log_stream(hook_id)):
            p = event.payload
            if event.type == DELIVERY_QUEUED:
                found[p["delivery_id"]] = {
                    "id": p["delivery_id"],
                    "event": p["event"],
                    "queued_at": p["at"],
                    "status": "pending",
                    "attempts": [],
                }
            elif event.type == DELIVERY_ATTEMPTED and p["delivery_id"] in found:
                delivery = found[p["delivery_id"]]
                delivery["attempts"].append({k: v for k, v in p.items() if k != "delivery_id"})
                if p["ok"]:
                    delivery["status"] = "delivered"
                elif p.get("final"):
                    delivery["status"] = "failed"
        return list(reversed(found.values()))

    # --- the policy ------------------------------------------------------------------

    async def policy(self, workspace_id: str) -> JSON:
        found = await self._read(workspace_id, policy_stream(workspace_id))
        saved = [e for e in found if e.type == POLICY_SET]
        return dict(saved[-1].payload["policy"]) if saved else default_policy()

    async def set_policy(
        self, workspace_id: str, data: Mapping[str, Any], meta: EventMetadata
    ) -> JSON:
        policy = clean_policy(data)
        event = NewEvent(POLICY_SET, {"policy": policy})
        await self._append(workspace_id, policy_stream(workspace_id), event, meta)
        return policy
