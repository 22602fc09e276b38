"""JSON from imported files, parsed with a nesting limit that no input can pass.

`json.loads` recurses once per level, and so does everything that walks its result
afterwards (id remapping, encoders, the database driver): a file nesting 100,000
levels must be refused before any of them runs. The depth is measured without
recursion, at C speed, on the bytes: strings are cut out (their brackets do not
count), what remains is reduced to brackets, and empty pairs go one level a pass.
"""

from __future__ import annotations

import json
from typing import Any

from taleweaver.domain.errors import InvalidInput

__all__ = ["MAX_DEPTH", "check_depth", "loads"]

# Far above anything a tool writes, far below Python's recursion limit (1000).
MAX_DEPTH = 128

# Every byte but brackets and quotes goes; `{}` become `[]`, one kind is enough.
_KEEP = b'[]{}"'
_DROP = bytes(c for c in range(256) if c not in _KEEP)
_ONE_KIND = bytes.maketrans(b"{}", b"[]")


def check_depth(data: str | bytes, what: str, limit: int = MAX_DEPTH) -> None:
    """InvalidInput when `data` nests arrays and objects deeper than `limit`."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return  # too few brackets to nest that deep: the common case, at once
    # Escaped backslashes first (a run of 2k is k of them), then escaped quotes:
    # the quotes left delimit strings, and every other piece is outside them.
    unescaped = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(unescaped.translate(None, _DROP).split(b'"')[::2])
    brackets = outside.translate(_ONE_KIND)
    for _ in range(limit):
        inner = brackets.replace(b"[]", b"")
        if inner == brackets:
            break
        brackets = inner
    else:
        if b"[]" in brackets:
            raise InvalidInput(f"{what} nests deeper than {limit} levels")
    # What is left cannot pair up: `]]]` then `[[[`. Openers never closed still
    # send the parser that deep before it finds the end missing.
    if len(brackets) - len(brackets.rstrip(b"[")) > limit:
        raise InvalidInput(f"{what} nests deeper than {limit} levels")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def loads(data: str | bytes, what: str, *, limit: int = MAX_DEPTH, allow_nan: bool = False) -> Any:
    """The JSON value of `data` (UTF-8 when bytes); InvalidInput naming `what`
    when it is not JSON or nests too deep. NaN and Infinity are refused unless
    `allow_nan` (a backup carries back whatever its instance held)."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"{what} is not UTF-8 text: {exc.reason}") from exc
    else:
        text = data
    check_depth(data, what, limit)
    try:
        return json.loads(text, parse_constant=None if allow_nan else _no_constant)
    except RecursionError as exc:  # unreachable after the depth check; kept as a fence
        raise InvalidInput(f"{what} nests too deep") from exc
    except ValueError as exc:  # JSONDecodeError, and integers too long to convert
        raise InvalidInput(f"{what} is not valid JSON: {exc}") from exc
