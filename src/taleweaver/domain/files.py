"""File-editor sessions: a text file in a workspace's folder, every change an event.

A file is a stream (`file:<id>`): `file.created` and `file.edited` each hold the
whole text as it became (a revision, numbered from 1); an assistant's change is a
proposal (`file.proposal_made`, a unified diff against a revision) that the user
accepts (`file.proposal_accepted`, followed by the edit it makes) or rejects. A
revert is an edit holding an earlier revision's text. The assistant that proposes
changes is a session of kind `file` (`file.assistant_linked` names it), whose reply
is read as the whole new text or as a unified diff (`proposed_text`). Pure: no I/O.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from enum import StrEnum

from taleweaver.domain.errors import Conflict, InvalidInput, PayloadTooLarge

__all__ = [
    "MAX_PATH_LENGTH",
    "FileEvent",
    "apply_diff",
    "check_text",
    "clean_path",
    "file_stream",
    "proposed_text",
    "unified_diff",
]

MAX_PATH_LENGTH = 512
_NO_NEWLINE = "\\ No newline at end of file"
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_LINE = re.compile(r"[^\n]*\n|[^\n]+$")


class FileEvent(StrEnum):
    CREATED = "file.created"
    EDITED = "file.edited"
    PROPOSAL_MADE = "file.proposal_made"
    PROPOSAL_ACCEPTED = "file.proposal_accepted"
    PROPOSAL_REJECTED = "file.proposal_rejected"
    # The session whose turns propose changes to the file (its assistant).
    ASSISTANT_LINKED = "file.assistant_linked"


def file_stream(file_id: str) -> str:
    return f"file:{file_id}"


# What file systems allow in one name (NAME_MAX on Linux and macOS).
MAX_NAME_BYTES = 255


def clean_path(path: str) -> str:
    """A relative path inside a workspace's folder, as `a/b/c.txt`; InvalidInput for
    one that is absolute, climbs out (`..`), or holds NUL or control characters."""
    if not path or len(path) > MAX_PATH_LENGTH:
        raise InvalidInput(f"a file path has 1 to {MAX_PATH_LENGTH} characters")
    if "\x00" in path:
        raise InvalidInput("a file path may not contain NUL")
    if any(not c.isprintable() for c in path) or "\\" in path:
        raise InvalidInput("a file path may not contain control characters or backslashes")
    if path.startswith("/"):
        raise InvalidInput("a file path is relative to the workspace's folder, not absolute")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise InvalidInput(f"'{path}' leaves the workspace's folder or has an empty part")
    if any(len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for part in parts):
        raise InvalidInput(f"a file or folder name has at most {MAX_NAME_BYTES} bytes")
    return "/".join(parts)


def check_text(text: str, max_bytes: int) -> str:
    """The text, if a file may hold it: no NUL (not a text file), within the size."""
    if "\x00" in text:
        raise InvalidInput("a text file may not contain NUL characters")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidInput("a text file holds UTF-8 text: no lone surrogates") from exc
    if size > max_bytes:
        raise PayloadTooLarge(f"the file would be {size} bytes; the limit is {max_bytes}")
    return text


def _lines(text: str) -> list[str]:
    """Lines with their '\\n' (only '\\n' splits: a '\\r' stays in its line)."""
    return _LINE.findall(text)


def unified_diff(before: str, after: str, *, path: str, old: str, new: str) -> str:
    """`before` -> `after` as a unified diff (three lines of context), with the
    '\\ No newline at end of file' marker where a side does not end in one."""
    out: list[str] = []
    for line in difflib.unified_diff(
        _lines(before), _lines(after), f"a/{path} ({old})", f"b/{path} ({new})"
    ):
        out.append(line if line.endswith("\n") else f"{line}\n{_NO_NEWLINE}\n")
    return "".join(out)


@dataclass
class _Hunk:
    start: int  # 1-based line in the old text
    old: list[str]
    new: list[str]


def _parse(diff: str) -> list[_Hunk]:
    hunks: list[_Hunk] = []
    current: _Hunk | None = None
    last = ""  # the side the previous line went to: "old", "new" or "both"
    for raw in _lines(diff):
        line = raw[:-1] if raw.endswith("\n") else raw
        if line.startswith("@@"):
            match = _HUNK.match(line)
            if match is None:
                raise InvalidInput(f"not a hunk header: {line[:80]!r}")
            current = _Hunk(int(match.group(1)), [], [])
            hunks.append(current)
            last = ""
        elif current is None:
            continue  # headers (---, +++, diff --git, index ...) before the first hunk
        elif line.startswith(_NO_NEWLINE[:2]):
            if not last:
                raise InvalidInput("'\\ No newline' follows no line")
            sides = {"old": [current.old], "new": [current.new]}
            for side in sides.get(last, [current.old, current.new]):
                side[-1] = side[-1].removesuffix("\n")
        elif line.startswith(" ") or line == "":
            current.old.append(line[1:] + "\n")
            current.new.append(line[1:] + "\n")
            last = "both"
        elif line.startswith("-"):
            current.old.append(line[1:] + "\n")
            last = "old"
        elif line.startswith("+"):
            current.new.append(line[1:] + "\n")
            last = "new"
        else:
            raise InvalidInput(f"not a line of a unified diff: {line[:80]!r}")
    if not hunks:
        raise InvalidInput("the diff has no hunks")
    return hunks


def _find(lines: list[str], block: list[str], expected: int, start: int) -> int | None:
    """Where `block` sits in `lines` at or after `start`: at `expected` if it does,
    else the nearest place (as `patch` finds a hunk that moved)."""
    last = len(lines) - len(block)
    candidates = sorted(range(start, last + 1), key=lambda at: abs(at - expected))
    for at in candidates:
        if lines[at : at + len(block)] == block:
            return at
    return None


def apply_diff(text: str, diff: str) -> str:
    """`text` with a unified diff applied; InvalidInput for a malformed diff,
    Conflict for one whose context or removed lines are not in the text."""
    lines = _lines(text)
    out: list[str] = []
    done = 0  # lines of `lines` consumed
    offset = 0  # how far hunks found so far sat from where their headers said
    for number, hunk in enumerate(_parse(diff), start=1):
        expected = max(hunk.start - 1, 0) + offset
        if not hunk.old:  # a pure insertion: after line `start` of the old text
            expected = hunk.start + offset
        at = _find(lines, hunk.old, expected, done)
        if at is None:
            raise Conflict(f"hunk {number} of the diff does not match the file's text")
        out += lines[done:at] + hunk.new
        done = at + len(hunk.old)
        offset = at - (hunk.start - 1 if hunk.old else hunk.start)
    return "".join(out + lines[done:])


_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def proposed_text(reply: str, base: str) -> str:
    """The file's new text that an assistant's reply proposes for `base`: the first
    fenced block if it has one, else the whole reply; read as a unified diff when it
    holds a hunk header (InvalidInput or Conflict when it does not apply), else as the
    whole new text (given `base`'s final newline, which replies tend to drop). An
    empty reply or block is InvalidInput: it is never read as "empty the file"."""
    fenced = _FENCE.search(reply)
    body = fenced.group(1) if fenced else reply.strip("\n")
    if not body.strip():
        raise InvalidInput("the reply holds no text for the file")
    if any(line.startswith("@@ ") for line in body.splitlines()):
        if not body.endswith("\n"):
            body += "\n"
        return apply_diff(base, body)
    if base.endswith("\n") and not body.endswith("\n"):
        body += "\n"
    return body
