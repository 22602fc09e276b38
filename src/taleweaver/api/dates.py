"""The one type of a date a client sends in a query (`since`, `until`).

Python reads `0001-01-01T00:00:00+14:00` as a date, but in UTC it falls before year 1:
the PostgreSQL driver fails converting it, SQLite compares it as text. Every date
parameter is this type, so such a date is a 422 at the edge on both databases.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

__all__ = ["DATE_RANGE", "UtcDateTime"]

DATE_RANGE = "within years 1 to 9999 in UTC"


def _in_utc(value: datetime) -> datetime:
    """`value` in UTC (a date without an offset is taken as UTC already)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # a 500 unless it becomes a validation error
        raise PydanticCustomError("date_range", f"must lie {DATE_RANGE}") from None


UtcDateTime = Annotated[datetime, AfterValidator(_in_utc)]
