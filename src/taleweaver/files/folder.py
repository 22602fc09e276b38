"""A workspace's folder under the data directory (`workspaces/<id>/files`), and
reading and writing text files in it without ever leaving it: every part of a
path is checked to be a plain directory or file (no symbolic links), and the file
itself is opened with O_NOFOLLOW."""

from __future__ import annotations

import contextlib
import os
import re
import stat
from pathlib import Path

from taleweaver.domain.errors import InvalidInput, PayloadTooLarge
from taleweaver.domain.files import clean_path

__all__ = ["WorkspaceFolder", "workspace_folder"]

_WORKSPACE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def workspace_folder(data_dir: Path, workspace_id: str) -> Path:
    """The workspace's folder, made (owner only) if it is not there yet."""
    if not _WORKSPACE_ID.fullmatch(workspace_id):
        raise InvalidInput(f"workspace id {workspace_id!r} cannot name a folder")
    folder = data_dir / "workspaces" / workspace_id / "files"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


class WorkspaceFolder:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _target(self, path: str, *, make_parents: bool) -> Path:
        """Where `path` lies, every directory on the way checked (and made)."""
        parts = clean_path(path).split("/")
        here = self.root
        for part in parts[:-1]:
            here = here / part
            try:
                info = os.lstat(here)
            except FileNotFoundError:
                if not make_parents:
                    return self.root.joinpath(*parts)
                here.mkdir(mode=0o700)
                info = os.lstat(here)
            if not stat.S_ISDIR(info.st_mode):
                raise InvalidInput(f"'{path}': {part} is not a folder (links are not followed)")
        target = here / parts[-1]
        with contextlib.suppress(FileNotFoundError):
            info = os.lstat(target)
            if not stat.S_ISREG(info.st_mode):
                raise InvalidInput(f"'{path}' is not a plain file (links are not followed)")
        return target

    def exists(self, path: str) -> bool:
        return self._target(path, make_parents=False).exists()

    def read(self, path: str, max_bytes: int) -> str | None:
        """The file's text (None: there is no file there)."""
        target = self._target(path, make_parents=False)
        try:
            fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise InvalidInput(f"'{path}' cannot be read: {exc.strerror}") from exc
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise PayloadTooLarge(f"'{path}' is over the limit of {max_bytes} bytes")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"'{path}' is not UTF-8 text") from exc

    def stage(self, path: str, text: str) -> tuple[Path, Path]:
        """Write the new text beside the file; `commit` puts it in place."""
        target = self._target(path, make_parents=True)
        staged = target.with_name(f".{target.name}.{os.getpid()}.taleweaver-new")
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8"))
        return staged, target

    @staticmethod
    def commit(staged: Path, target: Path) -> None:
        os.replace(staged, target)

    @staticmethod
    def discard(staged: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            staged.unlink()
