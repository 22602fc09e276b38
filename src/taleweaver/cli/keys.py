"""`taleweaver keys`: where the encryption keys come from, and rotating them online."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from taleweaver.config import Settings
from taleweaver.engine.encryption import key_ring_from_settings
from taleweaver.store import rotation
from taleweaver.store.crypto import KeyRing, format_keys, new_key, parse_keys
from taleweaver.store.database import Database
from taleweaver.store.keys import ENV_NAME, KeyFile

__all__ = ["KeyStatus", "env_rotation", "key_status", "rotate_keys", "status_lines"]


@dataclass
class KeyStatus:
    source: str
    key_ids: list[str]
    counts: dict[str, tuple[int, int]]  # table -> (encrypted values, under older keys)


@asynccontextmanager
async def _opened(settings: Settings) -> AsyncIterator[tuple[Database, KeyRing, KeyFile | None]]:
    # An engine, for its migrations and database; the keys are read here separately,
    # as a second process would, so a rotation exercises the reload a server does.
    from taleweaver.cli.admin import _engine

    async with _engine(settings) as engine:
        keys, file = key_ring_from_settings(settings, engine.db.dialect)
        yield engine.db, keys, file


async def key_status(settings: Settings) -> KeyStatus:
    async with _opened(settings) as (db, keys, _):
        return KeyStatus(keys.description, keys.key_ids, await rotation.pending(db, keys))


def status_lines(status: KeyStatus) -> list[str]:
    ids = status.key_ids
    lines = [
        f"keys from {status.source}: "
        + (f"primary {ids[0]}, {len(ids)} in all ({', '.join(ids)})" if ids else "none yet")
    ]
    for table, (sealed, stale) in status.counts.items():
        lines.append(f"  {table:<10} {sealed:>8} encrypted, {stale:>8} under older keys")
    return lines


def env_rotation(settings: Settings) -> str:
    """The new TALEWEAVER_ENCRYPTION_KEYS line: a fresh primary before the current keys."""
    text = settings.encryption_keys
    current = parse_keys(text.get_secret_value(), source=ENV_NAME) if text is not None else []
    return f"{ENV_NAME}=" + format_keys([new_key(), *current])


async def rotate_keys(
    settings: Settings, *, new_primary: bool, grace: float, batch: int
) -> tuple[rotation.Rotation, list[str]]:
    """Rotate (or finish re-encrypting); also the key ids nothing needs any more."""
    async with _opened(settings) as (db, keys, file):
        done = await rotation.rotate(
            db, keys, file, new_primary=new_primary, grace=grace, batch=batch
        )
        unused = [k for k in keys.key_ids if k != done.key_id] if done.left_on_old_keys == 0 else []
        return done, unused
