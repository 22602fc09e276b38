"""Safety checks on player input and narrator output; the crisis protocol."""

from taleweaver.safety.checker import AllowAll, SafetyChecker, SafetyDetector, SafetySubject

# Signed webhooks, as the studio's content webhooks sign theirs too.
from taleweaver.safety.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, check_url, sign, verify

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
