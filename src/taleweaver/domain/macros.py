"""Card macros (`{{char}}`, `{{user}}`, `{{random:…}}`, `{{pick:…}}`, `{{roll:…}}`, comments,
`{{outlet::name}}`).

Pure text rewriting: the caller hands in the names and the randomness, so the
same inputs always give the same prompt. `{{pick:…}}` is stable for a chat: its
choice is seeded by the chat's id, the macro's position and its text, so it
keeps its answer on every turn, while `{{random:…}}` draws anew each time.

`{{outlet::name}}` stands for the content of the lorebook entries placed in the
outlet of that name (SillyTavern's outlet position) that activated this turn,
and for nothing when none did. Those are known only once every context source
has answered, so a text expanded earlier keeps its outlet macros (`outlets`
None) and `fill_outlets` replaces them when the turn's prompt is put together.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["OUTLET", "MacroContext", "expand", "fill_outlets", "pick_index", "roll"]

_MACRO = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_DICE = re.compile(r"^\s*(\d*)\s*d\s*(\d+)\s*([+-]\s*\d+)?\s*$", re.IGNORECASE)
_PLAIN = re.compile(r"^\s*(\d+)\s*$")
# Bounds that keep a hostile card from asking for a billion dice.
MAX_DICE = 100
MAX_SIDES = 1_000_000
# The detail key of a context piece that fills an outlet (its name) instead of a place.
OUTLET = "outlet"
_OUTLET = re.compile(r"\{\{\s*outlet\s*::(.*?)\}\}", re.DOTALL | re.IGNORECASE)


@dataclass(slots=True)
class MacroContext:
    """What the macros of one text expand against."""

    char: str
    user: str = "User"
    # Seeds `{{pick}}`: the chat (session) id; empty outside a chat.
    seed: str = ""
    # Draws `{{random}}` and `{{roll}}`.
    rng: random.Random = field(default_factory=random.Random)
    # What each outlet holds this turn; None: not known yet (outlet macros are kept).
    outlets: Mapping[str, str] | None = None


def _options(argument: str) -> list[str]:
    """`a,b,c` or `a::b::c` (the form that allows commas inside an option)."""
    parts = argument.split("::") if "::" in argument else argument.split(",")
    return [p.strip() for p in parts]


def pick_index(seed: str, position: int, body: str, count: int) -> int:
    """The option a `{{pick}}` at `position` in a chat seeded `seed` settles on."""
    key = f"{seed}\x00{position}\x00{body}".encode("utf-8", "surrogatepass")
    digest = hashlib.sha256(key).digest()
    return int.from_bytes(digest[:8], "big") % count


def roll(formula: str, rng: random.Random) -> str | None:
    """`N` or `dN` (one die of N sides), `XdN`, `XdN+M`; None when not a formula."""
    plain = _PLAIN.match(formula)
    if plain:
        count, sides, bonus = 1, int(plain.group(1)), 0
    else:
        dice = _DICE.match(formula)
        if dice is None:
            return None
        count = int(dice.group(1) or 1)
        sides = int(dice.group(2))
        bonus = int((dice.group(3) or "0").replace(" ", ""))
    if not (1 <= count <= MAX_DICE and 1 <= sides <= MAX_SIDES):
        return None
    return str(sum(rng.randint(1, sides) for _ in range(count)) + bonus)


def expand(text: str, ctx: MacroContext) -> str:
    """Every macro in `text` replaced; unknown ones are left as they were written."""

    def replace(match: re.Match[str]) -> str:
        body = match.group(1)
        name, sep, argument = body.partition(":")
        key = name.strip().lower()
        if argument.startswith(":"):  # the `{{random::a::b}}` spelling
            argument = argument[1:]
        if body.lstrip().startswith("//"):
            return ""
        if not sep:
            if key == "char":
                return ctx.char
            if key == "user":
                return ctx.user
            return match.group(0)
        if key in ("comment", "hidden_key"):
            return ""
        if key == "random":
            options = _options(argument)
            return options[ctx.rng.randrange(len(options))]
        if key == "pick":
            options = _options(argument)
            return options[pick_index(ctx.seed, match.start(), body, len(options))]
        if key == "outlet":
            if ctx.outlets is None:
                return match.group(0)
            return ctx.outlets.get(argument.strip(), "")
        if key == "roll":
            rolled = roll(argument, ctx.rng)
            return match.group(0) if rolled is None else rolled
        return match.group(0)

    return _MACRO.sub(replace, text)


def fill_outlets(text: str, outlets: Mapping[str, str]) -> str:
    """`text` with each `{{outlet::name}}` replaced by what that outlet holds (an outlet
    with nothing activated in it: by nothing)."""
    if "{{" not in text:
        return text
    return _OUTLET.sub(lambda m: outlets.get(m.group(1).strip(), ""), text)
