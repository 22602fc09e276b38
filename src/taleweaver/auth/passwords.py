"""Password hashing (argon2id) and the rules a password must meet."""

from __future__ import annotations

import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from taleweaver.domain.errors import InvalidInput

MIN_LENGTH = 10
_hasher = PasswordHasher()


def check_strength(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise InvalidInput(f"a password needs at least {MIN_LENGTH} characters")
    if len(password) > 1024:
        raise InvalidInput("a password may have at most 1024 characters")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def dummy_hash() -> str:
    """Verified when an account does not exist, so a wrong email costs the same time
    as a wrong password and timing does not tell which emails have accounts. Made
    on first use: hashing at import cost every CLI command ~0.1 s."""
    return _hasher.hash("not-a-real-password")
