"""The key ring the settings describe, for the engine and the CLI's key commands."""

from __future__ import annotations

from taleweaver.config import Settings
from taleweaver.store.crypto import KeyRing
from taleweaver.store.keys import KeyFile, open_key_ring

__all__ = ["key_ring_from_settings"]


def key_ring_from_settings(settings: Settings, dialect: str) -> tuple[KeyRing, KeyFile | None]:
    """Keys from TALEWEAVER_ENCRYPTION_KEYS or a key file (None: from the environment).

    A missing key file is made on first need only on SQLite, a single machine's
    database: replicas sharing PostgreSQL must be handed one key, not mint their own.
    """
    keys = settings.encryption_keys
    return open_key_ring(
        keys=keys.get_secret_value() if keys is not None else None,
        key_file=settings.key_file,
        data_dir=settings.data_dir,
        create_missing=dialect == "sqlite",
    )
