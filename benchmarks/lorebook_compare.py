"""The engine's lorebook activation against the SillyTavern reference (lorebook_reference).

Both read the same World Info JSON and the same chat, with the same fixed rolls
and token count; what each activates (entry, step, in order) and cuts for the
budget is compared. Books: generated SillyTavern-shaped ones (2% regex keys,
150-word messages, recursion on and off) and the test fixtures' books, with
chats of several messages and turns in a row (for timed effects).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import lorebook_reference as st
from benchmarks.lorebook_books import Generated, book, windows
from taleweaver.domain.lorebook import (
    ActiveCharacter,
    Book,
    BookSettings,
    Segment,
    activate,
)
from taleweaver.memory.lorebook.formats import parse_lorebook, to_format
from taleweaver.memory.lorebook.matcher import PreparedBooks

FIXTURES = Path(__file__).parent.parent / "tests" / "data" / "lorebooks"
JSONDict = dict[str, Any]


@dataclass(frozen=True)
class Case:
    name: str
    entries: list[JSONDict]  # World Info entries, in the file's order
    settings: st.Settings
    chats: list[list[str]]  # each a scan window, newest first; one turn each, in a row


def _ours(case: Case) -> Iterator[st.Result]:
    keyed = {str(e.get("uid", n)): e for n, e in enumerate(case.entries)}
    parsed = parse_lorebook({"entries": keyed})
    s = case.settings
    settings = BookSettings(
        scan_depth=s.depth,
        recursive=s.recursive,
        case_sensitive=s.case_sensitive,
        match_whole_words=s.match_whole_words,
        use_group_scoring=s.use_group_scoring,
        max_recursion_steps=s.max_recursion_steps,
    )
    prepared = PreparedBooks().build("book", 1, "Book", settings, parsed.entries)
    timed: JSONDict = {}
    for turn, chat in enumerate(case.chats):
        window = [Segment(f"message {n}", text) for n, text in enumerate(chat)]
        outcome = activate(
            [prepared],
            window,
            clock=2 * turn + 1,
            timed_state=timed,
            seed=f"{case.name}:{turn}",
            budget_tokens=s.budget,
            character=_character(turn),
            count_tokens=st.count_tokens,
        )
        timed = outcome.timed
        yield st.Result(
            [(a.entry.uid, a.step) for a in outcome.activated], [c.uid for c in outcome.cut]
        )


def _character(turn: int) -> ActiveCharacter | None:
    """Who speaks: by turns nobody, Aster (tagged hero), and Brin (tagged villain)."""
    who = _who(turn)
    return None if who is None else ActiveCharacter(tuple(who[0]), tuple(who[1]))


def _who(turn: int) -> tuple[list[str], list[str]] | None:
    return [None, (["Aster"], ["hero"]), (["Brin"], ["villain"])][turn % 3]


def _reference(case: Case) -> Iterator[st.Result]:
    timed: JSONDict = {}
    for turn, chat in enumerate(case.chats):
        who = _who(turn)
        result = st.activate(
            case.entries,
            case.settings,
            st.Turn(chat, 2 * turn + 1, f"{case.name}:{turn}", who, "normal", timed),
        )
        timed = result.timed
        yield result


def differences(case: Case) -> list[str]:
    """Each turn where the engine and the reference differ, described."""
    found: list[str] = []
    for turn, (ours, ref) in enumerate(zip(_ours(case), _reference(case), strict=True)):
        if ours.activated != ref.activated or ours.cut != ref.cut:
            found.append(
                f"{case.name} turn {turn}: ours {ours.activated} cut {ours.cut}; "
                f"SillyTavern's rules {ref.activated} cut {ref.cut}"
            )
    return found


def _as_world_info(entries: Sequence[Any], name: str) -> list[JSONDict]:
    """Our entries written as a World Info file (what both sides then read)."""
    data = to_format(
        Book(name=name, format="taleweaver", entries=tuple(entries),
             raw_entries=(None,) * len(entries)),
        "sillytavern",
    )
    return list(data["entries"].values())


def generated_cases(size: int, turns: int, seed: int = 7) -> list[Case]:
    rng = random.Random(seed + size)
    generated: Generated = book(size, rng)
    entries = _as_world_info(generated.entries, "generated")
    chats = [[s.text for s in w] for w in windows(rng, generated, turns)]
    return [
        Case(
            f"generated {size:,} recursion {'on' if recursive else 'off'}",
            entries,
            st.Settings(match_whole_words=True, recursive=recursive, budget=1024),
            chats,
        )
        for recursive in (True, False)
    ]


# Chats for the fixture books: their keys, across several messages.
_FIXTURE_WORDS = (
    "dragon", "wyrm", "Ember", "Court", "griffin", "wolves", "river", "ferry", "crossing",
    "toll", "bridge", "Aster", "Brin", "king", "queen", "sword", "the", "a", "of", "and",
    "mist", "tower", "market", "gate", "storm", "ship", "lantern",
)


def fixture_cases(turns: int = 12, seed: int = 3) -> list[Case]:
    rng = random.Random(seed)
    cases: list[Case] = []
    for path in sorted(FIXTURES.glob("*.json")):
        data = json.loads(path.read_text())
        if "entries" not in data and "data" in data:  # a character card with its book
            data = (data.get("data") or {}).get("character_book") or {}
        try:
            parsed = parse_lorebook(data)
        except Exception:
            continue
        if parsed.format == "sillytavern":
            entries = list(data["entries"].values())
        else:
            entries = _as_world_info(parsed.entries, path.stem)
        texts = [e.get("content", "") for e in entries] + [" ".join(_FIXTURE_WORDS)]
        words = list(_FIXTURE_WORDS) + [w for t in texts for w in t.split()[:6]]
        chats = [
            [" ".join(rng.choice(words) for _ in range(rng.randint(4, 30))) for _ in range(4)]
            for _ in range(turns)
        ]
        for recursive, depth in ((False, 2), (True, 2), (True, 1), (False, 4)):
            settings = st.Settings(depth=depth, recursive=recursive, budget=200)
            cases.append(
                Case(f"{path.stem} depth {depth} recursion {recursive}", entries, settings, chats)
            )
    return cases


def _rule(uid: int, keys: list[str], content: str, **fields: Any) -> JSONDict:
    return {"uid": uid, "key": keys, "keysecondary": [], "content": content, "order": 100,
            "selective": True, "constant": False, "disable": False} | fields


def _who_for(exclude: bool, names: list[str], tags: list[str]) -> JSONDict:
    return {"isExclude": exclude, "names": names, "tags": tags}


def rules_book() -> list[JSONDict]:
    """One book that exercises every rule: logic, case, whole words, regexes, constants,
    probability, recursion flags and levels, groups, timed effects, filters, triggers,
    and a budget that fills."""
    return [
        _rule(0, ["dragon"], "The dragon wakes the knight.", order=50),
        _rule(1, ["knight"], "A knight of the Ember Court.", order=60),
        _rule(2, ["court"], "The court meets at the tower.", order=70, excludeRecursion=True),
        _rule(3, ["tower"], "The tower hides a griffin.", preventRecursion=True),
        _rule(4, ["griffin"], "Griffins guard the river.", delayUntilRecursion=True),
        _rule(5, ["river"], "The river runs to the sea.", delayUntilRecursion=2),
        _rule(6, ["queen"], "The queen.", keysecondary=["dead", "crown"], selectiveLogic=0),
        _rule(7, ["queen"], "Queen, not all.", keysecondary=["dead", "crown"], selectiveLogic=1),
        _rule(8, ["queen"], "Queen, not any.", keysecondary=["dead", "crown"], selectiveLogic=2),
        _rule(9, ["queen"], "Queen, and all.", keysecondary=["dead", "crown"], selectiveLogic=3),
        _rule(10, ["Aster"], "Aster, case-sensitive.", caseSensitive=True),
        _rule(11, ["ash"], "Ash, whole word.", matchWholeWords=True),
        _rule(12, ["ash"], "Ash, anywhere.", matchWholeWords=False),
        _rule(13, ["/\\bwolf(?:ves)?\\b/i"], "Wolves, by regex."),
        _rule(14, ["/^Storm/m"], "Storm at a line's start."),
        _rule(15, [], "Always here.", constant=True, order=10),
        _rule(16, ["mist"], "Mist, maybe.", probability=50, useProbability=True),
        _rule(17, ["sword"], "Sword A.", group="blades", groupWeight=30),
        _rule(18, ["sword"], "Sword B.", group="blades", groupWeight=70),
        _rule(19, ["blade", "sword"], "Sword C, scored.", group="edges", useGroupScoring=True),
        _rule(20, ["blade"], "Blade D, scored.", group="edges", useGroupScoring=True),
        _rule(21, ["shield"], "Shield E, override.", group="guard", groupOverride=True, order=5),
        _rule(22, ["shield"], "Shield F.", group="guard", order=90),
        _rule(23, ["lantern"], "Lantern, sticky.", sticky=2, cooldown=2),
        _rule(24, ["ship"], "Ship, cooldown.", cooldown=3),
        _rule(25, ["gate"], "Gate, delayed.", delay=5),
        _rule(26, ["market"], "For Aster.", characterFilter=_who_for(False, ["Aster"], [])),
        _rule(27, ["market"], "Not for Aster.", characterFilter=_who_for(True, ["Aster"], [])),
        _rule(28, ["market"], "For heroes.", characterFilter=_who_for(False, [], ["hero"])),
        _rule(29, ["market"], "Not for heroes.", characterFilter=_who_for(True, [], ["hero"])),
        _rule(30, ["toll"], "Only on continue.", triggers=["continue"]),
        _rule(31, ["toll"], "On a normal turn.", triggers=["normal"]),
        _rule(32, ["ferry"], "A long ferry story. " * 30, order=80),
        _rule(33, ["ferry"], "Ignores the budget.", ignoreBudget=True, order=1),
        _rule(34, ["bridge"], "Bridge, disabled.", disable=True),
        _rule(35, ["king"], "@@activate\nThe king, by decorator."),
        _rule(36, ["crown"], "@@dont_activate\nNever."),
        _rule(37, ["crown"], "Scans only the newest message.", scanDepth=1),
        _rule(38, ["crown"], "Scans nothing.", scanDepth=0),
    ]


_RULE_WORDS = (
    "dragon", "knight", "court", "tower", "griffin", "river", "queen", "dead", "crown",
    "Aster", "aster", "ash", "ashen", "wolf", "wolves", "Storm", "mist", "sword", "blade",
    "shield", "lantern", "ship", "gate", "market", "toll", "ferry", "bridge", "king",
    "the", "a", "of", "and", "we", "it",
)


def rules_cases(turns: int = 30, seed: int = 11) -> list[Case]:
    rng = random.Random(seed)
    chats = [
        [" ".join(rng.choice(_RULE_WORDS) for _ in range(rng.randint(2, 12))) for _ in range(3)]
        for _ in range(turns)
    ]
    for chat in chats[::4]:
        chat[0] = "Storm at sea.\n" + chat[0]
    return [
        Case(f"rules depth {depth} recursion {recursive} budget {budget}", rules_book(),
             st.Settings(depth=depth, recursive=recursive, budget=budget,
                         max_recursion_steps=steps), chats)
        for depth, recursive, budget, steps in (
            (2, False, 1024, 0), (2, True, 1024, 0), (3, True, 120, 0), (1, True, 1024, 2),
        )
    ]
