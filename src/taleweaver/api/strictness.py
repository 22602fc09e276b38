"""Strict request bodies that still take what JSON carries as text.

Pydantic's strict mode refuses `"2"` for an int and `1` for a bool, as a request
body should; but it also wants an enum member or a datetime object where JSON can
only send a string. `lax_text_types` marks just those types lax again.
"""

from __future__ import annotations

import enum
import types
import typing
from datetime import date, datetime, time
from typing import Annotated, Any

from pydantic import Strict

__all__ = ["LAX", "lax_text_types"]

LAX = Strict(False)
_TEXT_TYPES = (datetime, date, time)


def lax_text_types(annotation: Any) -> Any:
    """`annotation` with every enum and date/time type inside it marked lax; the
    same object when there is none."""
    if isinstance(annotation, type) and (
        issubclass(annotation, enum.Enum) or issubclass(annotation, _TEXT_TYPES)
    ):
        return Annotated[annotation, LAX]
    args = typing.get_args(annotation)
    if not args:
        return annotation
    new = tuple(lax_text_types(a) for a in args)
    if new == args:
        return annotation
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return Annotated[(new[0], *annotation.__metadata__)]
    if origin in (typing.Union, types.UnionType):
        return typing.Union[new]  # noqa: UP007  # built from a tuple of members
    if origin is typing.Literal:
        return annotation
    return origin[new]
