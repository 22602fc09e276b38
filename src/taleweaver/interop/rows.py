"""Table rows as portable JSON, for backups and workspace bundles.

Tables come from the shared schema metadata, including every feature's
`taleweaver.store.*_schema` module, so a table another feature adds is carried
without this module knowing it. Values are encoded by column type: timestamps as
ISO 8601, binary as base64, decimals as strings; JSON columns stay JSON.
"""

from __future__ import annotations

import base64
import importlib
import pkgutil
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

import taleweaver.store
from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.events import JSON
from taleweaver.store.schema import metadata


def tables() -> list[sa.Table]:
    """Every table the code knows, parents before children."""
    for module in pkgutil.iter_modules(taleweaver.store.__path__):
        if module.name.endswith("_schema"):
            importlib.import_module(f"taleweaver.store.{module.name}")
    return list(metadata.sorted_tables)


def table_named(name: str) -> sa.Table:
    for table in tables():
        if table.name == name:
            return table
    raise InvalidInput(f"unknown table {name!r}: the file comes from another version")


def order_by(table: sa.Table) -> list[sa.Column[Any]]:
    """A stable row order: the primary key, else every column."""
    return list(table.primary_key.columns) or list(table.columns)


def encode(table: sa.Table, row: Mapping[Any, Any]) -> JSON:
    out: JSON = {}
    for column in table.columns:
        if column.name in row:
            out[column.name] = _encode_value(row[column.name])
    return out


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        # SQLite hands back naive times; every time stored here is UTC.
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "tolist"):  # vectors
        return value.tolist()
    return value


def decode(table: sa.Table, data: Mapping[str, Any]) -> dict[str, Any]:
    """A row ready to insert, or `InvalidInput` for a column the table does not have."""
    unknown = set(data) - set(table.columns.keys())
    if unknown:
        raise InvalidInput(f"table {table.name} has no column(s) {', '.join(sorted(unknown))}")
    row: dict[str, Any] = {}
    for name, value in data.items():
        row[name] = _decode_value(table.columns[name], value)
    return row


_INT32 = 2**31
_INT64 = 2**63


def _check_type(column: sa.Column[Any], value: Any) -> None:
    """InvalidInput for a value its column cannot hold, so SQLite (which stores
    anything anywhere) refuses what PostgreSQL would, with the same words."""
    kind = column.type
    problem = None
    if isinstance(kind, sa.Boolean):
        if not isinstance(value, bool):
            problem = "is not true or false"
    elif isinstance(kind, sa.Integer):
        bound = _INT64 if isinstance(kind, sa.BigInteger) else _INT32
        if isinstance(value, bool) or not isinstance(value, int):
            problem = "is not an integer"
        elif not -bound <= value < bound:
            problem = "is out of range"
    elif isinstance(kind, sa.Float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            problem = "is not a number"
    elif isinstance(kind, sa.String):
        if not isinstance(value, str):
            problem = "is not text"
        elif kind.length is not None and len(value) > kind.length:
            problem = f"is longer than {kind.length} characters"
    if problem is not None:
        raise InvalidInput(f"{column.table.name}.{column.name}: {value!r:.60} {problem}")


def _decode_value(column: sa.Column[Any], value: Any) -> Any:
    if value is None:
        return None
    kind = column.type
    _check_type(column, value)
    try:
        if isinstance(kind, sa.DateTime):
            stamp = datetime.fromisoformat(value)
            if kind.timezone and stamp.tzinfo is None:  # SQLite keeps no zone: it was UTC
                stamp = stamp.replace(tzinfo=UTC)
            elif not kind.timezone and stamp.tzinfo is not None:
                stamp = stamp.astimezone(UTC).replace(tzinfo=None)
            return stamp
        if isinstance(kind, sa.Date):
            return date.fromisoformat(value)
        if isinstance(kind, sa.LargeBinary):
            return base64.b64decode(value, validate=True)
        if isinstance(kind, sa.Numeric) and not isinstance(kind, sa.Float):
            return Decimal(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{column.table.name}.{column.name}: bad value {value!r:.60}") from exc
    return value
