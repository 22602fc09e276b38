"""A world as the documents Foundry VTT imports, and as a generic bundle. Pure.

Shapes follow Foundry's document schema (v11-v13 `BaseJournalEntry`,
`BaseJournalEntryPage`, `BaseActor`): a JournalEntry is `{_id, name, pages, folder,
sort, ownership, flags}`; a text page is `{_id, name, type: "text", title: {show,
level}, text: {content, format, markdown}, sort, ownership, flags, ...}` where
format 1 is HTML (`CONST.JOURNAL_ENTRY_PAGE_FORMATS.HTML`); an Actor is `{_id, name,
type, img, system, items, effects, prototypeToken, folder, sort, ownership, flags}`.
Document ids are 16 letters and digits; ours are derived from Taleweaver's ids,
so exporting twice gives the same ids and a re-import updates, not duplicates.
What a system's actor data holds is the system's own: the stub's `system` carries
only a biography, which dnd5e and pf2e both read at `system.details.biography.value`;
the rest is kept under `flags.taleweaver`.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Mapping, Sequence
from typing import Any

from taleweaver.domain.events import JSON

FORMAT_HTML = 1
OWNERSHIP_NONE = 0
FLAG_SCOPE = "taleweaver"
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_LINK = re.compile(r"\[\[([^\]|]+)(?:\|([^\]]+))?\]\]")
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
_BOLD = re.compile(r"\*\*(.+?)\*\*")


def foundry_id(*parts: str) -> str:
    """A 16-character Foundry document id, the same each time for the same parts."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return "".join(_ALPHABET[b % len(_ALPHABET)] for b in digest[:16])


def _inline(text: str, actors: Mapping[str, str]) -> str:
    def link(match: re.Match[str]) -> str:
        target, label = match.group(1).strip(), (match.group(2) or match.group(1)).strip()
        actor = actors.get(target.casefold())
        if actor is not None:
            return f"@UUID[Actor.{actor}]{{{label}}}"
        return f"<strong>{label}</strong>"

    escaped = html.escape(text, quote=False)
    return _BOLD.sub(r"<strong>\1</strong>", _LINK.sub(link, escaped))


def markdown_html(text: str, actors: Mapping[str, str] | None = None) -> str:
    """Enough Markdown for world entries (headings, bullets, paragraphs, bold,
    [[links]] as Foundry content links to exported actors) as HTML."""
    actors = actors or {}
    out: list[str] = []
    paragraph: list[str] = []
    items: list[str] = []

    def flush() -> None:
        if paragraph:
            out.append("<p>" + "<br>".join(paragraph) + "</p>")
            paragraph.clear()
        if items:
            out.append("<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>")
            items.clear()

    for line in text.splitlines():
        heading, bullet = _HEADING.match(line), _BULLET.match(line)
        if not line.strip():
            flush()
        elif heading:
            flush()
            level = len(heading.group(1))
            out.append(f"<h{level}>{_inline(heading.group(2), actors)}</h{level}>")
        elif bullet:
            if paragraph:
                flush()
            items.append(_inline(bullet.group(1), actors))
        else:
            if items:
                flush()
            paragraph.append(_inline(line, actors))
    flush()
    return "".join(out)


def _page(page_id: str, name: str, content: str, markdown: str, sort: int) -> JSON:
    return {
        "_id": page_id,
        "name": name,
        "type": "text",
        "title": {"show": True, "level": 1},
        "text": {"content": content, "format": FORMAT_HTML, "markdown": markdown},
        "sort": sort,
        "ownership": {"default": -1},
        "flags": {},
    }


def journal_entry(entry: Mapping[str, Any], actors: Mapping[str, str]) -> JSON:
    """A world entry as a JournalEntry with one text page."""
    jid = foundry_id("entry", str(entry["world_id"]), str(entry["id"]))
    body = str(entry.get("body") or "")
    return {
        "_id": jid,
        "name": entry["title"],
        "pages": [
            _page(
                foundry_id("page", jid), entry["title"], markdown_html(body, actors), body, 100000
            )
        ],
        "folder": None,
        "sort": 0,
        "ownership": {"default": OWNERSHIP_NONE},
        "flags": {
            FLAG_SCOPE: {
                "entry_id": entry["id"],
                "world_id": entry["world_id"],
                "kind": entry.get("kind"),
                "tags": entry.get("tags") or [],
                "source_refs": entry.get("source_refs") or [],
            }
        },
    }


def actor_stub(entity: Mapping[str, Any], facts: Sequence[Mapping[str, Any]]) -> JSON:
    """An NPC as an Actor of type "npc": its summary and facts as the biography."""
    lines = [f"<p>{html.escape(str(entity.get('summary') or ''), quote=False)}</p>"]
    if facts:
        lines.append(
            "<ul>"
            + "".join(
                f"<li><strong>{html.escape(str(f['attribute']))}</strong>: "
                f"{html.escape(str(f['value']))}</li>"
                for f in facts
            )
            + "</ul>"
        )
    biography = "".join(lines)
    aid = foundry_id("actor", str(entity["world_id"]), str(entity["id"]))
    return {
        "_id": aid,
        "name": entity["name"],
        "type": "npc",
        "img": "icons/svg/mystery-man.svg",
        "system": {"details": {"biography": {"value": biography}}},
        "items": [],
        "effects": [],
        "prototypeToken": {"name": entity["name"], "actorLink": False},
        "folder": None,
        "sort": 0,
        "ownership": {"default": OWNERSHIP_NONE},
        "flags": {
            FLAG_SCOPE: {
                "entity_id": entity["id"],
                "world_id": entity["world_id"],
                "status": entity.get("status"),
                "aliases": entity.get("aliases") or [],
                "facts": [
                    {"fact_id": f["id"], "attribute": f["attribute"], "value": f["value"]}
                    for f in facts
                ],
            }
        },
    }


def _exported_npcs(entities: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [e for e in entities if e.get("type") == "npc" and e.get("status") != "deprecated"]


def foundry_bundle(
    world: Mapping[str, Any],
    entries: Sequence[Mapping[str, Any]],
    entities: Sequence[Mapping[str, Any]],
    facts: Sequence[Mapping[str, Any]],
) -> JSON:
    """`{"JournalEntry": [...], "Actor": [...]}`: each list imports as it is
    (Foundry's `Document.createDocuments`, or one file per document through
    "Import Data")."""
    npcs = _exported_npcs(entities)
    actors: dict[str, str] = {}
    for npc in npcs:
        aid = foundry_id("actor", str(npc["world_id"]), str(npc["id"]))
        for label in [npc["name"], *(npc.get("aliases") or [])]:
            actors[str(label).casefold()] = aid
    return {
        "world": {"id": world["id"], "name": world["name"]},
        "JournalEntry": [journal_entry(e, actors) for e in entries],
        "Actor": [actor_stub(n, [f for f in facts if f["entity_id"] == n["id"]]) for n in npcs],
    }


def generic_bundle(
    world: Mapping[str, Any],
    entries: Sequence[Mapping[str, Any]],
    entities: Sequence[Mapping[str, Any]],
    facts: Sequence[Mapping[str, Any]],
    blueprints: Sequence[Mapping[str, Any]],
) -> JSON:
    return {
        "format": "taleweaver-studio-bundle",
        "version": 1,
        "world": {"id": world["id"], "name": world["name"]},
        "blueprints": [
            {"id": b["id"], "version": b["version"], "fields": b["fields"]} for b in blueprints
        ],
        "entries": [dict(e) for e in entries],
        "entities": [dict(e) for e in entities],
        "facts": [dict(f) for f in facts],
    }


def bundle_markdown(bundle: Mapping[str, Any]) -> str:
    lines = [f"# {bundle['world']['name']}", ""]
    if bundle["blueprints"]:
        lines.append("## Blueprints")
        lines += [
            f"- {b['fields'].get('name')} (blueprint {b['id']} v{b['version']})"
            for b in bundle["blueprints"]
        ]
        lines.append("")
    lines.append("## Entities")
    for entity in bundle["entities"]:
        lines.append(f"### {entity['name']} ({entity['type']}, {entity['status']})")
        if entity.get("summary"):
            lines.append(str(entity["summary"]))
        for fact in bundle["facts"]:
            if fact["entity_id"] == entity["id"]:
                lines.append(f"- {fact['attribute']}: {fact['value']}")
        lines.append("")
    lines.append("## Entries")
    for entry in bundle["entries"]:
        lines += [f"### {entry['title']}", "", str(entry.get("body") or ""), ""]
    return "\n".join(lines).rstrip() + "\n"
