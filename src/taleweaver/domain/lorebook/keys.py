"""Keys: plain words matched through one automaton per book, and `/…/flags` regexes.

A plain key's case and whole-word rules are fixed when the book is prepared (the
entry's own setting, else the book's); the automaton finds every occurrence in
lower case and `accepts` checks each occurrence against those rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_REGEX_KEY = re.compile(r"^/([\s\S]+?)/([gimsuy]*)$")
_UNESCAPED_SLASH = re.compile(r"(^|[^\\])/")
_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL}


@dataclass(frozen=True, slots=True)
class PlainKey:
    """One plain key of one entry, with the rules it is matched by."""

    key_id: int
    entry: int  # the entry's position in its book
    secondary: bool
    text: str
    folded: str  # lower case, what the automaton holds
    case_sensitive: bool
    whole_words: bool


def parse_regex_key(key: str) -> re.Pattern[str] | None:
    """The compiled regex for a `/pattern/flags` key, or None for a plain key.

    As in SillyTavern, a pattern with an unescaped `/` inside, or one that does not
    compile, is a plain key.
    """
    found = _REGEX_KEY.match(key)
    if found is None:
        return None
    pattern, flags = found.groups()
    if _UNESCAPED_SLASH.search(pattern):
        return None
    pattern = pattern.replace("\\/", "/")
    compiled_flags = 0
    for flag in flags:
        compiled_flags |= _FLAGS.get(flag, 0)
    try:
        return re.compile(pattern, compiled_flags)
    except re.error:
        return None


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


def accepts(text: str, folded_text: str, start: int, end: int, key: PlainKey) -> bool:
    """Whether the occurrence of `key` at folded_text[start:end] counts.

    Whole words: single-word keys need a non-word character (or the text's edge)
    on both sides; keys with spaces match anywhere, as SillyTavern does.
    """
    if key.whole_words and " " not in key.folded:
        if start > 0 and _is_word_char(folded_text[start - 1]):
            return False
        if end < len(folded_text) and _is_word_char(folded_text[end]):
            return False
    if not key.case_sensitive:
        return True
    if len(folded_text) == len(text):
        return text[start:end] == key.text
    # Lower-casing changed the text's length (a few Unicode letters do): check the
    # original text on its own.
    return plain_match(text, key)


def plain_match(text: str, key: PlainKey) -> bool:
    """The slow, automaton-free check of one key (a fallback and a test oracle)."""
    haystack, needle = (text, key.text) if key.case_sensitive else (text.lower(), key.folded)
    if key.whole_words and " " not in needle:
        return re.search(rf"(?<!\w){re.escape(needle)}(?!\w)", haystack) is not None
    return needle in haystack
