"""Safety checks on player input and narrator output; the crisis protocol."""

from __future__ import annotations

import typing as _typing

from taleweaver.safety.checker import AllowAll, SafetyChecker, SafetyDetector, SafetySubject

if _typing.TYPE_CHECKING:
    # Signed webhooks, as the studio's content webhooks sign theirs too.
    from taleweaver.safety.webhooks import (
        SIGNATURE_HEADER,
        TIMESTAMP_HEADER,
        check_url,
        sign,
        verify,
    )

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "AllowAll",
    "SafetyChecker",
    "SafetyDetector",
    "SafetySubject",
    "check_url",
    "sign",
    "verify",
]

_WEBHOOKS = frozenset({"SIGNATURE_HEADER", "TIMESTAMP_HEADER", "check_url", "sign", "verify"})


def __getattr__(name: str) -> object:
    # The webhook signing brings SQLAlchemy and the settings: loaded when first used,
    # so `taleweaver safety --help` starts without them.
    if name in _WEBHOOKS:
        from taleweaver.safety import webhooks

        value = getattr(webhooks, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
