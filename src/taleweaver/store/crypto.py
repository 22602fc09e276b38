"""Field-level encryption at rest: AES-256-GCM under a ring of named keys.

A sealed value is text, `tw1:<key id>:<base64url(nonce || ciphertext || tag)>`, so it
fits any text or JSON column and says which key opens it; the first key of the ring
seals, every key opens. Each value is bound by associated data to where it lives
(for example workspace, row id and field), so a value copied to another row, or
altered in place, fails its integrity check instead of decrypting.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from taleweaver.domain.errors import EncryptionError, InvalidInput, KeyMissing

__all__ = [
    "PREFIX",
    "Key",
    "KeyRing",
    "format_keys",
    "is_sealed",
    "key_id_of",
    "new_key",
    "parse_keys",
    "sealed_prefix",
]

log = logging.getLogger(__name__)

PREFIX = "tw1"
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # 96 bits, random per value: 2**32 values per key stay far from a repeat
# Key ids end up in every ciphertext and in SQL prefix comparisons: keep them plain.
_KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,39}$")

Key = tuple[str, bytes]  # (key id, 32 key bytes)


def _b64decode(text: str) -> bytes:
    # Accept standard and URL-safe alphabets, with or without padding.
    cleaned = text.strip().replace("-", "+").replace("_", "/").rstrip("=")
    return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def new_key(now: float | None = None) -> Key:
    """A fresh random key, its id naming the day it was made."""
    day = time.strftime("%Y%m%d", time.gmtime(now))
    return f"k{day}-{secrets.token_hex(3)}", os.urandom(KEY_BYTES)


def parse_keys(text: str, *, source: str) -> list[Key]:
    """`kid:base64key` entries separated by commas or new lines; `#` starts a comment.

    The first entry is the primary key. `source` names where the text came from, for
    error messages (which never include key material).
    """
    keys: list[Key] = []
    entries = (e for line in text.splitlines() for e in line.split("#", 1)[0].split(","))
    for raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        kid, sep, material = entry.partition(":")
        kid = kid.strip()
        if not sep or not _KEY_ID.match(kid):
            raise InvalidInput(
                f"{source}: each key must read 'id:base64key' with an id of letters, digits, "
                "'.' or '-'"
            )
        try:
            key = _b64decode(material)
        except ValueError as exc:
            raise InvalidInput(f"{source}: key {kid!r} is not valid base64") from exc
        if len(key) != KEY_BYTES:
            raise InvalidInput(
                f"{source}: key {kid!r} is {len(key)} bytes; AES-256 needs {KEY_BYTES}"
            )
        if any(kid == known for known, _ in keys):
            raise InvalidInput(f"{source}: key id {kid!r} appears twice")
        keys.append((kid, key))
    return keys


def format_keys(keys: Sequence[Key], sep: str = ",") -> str:
    return sep.join(f"{kid}:{_b64encode(key)}" for kid, key in keys)


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX + ":")


def key_id_of(sealed: str) -> str:
    return sealed.split(":", 2)[1]


def sealed_prefix(kid: str) -> str:
    """What every value sealed under `kid` starts with."""
    return f"{PREFIX}:{kid}:"


Loader = Callable[[], list[Key]]
Signature = Callable[[], object]


class KeyRing:
    """The keys in use, reloaded from their source when it changes.

    `load` reads the source; `signature` (optional) is cheap and changes whenever
    the source may have: a key file's inode, size and mtime. It is checked before
    every seal, so a running server starts sealing under a key that `taleweaver keys
    rotate` just wrote within one value, and on every unknown key id, so it can open
    values sealed by a process that rotated first. `create` (optional) makes the
    first key when sealing needs one and the source has none.
    """

    def __init__(
        self,
        load: Loader,
        *,
        description: str,
        signature: Signature | None = None,
        create: Callable[[], None] | None = None,
        missing_hint: str = "",
    ) -> None:
        self._load = load
        self._signature = signature
        self._create = create
        self.description = description
        self.missing_hint = missing_hint
        self._seen: object = None
        self._keys: list[Key] = []
        self._ciphers: dict[str, AESGCM] = {}
        self.reload()

    @classmethod
    def of(cls, keys: Sequence[Key], description: str = "the given keys") -> KeyRing:
        """A fixed ring, for tests and tools."""
        fixed = list(keys)
        return cls(lambda: fixed, description=description)

    # --- keys ------------------------------------------------------------------------

    def reload(self) -> None:
        self._seen = self._signature() if self._signature else None
        self._keys = self._load()
        self._ciphers = {kid: AESGCM(key) for kid, key in self._keys}

    def _refresh(self) -> None:
        if self._signature is not None and self._signature() != self._seen:
            self.reload()

    @property
    def key_ids(self) -> list[str]:
        self._refresh()
        return [kid for kid, _ in self._keys]

    @property
    def primary_id(self) -> str | None:
        ids = self.key_ids
        return ids[0] if ids else None

    def _primary(self) -> tuple[str, AESGCM]:
        self._refresh()
        if not self._keys and self._create is not None:
            self._create()
            self.reload()
        if not self._keys:
            raise KeyMissing(
                f"encryption at rest needs a key and {self.description} has none"
                + (f": {self.missing_hint}" if self.missing_hint else "")
            )
        kid = self._keys[0][0]
        return kid, self._ciphers[kid]

    def _cipher(self, kid: str) -> AESGCM:
        cipher = self._ciphers.get(kid)
        if cipher is None:
            self.reload()  # another process may have rotated: look again once
            cipher = self._ciphers.get(kid)
        if cipher is None:
            raise KeyMissing(
                f"a stored value was encrypted with key {kid!r}, which is not in "
                f"{self.description}; add that key back to read it"
            )
        return cipher

    # --- values ----------------------------------------------------------------------

    def encrypt(self, plaintext: str, aad: str) -> str:
        """Seal `plaintext` for the place `aad` names."""
        kid, cipher = self._primary()
        nonce = os.urandom(NONCE_BYTES)
        sealed = cipher.encrypt(nonce, plaintext.encode("utf-8"), aad.encode("utf-8"))
        return f"{PREFIX}:{kid}:{_b64encode(nonce + sealed)}"

    def decrypt(self, value: str, aad: str) -> str:
        """Open a sealed value; raise `EncryptionError` if it was altered or moved."""
        version, _, rest = value.partition(":")
        kid, _, body = rest.partition(":")
        if version != PREFIX or not body:
            raise EncryptionError(f"a stored value is not in the {PREFIX} encrypted format")
        cipher = self._cipher(kid)
        try:
            blob = _b64decode(body)
            opened = cipher.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad.encode("utf-8"))
        except (InvalidTag, ValueError) as exc:
            log.warning("ciphertext failed its integrity check (key %s)", kid)
            raise EncryptionError(
                "a stored encrypted value failed its integrity check: it was altered, or "
                "moved from the record it was sealed for"
            ) from exc
        return opened.decode("utf-8")

    def reseal(self, value: str, aad: str) -> str:
        """The same plaintext sealed under the primary key (rotation)."""
        return self.encrypt(self.decrypt(value, aad), aad)
