"""Choices at the end of a story reply: parsing, and holding them out of the stream.

Models end a story reply with a list of options in many shapes ("Choices:",
"1.", "2)", "- ", "**A.**", blank lines between items) or with none at all. The
parser takes whatever trailing list is there; the splitter lets prose stream
token by token while holding back lines that may turn out to be that list, so a
client never shows the raw list and then the parsed one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_CHOICES = 9
MAX_CHOICE_CHARS = 300

_ITEM = re.compile(
    r"^\s*(?:\*\*)?(?:\(?\d{1,2}[.):]|[-*\u2022]|\(?[A-Da-d][.)])(?:\*\*)?\s+(?P<text>\S.*)$"
)
_HEADERS = (
    "choices",
    "options",
    "what do you do",
    "what will you do",
    "what would you do",
    "your choices",
    "your options",
    "you can",
    "you could",
)
_HEADER_MAX_CHARS = 80
_MAYBE_ITEM_START = re.compile(r"^(?:[\d\-*\u2022(#]|[A-Da-d](?:[.)]|$))")


@dataclass(frozen=True, slots=True)
class ParsedReply:
    prose: str
    choices: list[str] = field(default_factory=list)


def _is_header(line: str) -> bool:
    text = line.strip().strip("*_#").strip()
    if not text or len(text) > _HEADER_MAX_CHARS or text[-1] not in ":?":
        return False
    lower = text.lower()
    return any(lower.startswith(h) for h in _HEADERS)


def _clean_choice(text: str) -> str:
    cleaned = text.replace("**", "").strip().strip("_").strip()
    return cleaned[:MAX_CHOICE_CHARS]


def parse_choices(reply: str) -> ParsedReply:
    """Split a reply into prose and the trailing list of choices, if any.

    A trailing list counts when it has two or more items, or one item under a
    header such as "Choices:". Anything else stays prose, untouched.
    """
    lines = reply.split("\n")
    end = len(lines)
    while end and not lines[end - 1].strip():
        end -= 1
    start = end
    items: list[str] = []
    while start:
        line = lines[start - 1]
        match = _ITEM.match(line)
        if match:
            items.append(match.group("text"))
        elif line.strip():
            break
        start -= 1
    header = start > 0 and _is_header(lines[start - 1])
    if len(items) < 2 and not (header and items):
        return ParsedReply(prose=reply.rstrip())
    if header:
        start -= 1
    choices: list[str] = []
    for item in reversed(items):
        cleaned = _clean_choice(item)
        if cleaned and cleaned not in choices:
            choices.append(cleaned)
    prose = "\n".join(lines[:start]).rstrip()
    return ParsedReply(prose=prose, choices=choices[:MAX_CHOICES])


class ChoiceStreamSplitter:
    """Feed model tokens in; get back the text that is safe to show now.

    Lines that may belong to a trailing choice list are held until a later prose
    line proves them to be ordinary text (then they are released) or the reply
    ends (then `finish` parses them).
    """

    def __init__(self) -> None:
        self._line = ""
        self._streaming_line = False
        self._held: list[str] = []
        self._emitted: list[str] = []

    def feed(self, chunk: str) -> str:
        out: list[str] = []
        for piece in re.split(r"(\n)", chunk):
            if piece == "\n":
                self._end_line(out)
            elif piece:
                self._add(piece, out)
        text = "".join(out)
        self._emitted.append(text)
        return text

    def finish(self) -> tuple[str, ParsedReply]:
        """Return the text still to show and the parsed reply."""
        # A line that was streaming is already in _emitted; one still held is not.
        unshown = "" if self._streaming_line else self._line
        full = "".join(self._emitted) + "".join(self._held) + unshown
        parsed = parse_choices(full)
        shown = "".join(self._emitted)
        rest = parsed.prose[len(shown) :] if parsed.prose.startswith(shown) else ""
        self._emitted.append(rest)
        return rest, parsed

    def _add(self, text: str, out: list[str]) -> None:
        self._line += text
        if self._streaming_line:
            out.append(text)
            return
        if self._looks_like_prose(self._line):
            out.extend(self._held)
            self._held.clear()
            out.append(self._line)
            self._streaming_line = True

    def _end_line(self, out: list[str]) -> None:
        line = self._line
        self._line = ""
        if self._streaming_line:
            self._streaming_line = False
            out.append("\n")
            return
        if not line.strip() and not self._held:
            out.append(line + "\n")
        elif not line.strip() or _ITEM.match(line) or _is_header(line):
            self._held.append(line + "\n")
        else:
            out.extend(self._held)
            self._held.clear()
            out.append(line + "\n")

    @staticmethod
    def _looks_like_prose(partial: str) -> bool:
        text = partial.lstrip().lstrip("*_#").lower()
        if not text:
            return False
        if _MAYBE_ITEM_START.match(text) or partial.lstrip()[:1] in "*_#":
            return False
        return not any(h.startswith(text) or text.startswith(h) for h in _HEADERS)


_TAG = re.compile(r"^\s*\[(?P<tag>[^\[\]\n]{1,60})\]\s*(?P<text>\S.*)$", re.DOTALL)


def split_tags(choices: list[str]) -> tuple[list[str], list[str | None]]:
    """Separate leading `[tag]` annotations from the options a player sees.

    Kinds that ask the narrator to annotate options (therapy tags each option's
    type and goal) keep the tag with the turn, never in front of the player.
    """
    texts: list[str] = []
    tags: list[str | None] = []
    for choice in choices:
        found = _TAG.match(choice)
        texts.append(found["text"].strip() if found else choice)
        tags.append(found["tag"].strip() if found else None)
    return texts, tags
