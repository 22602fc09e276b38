"""How large an imported file may be (TALEWEAVER_IMPORT_MAX_BYTES, default 64 MiB),
keeping the garbage collector out of bulk parsing, and freeing bulk data without
holding up the event loop."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from taleweaver.config import ImportLimits
from taleweaver.domain.errors import PayloadTooLarge


def max_import_bytes() -> int:
    return ImportLimits.read().import_max_bytes


def check_size(data: bytes, what: str) -> None:
    limit = max_import_bytes()
    if len(data) > limit:
        raise PayloadTooLarge(f"the {what} is {len(data)} bytes; at most {limit} are accepted")


_pauses = 0
_was_enabled = True


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector during a bulk import or export.

    A long chat is hundreds of thousands of acyclic dicts; every allocation burst
    triggers collections that walk all of them again, a fifth of an import's CPU
    time and a third of an export's. Other requests' cyclic garbage simply waits
    the second or so until the last overlapping pause ends (a counter, so
    overlapping imports do not turn the collector back on under each other).
    """
    global _pauses, _was_enabled
    if _pauses == 0:
        _was_enabled = gc.isenabled()
        gc.disable()
    _pauses += 1
    try:
        yield
    finally:
        _pauses -= 1
        if _pauses == 0 and _was_enabled:
            gc.enable()


_SLICE = 500


def release(*bulks: list[Any]) -> None:
    """Empty `bulks` a slice at a time; run it in a thread.

    Freeing a list of a few hundred thousand parsed events is one C call that
    holds the GIL for as long as it takes (a third of a second for 40,000), and
    the event loop waits for the GIL. Slice by slice the interpreter can hand the
    GIL over in between, so the loop waits a few milliseconds at most."""
    for bulk in bulks:
        while bulk:
            del bulk[-_SLICE:]
