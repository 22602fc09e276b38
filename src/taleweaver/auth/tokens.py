"""Random secrets and their stored digests.

Login sessions, API keys and setup tokens are 256-bit random strings, so a plain
SHA-256 digest is enough to store them (no slow hash needed); the secret itself is
shown once and never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

API_KEY_PREFIX = "tw_"


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def make_api_key(key_id: str) -> str:
    """`tw_<id>_<secret>`: the id finds the row, the secret proves possession."""
    return f"{API_KEY_PREFIX}{key_id}_{new_secret()}"


def split_api_key(token: str) -> tuple[str, str] | None:
    if not token.startswith(API_KEY_PREFIX):
        return None
    key_id, sep, secret = token[len(API_KEY_PREFIX) :].partition("_")
    if not sep or not key_id or not secret:
        return None
    return key_id, secret
