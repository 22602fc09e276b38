"""What of a sensitive workspace's session content is sealed, and how it is opened.

Sealing happens where rows are written (event appends, projections, snapshots)
and opening where they are read, so the engine and API only ever see plaintext.
What is sealed is marked in the row itself, never inferred from the workspace:
a workspace can be marked sensitive (or not) after content was written, and both
kinds of rows must still read back. Each sealed value's associated data names its
workspace, row and field, so a value moved elsewhere fails to open.

- events: every payload field but the structural ones below goes into one sealed
  `sealed` field, so a new kind of content is sealed unless declared harmless;
- snapshots: the whole state, beside its workspace id;
- messages: content, choices and alternatives as one value in `content`
  (`sealed` column set, so full-text search never indexes it);
- sessions: the title (`sealed` column set).
"""

from __future__ import annotations

import base64
import json
import time

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.domain.events import JSON
from taleweaver.store import sqlite_fast
from taleweaver.store.crypto import PREFIX, KeyRing
from taleweaver.store.schema import workspaces

__all__ = [
    "CLEAR_FIELDS",
    "SEALED",
    "Sealer",
    "event_aad",
    "file_aad",
    "message_aad",
    "secret_aad",
    "snapshot_aad",
    "title_aad",
]

SEALED = "sealed"
# How a sealed kept file starts (the key ring's own prefix and separator).
_SEALED_FILE = f"{PREFIX}:"
# Payload fields that stay readable: ids, counters and flags, no words of the story.
CLEAR_FIELDS = frozenset(
    {
        "workspace_id",
        "kind",
        "owner_id",
        "forked_from",
        "turn_id",
        "number",
        "action",
        "message_ids",
        "model",
        "tokens",
        "pinned",
        "archived",
    }
)
CACHE_SECONDS = 10.0  # how long another replica's change of the flag may go unseen
_CACHE_LIMIT = 10_000


def event_aad(workspace_id: str, stream_id: str, version: int) -> str:
    return f"event\x00{workspace_id}\x00{stream_id}\x00{version}"


def snapshot_aad(workspace_id: str, stream_id: str, version: int) -> str:
    return f"snapshot\x00{workspace_id}\x00{stream_id}\x00{version}"


def message_aad(workspace_id: str, message_id: str) -> str:
    return f"message\x00{workspace_id}\x00{message_id}"


def title_aad(workspace_id: str, session_id: str) -> str:
    return f"session-title\x00{workspace_id}\x00{session_id}"


def file_aad(workspace_id: str, name: str) -> str:
    return f"file\x00{workspace_id}\x00{name}"


def secret_aad(workspace_id: str, name: str) -> str:
    return f"secret\x00{workspace_id}\x00{name}"


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class Sealer:
    def __init__(self, keys: KeyRing, *, cache_seconds: float = CACHE_SECONDS) -> None:
        self.keys = keys
        self.cache_seconds = cache_seconds
        self._sensitive: dict[str, tuple[bool, float]] = {}

    # --- which workspaces -------------------------------------------------------------

    async def sensitive(self, conn: AsyncConnection, workspace_id: str) -> bool:
        """Whether new content of the workspace is sealed; cached, so a turn in the
        common case asks the database nothing more than it did before."""
        now = time.monotonic()
        known = self._sensitive.get(workspace_id)
        if known is not None and now - known[1] < self.cache_seconds:
            return known[0]
        if conn.dialect.name == "sqlite":
            found = await sqlite_fast.fetch_all(
                conn, "SELECT sensitive FROM workspaces WHERE id = ?", (workspace_id,)
            )
            flag = bool(found and found[0][0])
        else:
            value = await conn.scalar(
                sa.select(workspaces.c.sensitive).where(workspaces.c.id == workspace_id)
            )
            flag = bool(value)
        if len(self._sensitive) >= _CACHE_LIMIT:
            self._sensitive.clear()
        self._sensitive[workspace_id] = (flag, now)
        return flag

    def forget(self, workspace_id: str) -> None:
        """Drop a cached flag (this process just changed it)."""
        self._sensitive.pop(workspace_id, None)

    # --- events and snapshots ---------------------------------------------------------

    def seal_payload(self, workspace_id: str, stream_id: str, version: int, payload: JSON) -> JSON:
        hidden = {k: v for k, v in payload.items() if k not in CLEAR_FIELDS}
        if not hidden:
            return payload
        clear = {k: v for k, v in payload.items() if k in CLEAR_FIELDS}
        aad = event_aad(workspace_id, stream_id, version)
        return clear | {SEALED: self.keys.encrypt(_dumps(hidden), aad)}

    def open_payload(self, workspace_id: str, stream_id: str, version: int, payload: JSON) -> JSON:
        if SEALED not in payload:
            return payload
        clear = {k: v for k, v in payload.items() if k != SEALED}
        aad = event_aad(workspace_id, stream_id, version)
        hidden: JSON = json.loads(self.keys.decrypt(payload[SEALED], aad))
        return clear | hidden

    def seal_file(self, workspace_id: str, name: str, data: bytes) -> bytes:
        """A file kept on the server (a job's export), sealed to its workspace and name."""
        text = base64.b64encode(data).decode("ascii")
        return self.keys.encrypt(text, file_aad(workspace_id, name)).encode("ascii")

    def open_file(self, workspace_id: str, name: str, data: bytes) -> bytes:
        """A kept file as it was made; a file that was never sealed comes back as is."""
        text = data[: len(_SEALED_FILE)].decode("ascii", errors="replace")
        if text != _SEALED_FILE:
            return data
        opened = self.keys.decrypt(data.decode("ascii"), file_aad(workspace_id, name))
        return base64.b64decode(opened)

    def seal_snapshot(self, stream_id: str, version: int, state: JSON) -> JSON:
        workspace_id = str(state.get("workspace_id", ""))
        aad = snapshot_aad(workspace_id, stream_id, version)
        return {"workspace_id": workspace_id, SEALED: self.keys.encrypt(_dumps(state), aad)}

    def open_snapshot(self, stream_id: str, version: int, state: JSON) -> JSON:
        if SEALED not in state:
            return state
        aad = snapshot_aad(state["workspace_id"], stream_id, version)
        opened: JSON = json.loads(self.keys.decrypt(state[SEALED], aad))
        return opened

    # --- read models ------------------------------------------------------------------

    def seal_message(
        self,
        workspace_id: str,
        message_id: str,
        content: str,
        choices: list[str],
        alternatives: list[JSON],
    ) -> str:
        body = {"content": content, "choices": choices, "alternatives": alternatives}
        return self.keys.encrypt(_dumps(body), message_aad(workspace_id, message_id))

    def open_message(
        self, workspace_id: str, message_id: str, sealed: str
    ) -> tuple[str, list[str], list[JSON]]:
        body = json.loads(self.keys.decrypt(sealed, message_aad(workspace_id, message_id)))
        return body["content"], body["choices"], body["alternatives"]

    def seal_title(self, workspace_id: str, session_id: str, title: str) -> str:
        return self.keys.encrypt(title, title_aad(workspace_id, session_id))

    def open_title(self, workspace_id: str, session_id: str, sealed: str) -> str:
        return self.keys.decrypt(sealed, title_aad(workspace_id, session_id))

    def open_message_row(self, row: JSON) -> JSON:
        """A message read-model row (with `workspace_id` and `sealed`) as plaintext."""
        if row.get("sealed"):
            content, choices, alternatives = self.open_message(
                row["workspace_id"], row["id"], row["content"]
            )
            row = row | {"content": content, "choices": choices, "alternatives": alternatives}
        return row
