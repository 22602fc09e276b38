"""Key rotation: re-seal every stored ciphertext under the primary key, online.

Work goes in small batches, each its own short write transaction, so turns keep
committing between them; the batch's rows are read and rewritten under the write
lock, so no concurrent write is overwritten. New writes already use the primary
key (a key ring reloads its file when it changes), and a pass repeats until it
finds nothing left, which picks up values sealed just before the switch.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from taleweaver.domain.errors import EncryptionError, InvalidInput, KeyMissing
from taleweaver.domain.events import JSON
from taleweaver.store.crypto import KeyRing, new_key, sealed_prefix
from taleweaver.store.database import Database
from taleweaver.store.keys import KeyFile
from taleweaver.store.schema import events, messages, secrets, sessions, snapshots
from taleweaver.store.sealed_columns import SealedColumn, declared
from taleweaver.store.sealing import (
    SEALED,
    event_aad,
    message_aad,
    secret_aad,
    snapshot_aad,
    title_aad,
)

__all__ = ["TARGETS", "Rotation", "pending", "reencrypt", "rotate", "targets"]

BATCH = 200
MAX_PASSES = 5
GRACE_SECONDS = 2.0


def _payload(row: Any, keys: KeyRing) -> JSON:
    aad = event_aad(row.workspace_id, row.stream_id, row.version)
    payload: JSON = row.payload
    return payload | {SEALED: keys.reseal(payload[SEALED], aad)}


def _state(row: Any, keys: KeyRing) -> JSON:
    state: JSON = row.state
    aad = snapshot_aad(state["workspace_id"], row.stream_id, row.version)
    return state | {SEALED: keys.reseal(state[SEALED], aad)}


# The store's own ciphertexts; capabilities declare theirs (store.sealed_columns).
TARGETS = (
    SealedColumn(
        "secrets",
        secrets,
        (secrets.c.workspace_id, secrets.c.name),
        secrets.c.ciphertext,
        secrets.c.ciphertext,
        lambda row, keys: keys.reseal(row.ciphertext, secret_aad(row.workspace_id, row.name)),
    ),
    SealedColumn(
        "events",
        events,
        (events.c.position,),
        events.c.payload[SEALED].as_string(),
        events.c.payload,
        _payload,
    ),
    SealedColumn(
        "snapshots",
        snapshots,
        (snapshots.c.stream_id,),
        snapshots.c.state[SEALED].as_string(),
        snapshots.c.state,
        _state,
    ),
    SealedColumn(
        "messages",
        messages,
        (messages.c.id,),
        sa.case((messages.c.sealed, messages.c.content)),
        messages.c.content,
        lambda row, keys: keys.reseal(row.content, message_aad(row.workspace_id, row.id)),
    ),
    SealedColumn(
        "sessions",
        sessions,
        (sessions.c.id,),
        sa.case((sessions.c.sealed, sessions.c.title)),
        sessions.c.title,
        lambda row, keys: keys.reseal(row.title, title_aad(row.workspace_id, row.id)),
    ),
)


def targets() -> tuple[SealedColumn, ...]:
    """Every sealed column: the store's own, then those capabilities declared."""
    return TARGETS + declared()


def _primary_prefix(keys: KeyRing) -> str:
    primary = keys.primary_id
    if primary is None:
        raise KeyMissing(f"nothing to rotate to: {keys.description} has no key")
    return sealed_prefix(primary)


def _reseal(target: SealedColumn, row: Any, keys: KeyRing) -> object:
    try:
        return target.reseal(row, keys)
    except EncryptionError as exc:  # say which row, so it can be found and dealt with
        where = ", ".join(f"{c.name}={getattr(row, c.name)!r}" for c in target.keys)
        raise type(exc)(f"{target.name} ({where}): {exc.detail}") from exc


async def _batch(
    db: Database, keys: KeyRing, target: SealedColumn, after: tuple[Any, ...] | None, size: int
) -> tuple[int, tuple[Any, ...] | None]:
    """Re-seal up to `size` rows past `after`; return how many and the last key."""
    prefix = _primary_prefix(keys)
    query = sa.select(target.table).where(target.stale(prefix))
    if after is not None:
        query = query.where(sa.tuple_(*target.keys) > sa.tuple_(*after))
    query = query.order_by(*target.keys).limit(size)
    params = [f"k{i}" for i in range(len(target.keys))]
    update = (
        target.table.update()
        .where(*(col == sa.bindparam(p) for col, p in zip(target.keys, params, strict=True)))
        .values({target.updated.name: sa.bindparam("new_value")})
    )
    async with db.write() as conn:
        await db.lock(conn)  # read and rewrite under one lock: nothing slips between
        rows = (await conn.execute(query)).all()
        if not rows:
            return 0, None
        changes = [
            {p: getattr(row, col.name) for col, p in zip(target.keys, params, strict=True)}
            | {"new_value": _reseal(target, row, keys)}
            for row in rows
        ]
        await conn.execute(update, changes)
    last = rows[-1]
    return len(rows), tuple(getattr(last, col.name) for col in target.keys)


async def _pass(db: Database, keys: KeyRing, batch: int) -> dict[str, int]:
    done: dict[str, int] = {}
    for target in targets():
        count, after = 0, None
        while True:
            n, after = await _batch(db, keys, target, after, batch)
            count += n
            if n < batch:
                break
            await asyncio.sleep(0)  # let turns waiting for the lock go first
        done[target.name] = count
    return done


async def reencrypt(db: Database, keys: KeyRing, *, batch: int = BATCH) -> dict[str, int]:
    """Re-seal every ciphertext not under the primary key; counts per table."""
    total = {t.name: 0 for t in targets()}
    for _ in range(MAX_PASSES):
        done = await _pass(db, keys, batch)
        for name, n in done.items():
            total[name] += n
        if not any(done.values()):
            break
    return total


async def pending(db: Database, keys: KeyRing) -> dict[str, tuple[int, int]]:
    """Per table: (ciphertexts, of which not under the primary key)."""
    primary = keys.primary_id
    found: dict[str, tuple[int, int]] = {}
    async with db.read() as conn:
        for target in targets():
            stale = (
                target.stale(sealed_prefix(primary))
                if primary is not None
                else target.value.is_not(None)  # no key at all: every value is stranded
            )
            row = (
                await conn.execute(
                    sa.select(
                        sa.func.count(target.value), sa.func.count(sa.case((stale, 1)))
                    ).select_from(target.table)
                )
            ).one()
            found[target.name] = (int(row[0]), int(row[1]))
    return found


@dataclass
class Rotation:
    key_id: str
    reencrypted: dict[str, int]
    left_on_old_keys: int
    retired: list[str] = field(default_factory=list)


async def rotate(
    db: Database,
    keys: KeyRing,
    key_file: KeyFile | None,
    *,
    new_primary: bool = True,
    grace: float = GRACE_SECONDS,
    batch: int = BATCH,
) -> Rotation:
    """Make a new primary key in the key file (unless `new_primary` is False: then
    finish re-sealing under the current one), re-seal everything under it, and drop
    the older keys from the file once nothing needs them.

    `grace`: seconds between writing the key and re-sealing, for writes that sealed
    under the old key just before the switch to commit (the passes repeat anyway).
    """
    if new_primary:
        if key_file is None:
            raise InvalidInput("keys from the environment cannot be rewritten here")
        key_file.add_primary(new_key())
        keys.reload()
        await asyncio.sleep(grace)
    primary = keys.primary_id
    if primary is None:
        raise KeyMissing(f"nothing to re-encrypt under: {keys.description} has no key")
    counts = await reencrypt(db, keys, batch=batch)
    left = sum(stale for _, stale in (await pending(db, keys)).values())
    retired: list[str] = []
    if left == 0 and key_file is not None:
        retired = key_file.retire({primary})
        keys.reload()
    return Rotation(primary, counts, left, retired)
