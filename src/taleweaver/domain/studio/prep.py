"""Session prep, pure: the request the studio's model gets for session 1 and for a
prep packet, the reply read back into sections, and the packet itself, every item
citing where it came from (entity and fact ids, session and turn ids, summary ids,
the blueprint's version). Also the weekly recap of a campaign. No I/O.

A source is a small object, one of:
  {"blueprint_id", "blueprint_version"}
  {"entity_id"} / {"fact_id", "entity_id"}
  {"session_id", "summary_id", "turns": [first, last]}
  {"session_id", "turn_id"}
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from taleweaver.domain.events import JSON
from taleweaver.domain.studio.blueprints import blueprint_markdown
from taleweaver.domain.turns import MAX_INPUT_CHARS

PACKET_SECTIONS = ("open_threads", "encounters", "handouts")
_HEADINGS = {
    "open threads": "open_threads",
    "threads": "open_threads",
    "encounters": "encounters",
    "handouts": "handouts",
}
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")
_BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(.+?)\s*$")
MAX_NPCS = 12
MAX_RECAP_CHARS = 1_500

Redact = Callable[[str], str]


def blueprint_source(blueprint: Mapping[str, Any]) -> JSON:
    return {"blueprint_id": blueprint["id"], "blueprint_version": blueprint["version"]}


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _npc_lines(npcs: Sequence[Mapping[str, Any]]) -> list[str]:
    return [f"- {n['name']}: {_clip(str(n.get('summary') or ''), 200)}".rstrip(": ") for n in npcs]


def session_one_request(
    blueprint: Mapping[str, Any],
    npcs: Sequence[Mapping[str, Any]],
    *,
    redact: Redact | None = None,
) -> str:
    """What the studio is asked to write session 1 from: the blueprint (as Markdown)
    and the world's canon NPCs; the world bible's other canon reaches the model
    through the studio session's recall. Fits one turn's input."""
    page = blueprint_markdown(blueprint["fields"], version=blueprint["version"])
    ask = (
        "Write session 1 of this campaign for the game master: the opening scene, "
        "what the players learn, the first choices and where it can end. "
        "Use the campaign blueprint and the world's canon.\n\n"
    )
    cast = _npc_lines(npcs)
    text = ask + page + ("\n\n## Canon NPCs\n" + "\n".join(cast) if cast else "")
    text = redact(text) if redact else text
    return _clip(text, MAX_INPUT_CHARS)


def prep_request(
    blueprint: Mapping[str, Any],
    recap: Sequence[Mapping[str, Any]],
    npcs: Sequence[Mapping[str, Any]],
    *,
    redact: Redact | None = None,
) -> str:
    """What the studio is asked for the parts of a prep packet that need writing:
    open threads, encounters and handouts, each a bulleted list under its heading."""
    lines = [
        "Prepare the next session. Answer with three headings, '## Open threads', "
        "'## Encounters' and '## Handouts', each a bulleted list; name NPCs as [[Name]].",
        "",
        f"Campaign: {blueprint['fields'].get('name')}",
    ]
    premise = blueprint["fields"].get("premise")
    if premise:
        lines.append(f"Premise: {premise}")
    if recap:
        lines += ["", "## Story so far"] + [f"- {_clip(str(r['text']), 600)}" for r in recap]
    cast = _npc_lines(npcs)
    if cast:
        lines += ["", "## NPCs", *cast]
    text = "\n".join(lines)
    text = redact(text) if redact else text
    return _clip(text, MAX_INPUT_CHARS)


def read_sections(reply: str) -> dict[str, list[str]]:
    """The bulleted items under the packet's headings (others are ignored)."""
    found: dict[str, list[str]] = {name: [] for name in PACKET_SECTIONS}
    current: str | None = None
    for line in reply.splitlines():
        heading = _HEADING.match(line)
        if heading:
            title = heading.group(1).strip().strip("*_").rstrip(":").casefold()
            current = _HEADINGS.get(title)
            continue
        bullet = _BULLET.match(line)
        if current is not None and bullet:
            found[current].append(bullet.group(1))
    return found


def mentioned(text: str, entities: Sequence[Mapping[str, Any]]) -> list[str]:
    """Ids of the entities a text names (by name or alias, whole words, any case)."""
    folded = text.casefold()
    ids: list[str] = []
    for entity in entities:
        labels = [entity["name"], *(entity.get("aliases") or [])]
        for label in labels:
            pattern = r"(?<!\w)" + re.escape(str(label).casefold()) + r"(?!\w)"
            if label and re.search(pattern, folded):
                ids.append(str(entity["id"]))
                break
    return ids


def npc_cards(
    entities: Sequence[Mapping[str, Any]],
    facts: Sequence[Mapping[str, Any]],
    *,
    context: str,
    limit: int = MAX_NPCS,
) -> list[JSON]:
    """NPCs likely to appear, assembled from the bible (no model): the world's NPCs
    that are not deprecated, those the blueprint and the recaps name first, then
    canon before drafts, each with its facts and the ids they came from."""
    named = set(mentioned(context, entities))
    rank = {"canon": 0, "reviewed": 1, "draft": 2}
    npcs = [e for e in entities if e.get("type") == "npc" and e.get("status") != "deprecated"]
    npcs.sort(key=lambda e: (e["id"] not in named, rank.get(str(e.get("status")), 3), e["name"]))
    cards = []
    for entity in npcs[:limit]:
        own = [f for f in facts if f.get("entity_id") == entity["id"]]
        cards.append(
            {
                "entity_id": entity["id"],
                "name": entity["name"],
                "status": entity.get("status"),
                "summary": entity.get("summary") or "",
                "facts": [
                    {"fact_id": f["id"], "attribute": f["attribute"], "value": f["value"]}
                    for f in own
                ],
                "why": "named in the blueprint or the recaps"
                if entity["id"] in named
                else "an NPC of this world",
                "sources": [{"entity_id": entity["id"]}]
                + [{"fact_id": f["id"], "entity_id": entity["id"]} for f in own],
            }
        )
    return cards


def recap_items(summaries: Sequence[Mapping[str, Any]]) -> list[JSON]:
    """The recap, assembled from stored summaries (or, for a session with none yet,
    its latest replies), each item citing the summary or turn it came from."""
    items = []
    for s in summaries:
        if s.get("summary_id"):
            source: JSON = {
                "session_id": s["session_id"],
                "summary_id": s["summary_id"],
                "turns": [s["first_turn"], s["last_turn"]],
            }
        else:
            source = {"session_id": s["session_id"], "turn_id": s["turn_id"]}
        items.append(
            {
                "text": _clip(str(s["text"]), MAX_RECAP_CHARS),
                "session_id": s["session_id"],
                "session_title": s.get("session_title"),
                "sources": [source],
            }
        )
    return items


def build_packet(
    *,
    blueprint: Mapping[str, Any],
    world_id: str | None,
    recap: list[JSON],
    npcs: list[JSON],
    entities: Sequence[Mapping[str, Any]],
    reply: str,
    turn_ref: JSON | None,
    generated_at: str,
) -> JSON:
    """The packet: recap and NPCs as assembled; open threads, encounters and
    handouts read from the studio turn's reply, each citing that turn, the
    blueprint's version, and the entities it names."""
    bp = blueprint_source(blueprint)
    written: dict[str, list[JSON]] = {}
    for section, lines in read_sections(reply).items():
        written[section] = [
            {
                "text": line,
                "sources": ([turn_ref] if turn_ref else [])
                + [bp]
                + [{"entity_id": i} for i in mentioned(line, entities)],
            }
            for line in lines
        ]
    return {
        "kind": "prep-packet",
        "blueprint": bp | {"name": blueprint["fields"].get("name")},
        "world_id": world_id,
        "generated_at": generated_at,
        "generated_by": turn_ref,
        "recap": recap,
        "open_threads": written["open_threads"],
        "npcs": npcs,
        "encounters": written["encounters"],
        "handouts": written["handouts"],
    }


def cite(source: Mapping[str, Any]) -> str:
    """One source as a short label for Markdown."""
    if "blueprint_id" in source:
        return f"blueprint {source['blueprint_id']} v{source['blueprint_version']}"
    if "summary_id" in source:
        first, last = source["turns"]
        return (
            f"session {source['session_id']} summary {source['summary_id']} (turns {first}-{last})"
        )
    if "turn_id" in source:
        return f"session {source['session_id']} turn {source['turn_id']}"
    if "fact_id" in source:
        return f"fact {source['fact_id']}"
    return f"entity {source['entity_id']}"


def _cited(text: str, sources: Sequence[Mapping[str, Any]]) -> str:
    labels = "; ".join(cite(s) for s in sources)
    return f"- {text}" + (f" *[{labels}]*" if labels else "")


def packet_markdown(packet: Mapping[str, Any]) -> str:
    bp = packet["blueprint"]
    lines = [
        f"# Session prep: {bp.get('name')}",
        "",
        f"Blueprint {bp['blueprint_id']} version {bp['blueprint_version']}; "
        f"generated {packet['generated_at']}.",
        "",
        "## Recap",
    ]
    lines += [_cited(i["text"], i["sources"]) for i in packet["recap"]] or ["- (no sessions yet)"]
    lines += ["", "## Open threads"]
    lines += [_cited(i["text"], i["sources"]) for i in packet["open_threads"]] or ["- (none)"]
    lines += ["", "## NPCs likely to appear"]
    for npc in packet["npcs"]:
        head = f"**{npc['name']}**" + (f": {npc['summary']}" if npc["summary"] else "")
        lines.append(_cited(head, npc["sources"][:1]))
        lines += [
            f"  - {f['attribute']}: {f['value']} *[fact {f['fact_id']}]*" for f in npc["facts"]
        ]
    if not packet["npcs"]:
        lines.append("- (none)")
    for key, title in (("encounters", "Encounters"), ("handouts", "Handouts")):
        lines += ["", f"## {title}"]
        lines += [_cited(i["text"], i["sources"]) for i in packet[key]] or ["- (none)"]
    return "\n".join(lines) + "\n"


def weekly_recap(
    *, campaign: Mapping[str, Any], since: str, until: str, sessions: Sequence[JSON]
) -> JSON:
    """A campaign's week: each session played in it (updated within the window) with
    its recap items, cited as the packet's are."""
    return {
        "kind": "weekly-recap",
        "blueprint": blueprint_source(campaign) | {"name": campaign["fields"].get("name")},
        "since": since,
        "until": until,
        "sessions": list(sessions),
    }


def weekly_markdown(recap: Mapping[str, Any]) -> str:
    lines = [
        f"# Weekly recap: {recap['blueprint'].get('name')}",
        "",
        f"From {recap['since']} to {recap['until']}.",
    ]
    for session in recap["sessions"]:
        lines += ["", f"## {session['title']}"]
        lines += [_cited(i["text"], i["sources"]) for i in session["recap"]] or [
            "- (nothing summarised yet)"
        ]
    if not recap["sessions"]:
        lines += ["", "No sessions were played this week."]
    return "\n".join(lines) + "\n"
