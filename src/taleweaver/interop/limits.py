"""How large an imported file may be (TALEWEAVER_IMPORT_MAX_BYTES, default 64 MiB),
and keeping the garbage collector out of bulk parsing."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager

from taleweaver.domain.errors import PayloadTooLarge

DEFAULT_MAX_BYTES = 64 * 1024 * 1024


def max_import_bytes() -> int:
    raw = os.environ.get("TALEWEAVER_IMPORT_MAX_BYTES", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULT_MAX_BYTES


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
