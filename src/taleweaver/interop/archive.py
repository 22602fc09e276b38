"""Reading a zip from a stranger within limits: workspace bundles and backups.

Declared sizes are checked before anything is inflated (entry count, per-entry and
total size, compression ratio), and entries are inflated in bounded blocks that
never pass what they declared (zipfile stops there, then checks the CRC), so a
bomb costs a header read, not gigabytes. Entry names that would climb out of a
folder (`../x`, `/etc/x`, `C:\\x`) or repeat are refused before anything is read,
so no later step that writes an entry to disk can be steered. Damage is
InvalidInput; too much is PayloadTooLarge.

TALEWEAVER_BUNDLE_MAX_INFLATED_BYTES  a bundle, inflated, in all (256 MiB); its JSON
    may cost at most eight times that in memory once parsed (see bundle_limits)
TALEWEAVER_BACKUP_MAX_INFLATED_BYTES  a backup, inflated, in all (64 GiB: streamed to
    disk and into the database a batch at a time, never held whole)
(both read by `taleweaver.config.ImportLimits`)
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from taleweaver.config import ImportLimits
from taleweaver.domain.errors import InvalidInput, PayloadTooLarge
from taleweaver.interop import bounded_json

__all__ = ["ArchiveLimits", "SafeZip", "backup_limits", "bundle_limits"]

MB = 1024 * 1024
GB = 1024 * MB
_BLOCK = 1 * MB
# What reading an entry can raise besides our own errors: CRC mismatches, truncation,
# unsupported compression methods, encryption, corrupt deflate streams.
_DAMAGE = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    EOFError,
    OSError,
    NotImplementedError,
    RuntimeError,
    ValueError,
)


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    what: str  # "bundle", "backup": named in every error
    max_total_bytes: int
    max_entry_bytes: int
    max_entries: int = 1000
    # Deflate reaches ~1000:1 on runs of one byte; JSON and databases stay far below.
    max_ratio: int = 200
    ratio_checked_above: int = 1 * MB
    max_line_bytes: int = 64 * MB  # one JSONL row (an asset row may be large)
    max_manifest_bytes: int = 1 * MB
    # What the JSON read whole may cost in memory once parsed (see _parsed_cost);
    # None where it is streamed a batch at a time (backups).
    max_parsed_bytes: int | None = None


def bundle_limits() -> ArchiveLimits:
    # A bundle is parsed whole and imported in one transaction. A 10,000-message
    # chat exports to ~11 MiB of events, so 256 MiB holds a workspace of over
    # 200,000 messages, or its characters' images beside fewer. Parsed, such JSON
    # costs ~6.5 times its size (a dict or list per value), and import ~8 times:
    # about 2 GiB at the limit, which a 2-core, 24 GB server survives with room
    # for its other work. JSON built to cost more per byte (`[{},{},...]`: 24
    # times) is held to the same ceiling by the parse budget.
    total = ImportLimits.read().bundle_max_inflated_bytes
    return ArchiveLimits("bundle", total, total, max_parsed_bytes=8 * total)


def backup_limits() -> ArchiveLimits:
    total = ImportLimits.read().backup_max_inflated_bytes
    return ArchiveLimits("backup", total, total)


def _parsed_cost(line: bytes) -> int:
    """Roughly what `line` costs in memory once parsed, counted at C speed: its text,
    and a small object (24 to 72 bytes) with its slot for each value or key. Within
    10% of tracemalloc on real bundles; above it on JSON built to be costly."""
    values = line.count(b",") + line.count(b":") + line.count(b"{") + line.count(b"[")
    return len(line) + 64 * values


class SafeZip:
    """A zip whose declared sizes passed the limits; entries read in bounded blocks."""

    def __init__(self, source: bytes | Path, limits: ArchiveLimits) -> None:
        self.limits = limits
        what = limits.what
        try:
            self.zip = zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)
        except FileNotFoundError:
            raise InvalidInput(f"no such file: {source!s:.200}") from None
        except _DAMAGE as exc:
            raise InvalidInput(f"not a Taleweaver {what} (not a zip archive): {exc}") from exc
        try:
            self._check_names()
            self._check_declared()
        except BaseException:
            self.zip.close()
            raise
        self.infos = {i.filename: i for i in self.zip.infolist() if not i.is_dir()}
        self.parsed = 0  # _parsed_cost of every line read so far

    def __enter__(self) -> SafeZip:
        return self

    def __exit__(self, *_: object) -> None:
        self.zip.close()

    def names(self) -> list[str]:
        return list(self.infos)

    def _check_names(self) -> None:
        seen: set[str] = set()
        for info in self.zip.infolist():
            # orig_filename: the name as stored, before zipfile cut it at a NUL.
            name = info.orig_filename
            parts = name.replace("\\", "/").split("/")
            if (
                not name
                or name.startswith(("/", "\\"))
                or (len(name) > 1 and name[1] == ":")
                or ".." in parts
                or "\x00" in name
            ):
                raise InvalidInput(f"the {self.limits.what} holds an unsafe entry name: {name!r}")
            if info.filename in seen:
                raise InvalidInput(f"the {self.limits.what} holds {info.filename!r} twice")
            seen.add(info.filename)

    def _check_declared(self) -> None:
        limits, what = self.limits, self.limits.what
        infos = self.zip.infolist()
        if len(infos) > limits.max_entries:
            raise PayloadTooLarge(
                f"the {what} has {len(infos)} entries; at most {limits.max_entries} are accepted"
            )
        total = packed = 0
        for info in infos:
            if info.file_size > limits.max_entry_bytes:
                raise PayloadTooLarge(
                    f"the {what}'s {info.filename} inflates to {info.file_size} bytes; "
                    f"at most {limits.max_entry_bytes} per entry"
                )
            ratio_limit = limits.max_ratio * max(info.compress_size, 1)
            if info.file_size > limits.ratio_checked_above and info.file_size > ratio_limit:
                raise PayloadTooLarge(
                    f"the {what}'s {info.filename} inflates more than {limits.max_ratio}-fold "
                    f"({info.compress_size} to {info.file_size} bytes): a zip bomb?"
                )
            total += info.file_size
            packed += info.compress_size
        if total > limits.max_total_bytes:
            raise PayloadTooLarge(
                f"the {what} inflates to {total} bytes in all; at most {limits.max_total_bytes}"
            )
        # Many entries each under the per-entry threshold add up the same way.
        if total > limits.ratio_checked_above and total > limits.max_ratio * max(packed, 1):
            raise PayloadTooLarge(
                f"the {what} inflates more than {limits.max_ratio}-fold in all "
                f"({packed} to {total} bytes): a zip bomb?"
            )

    def blocks(self, name: str, cap: int | None = None) -> Iterator[bytes]:
        """The entry's bytes, a block at a time; PayloadTooLarge past `cap`."""
        info = self.infos.get(name)
        if info is None:
            raise InvalidInput(f"the {self.limits.what} lacks {name}")
        if cap is not None and info.file_size > cap:
            raise PayloadTooLarge(
                f"the {self.limits.what}'s {name} is {info.file_size} bytes; at most {cap}"
            )
        seen = 0
        try:
            with self.zip.open(info) as stream:
                while block := stream.read(_BLOCK):
                    seen += len(block)
                    if seen > info.file_size:  # zipfile stops there; a fence all the same
                        raise InvalidInput(f"{name} inflates past its declared size")
                    yield block
        except _DAMAGE as exc:
            raise InvalidInput(f"the {self.limits.what} is damaged: {name}: {exc}") from exc

    def read_json(self, name: str, *, allow_nan: bool = False) -> Any:
        """A small JSON entry (a manifest), within max_manifest_bytes and the depth limit."""
        data = b"".join(self.blocks(name, self.limits.max_manifest_bytes))
        return bounded_json.loads(data, f"the {self.limits.what}'s {name}", allow_nan=allow_nan)

    def lines(self, name: str) -> Iterator[tuple[int, bytes]]:
        """(line number, line) of a JSONL entry, each within max_line_bytes, and all
        lines of all entries read within max_parsed_bytes."""
        limit = self.limits.max_line_bytes
        parts: list[bytes] = []
        size = 0
        number = 0
        for block in self.blocks(name):
            start = 0
            while (end := block.find(b"\n", start)) != -1:
                parts.append(block[start:end])
                number += 1
                yield number, self._budgeted(name, number, b"".join(parts))
                parts, size, start = [], 0, end + 1
            if start < len(block):
                parts.append(block[start:])
                size += len(block) - start
                if size > limit:
                    raise PayloadTooLarge(f"{name} line {number + 1} is longer than {limit} bytes")
        if parts:
            yield number + 1, self._budgeted(name, number + 1, b"".join(parts))

    def _budgeted(self, name: str, number: int, line: bytes) -> bytes:
        budget = self.limits.max_parsed_bytes
        if budget is not None:
            self.parsed += _parsed_cost(line)
            if self.parsed > budget:
                raise PayloadTooLarge(
                    f"the {self.limits.what}'s JSON would take more than {budget // MB} MiB "
                    f"of memory once parsed (reached at {name} line {number})"
                )
        return line

    def copy_to(self, name: str, sink: IO[bytes]) -> None:
        for block in self.blocks(name):
            sink.write(block)
