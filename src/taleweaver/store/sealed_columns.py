"""Where ciphertexts live, as each capability declares them beside its tables.

Key rotation (`store.rotation`) re-seals every declared column, so the store needs
to name no feature: a capability that seals a column calls `declare` where the
table is defined, and the table's module is imported wherever the table is used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from taleweaver.store.crypto import KeyRing, is_sealed

__all__ = ["SealedColumn", "declare", "declared", "reseal_or_seal"]


@dataclass(frozen=True)
class SealedColumn:
    """One place ciphertexts live: how to find those not under a key, and re-seal one."""

    name: str
    table: sa.Table
    keys: tuple[sa.Column[Any], ...]  # primary key, for keyset paging
    value: ColumnElement[Any]  # the ciphertext as text; NULL where a row holds none
    updated: sa.Column[Any]
    # (row, keys) -> the updated column's new value
    reseal: Callable[[Any, KeyRing], object]

    def stale(self, prefix: str) -> ColumnElement[bool]:
        return sa.and_(
            self.value.is_not(None), sa.func.substr(self.value, 1, len(prefix)) != prefix
        )


_DECLARED: dict[str, SealedColumn] = {}


def declare(column: SealedColumn) -> SealedColumn:
    """Register a sealed column (once per name; a module reloaded re-declares it)."""
    _DECLARED[column.name] = column
    return column


def declared() -> tuple[SealedColumn, ...]:
    """By name: the order does not hang on which module was imported first."""
    return tuple(_DECLARED[name] for name in sorted(_DECLARED))


def reseal_or_seal(keys: KeyRing, value: str, aad: str) -> str:
    """Re-seal under the primary key; a value written before its column was sealed
    (plaintext, without the `tw1:` prefix) is sealed for the first time."""
    return keys.reseal(value, aad) if is_sealed(value) else keys.encrypt(value, aad)
