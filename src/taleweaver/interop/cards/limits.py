"""How much a card file may hold; each limit can be raised with an environment variable
(read by `taleweaver.config.ImportLimits`).

TALEWEAVER_CARD_MAX_BYTES     one card file, and any one file inside a CHARX (20 MB)
TALEWEAVER_CARD_MAX_JSON_BYTES  the card's JSON text (8 MB)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from taleweaver.domain.errors import PayloadTooLarge

if TYPE_CHECKING:
    from taleweaver.config import ImportLimits

MB = 1024 * 1024


def max_file_bytes() -> int:
    return _limits().card_max_bytes


def max_json_bytes() -> int:
    return _limits().card_max_json_bytes


def _limits() -> ImportLimits:
    # The settings bring pydantic, which a command's --help must not wait for.
    from taleweaver.config import ImportLimits

    return ImportLimits.read()


# A CHARX: how many entries, how much in all once inflated, and how far one entry
# may inflate (zip bombs compress a thousandfold and more; real assets do not).
MAX_ENTRIES = 1000
MAX_TOTAL_BYTES = 100 * MB
MAX_RATIO = 200
RATIO_CHECKED_ABOVE = 1 * MB
# Nesting deeper than this is no card anyone wrote by hand or with a tool.
MAX_JSON_DEPTH = 64


def check_file_size(size: int, what: str) -> None:
    limit = max_file_bytes()
    if size > limit:
        raise PayloadTooLarge(f"the {what} is {size} bytes; at most {limit} are accepted")
