"""Where encryption keys come from: the environment, or a key file.

`TALEWEAVER_ENCRYPTION_KEYS` holds `kid:base64key` entries, primary first; a key
file holds the same, one per line. With neither, a key file in the data directory
is created the first time something is encrypted, but only on SQLite: a laptop has
one process and one disk, while replicas sharing PostgreSQL that each minted a key
of their own could not read each other's writes, so there a key must be given.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from taleweaver.domain.errors import InvalidInput
from taleweaver.store.crypto import Key, KeyRing, format_keys, new_key, parse_keys

try:  # serialises key-file rewrites between processes where the OS offers it
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["DEFAULT_KEY_FILE", "KeyFile", "open_key_ring"]

log = logging.getLogger(__name__)

DEFAULT_KEY_FILE = "encryption.keys"
ENV_NAME = "TALEWEAVER_ENCRYPTION_KEYS"
_HEADER = (
    "# Taleweaver encryption keys, one 'id:base64key' per line; the first one encrypts.\n"
    "# Back this file up with the database: without it encrypted content is lost.\n"
)


class KeyFile:
    """A key file, rewritten whole and atomically (0600), under an advisory lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._warned = False

    def exists(self) -> bool:
        return self.path.exists()

    def read(self) -> list[Key]:
        try:
            text = self.path.read_text(encoding="utf-8")
            mode = self.path.stat().st_mode
        except FileNotFoundError:
            return []
        if mode & (stat.S_IRWXG | stat.S_IRWXO) and not self._warned:
            self._warned = True
            log.warning("key file %s is readable by others; chmod 600 it", self.path)
        return parse_keys(text, source=f"key file {self.path}")

    def signature(self) -> object:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def create(self) -> None:
        """Write a first key, unless another process got there first."""
        with self._locked():
            if not self.read():
                self._write([new_key()])

    def add_primary(self, key: Key) -> None:
        """Put `key` first; the others stay, to open what they sealed."""
        with self._locked():
            self._write([key, *self.read()])

    def retire(self, keep: set[str]) -> list[str]:
        """Drop every key not in `keep`; return the ids dropped."""
        with self._locked():
            keys = self.read()
            dropped = [kid for kid, _ in keys if kid not in keep]
            if dropped:
                self._write([k for k in keys if k[0] in keep])
            return dropped

    def _write(self, keys: list[Key]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(_HEADER + format_keys(keys, "\n") + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, self.path)  # readers see the old file or the new, never half

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # Two rotations at once must not each drop the other's new key.
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = self.path.with_name(f".{self.path.name}.lock")
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def open_key_ring(
    *,
    keys: str | None,
    key_file: Path | None,
    data_dir: Path,
    create_missing: bool,
) -> tuple[KeyRing, KeyFile | None]:
    """The ring the settings describe, and the key file behind it (None for the env).

    `create_missing`: make the key file on first need when it does not exist yet.
    """
    if keys is not None and keys.strip():
        if key_file is not None:
            raise InvalidInput(f"set {ENV_NAME} or TALEWEAVER_KEY_FILE, not both")
        parsed = parse_keys(keys, source=ENV_NAME)
        return KeyRing.of(parsed, ENV_NAME), None
    file = KeyFile(key_file or data_dir / DEFAULT_KEY_FILE)
    ring = KeyRing(
        file.read,
        description=f"key file {file.path}",
        signature=file.signature,
        create=file.create if create_missing else None,
        missing_hint=(
            f"set {ENV_NAME}, or create the key file with `taleweaver keys rotate` "
            "(with PostgreSQL no key is made for you: every replica must share it)"
        ),
    )
    return ring, file
