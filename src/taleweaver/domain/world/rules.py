"""Continuity rules over a world's canon: contradictions, duplicates, timeline drift.

Inputs are plain rows (dicts) as the read models hold them; each finding cites the
facts or entities on both sides, with their source references, so a reviewer can
see where each claim came from. A finding's id is derived from what it is about,
so the same problem found twice is one finding (and an ignored one stays ignored).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from rapidfuzz import fuzz

from taleweaver.domain.world.storytime import StoryTime, before, clean_time, overlaps

Row = dict[str, Any]

FUZZY_THRESHOLD = 88.0
DEATH_ATTRIBUTES = frozenset({"status", "state", "alive", "condition", "life", "vital_status"})
DEAD_VALUES = frozenset({"dead", "deceased", "killed", "slain", "died", "false", "no"})
DIED_AT_ATTRIBUTES = frozenset({"died", "died_at", "death", "date_of_death"})
WHEN_ATTRIBUTES = frozenset({"when", "date", "time", "year", "day", "happened_at"})
BEFORE_RELATIONS = frozenset({"before", "precedes", "precedes_event", "happens_before"})
AFTER_RELATIONS = frozenset({"after", "follows", "happens_after"})


def finding_id(kind: str, *parts: str) -> str:
    digest = hashlib.sha256(json.dumps([kind, *sorted(parts)]).encode()).hexdigest()
    return f"{kind[:4]}-{digest[:24]}"


def norm_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return " ".join(text.casefold().split()).strip(" .")


def norm_name(name: str) -> str:
    """Case, punctuation and a leading article do not tell names apart."""
    words = re.sub(r"[^\w\s]", " ", name.casefold()).split()
    if len(words) > 1 and words[0] in ("the", "a", "an"):
        words = words[1:]
    return " ".join(words)


def cite_fact(fact: Row, entity: Row | None) -> Row:
    return {
        "kind": "fact",
        "fact_id": fact["id"],
        "entity_id": fact["entity_id"],
        "entity": entity["name"] if entity else None,
        "attribute": fact["attribute"],
        "value": fact["value"],
        "valid_from": fact.get("valid_from"),
        "valid_to": fact.get("valid_to"),
        "source_refs": list(fact.get("source_refs") or []),
    }


def cite_entity(entity: Row) -> Row:
    return {
        "kind": "entity",
        "entity_id": entity["id"],
        "name": entity["name"],
        "aliases": list(entity.get("aliases") or []),
        "status": entity.get("status"),
        "source_refs": list(entity.get("source_refs") or []),
    }


def contradictions(facts: Sequence[Row], entities: dict[str, Row]) -> list[Row]:
    """Same entity, same attribute, different values, overlapping story time."""
    by_key: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for fact in facts:
        if fact.get("status", "active") != "active":
            continue
        by_key[(fact["entity_id"], fact["attribute"].casefold())].append(fact)
    found: list[Row] = []
    for (entity_id, attribute), group in by_key.items():
        for i, a in enumerate(group):
            for b in group[i + 1 :]:
                if norm_value(a["value"]) == norm_value(b["value"]):
                    continue
                if not overlaps(
                    a.get("valid_from"), a.get("valid_to"), b.get("valid_from"), b.get("valid_to")
                ):
                    continue
                entity = entities.get(entity_id)
                name = entity["name"] if entity else entity_id
                found.append(
                    {
                        "id": finding_id("contradiction", a["id"], b["id"]),
                        "kind": "contradiction",
                        "summary": f"{name}: {attribute} is {a['value']!r} and also "
                        f"{b['value']!r} at overlapping times",
                        "entity_ids": [entity_id],
                        "citations": [cite_fact(a, entity), cite_fact(b, entity)],
                    }
                )
    return found


def duplicates(entities: Iterable[Row], *, threshold: float = FUZZY_THRESHOLD) -> list[Row]:
    """Two live entities that share a name or alias, or whose names nearly match."""
    live = [e for e in entities if e.get("status") != "deprecated"]
    found: dict[str, Row] = {}

    def add(a: Row, b: Row, why: str, score: float) -> None:
        if a["id"] == b["id"]:
            return
        fid = finding_id("duplicate", a["id"], b["id"])
        if fid not in found:
            found[fid] = {
                "id": fid,
                "kind": "duplicate",
                "summary": f"{a['name']!r} and {b['name']!r} may be the same {a['type']}: {why}",
                "entity_ids": [a["id"], b["id"]],
                "score": round(score, 1),
                "citations": [cite_entity(a), cite_entity(b)],
            }

    by_label: dict[str, list[Row]] = defaultdict(list)
    for entity in live:
        labels = {norm_name(entity["name"]), *(norm_name(a) for a in entity.get("aliases") or [])}
        for label in labels:
            if label:
                by_label[label].append(entity)
    for label, group in by_label.items():
        for i, a in enumerate(group):
            for b in group[i + 1 :]:
                add(a, b, f"both are called {label!r}", 100.0)
    # Fuzzy names, compared within blocks of the same type and first letter: near
    # misspellings keep their first letter, and a world of 100,000 entities stays cheap.
    blocks: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for entity in live:
        name = norm_name(entity["name"])
        if name:
            blocks[(entity["type"], name[0])].append(entity)
    for group in blocks.values():
        for i, a in enumerate(group):
            name_a = norm_name(a["name"])
            for b in group[i + 1 :]:
                score = fuzz.token_sort_ratio(name_a, norm_name(b["name"]))
                if score >= threshold:
                    add(a, b, f"names {score:.0f}% alike", score)
    return list(found.values())


def death_time(facts: Sequence[Row]) -> tuple[StoryTime, Row] | None:
    """When an entity died, from its facts (status dead from t, or died_at t)."""
    for fact in facts:
        attribute = fact["attribute"].casefold()
        if fact.get("status", "active") != "active":
            continue
        if attribute in DEATH_ATTRIBUTES and norm_value(fact["value"]) in DEAD_VALUES:
            return fact.get("valid_from"), fact
        if attribute in DIED_AT_ATTRIBUTES:
            try:
                when = clean_time(fact["value"])
            except Exception:  # a free-text value names no time
                when = fact.get("valid_from")
            return when if when is not None else fact.get("valid_from"), fact
    return None


def event_time(facts: Sequence[Row]) -> tuple[StoryTime, Row] | None:
    for fact in facts:
        if fact["attribute"].casefold() in WHEN_ATTRIBUTES and fact.get("status") == "active":
            try:
                return clean_time(fact["value"]), fact
            except Exception:
                continue
    return None


def timeline_drift(
    entities: dict[str, Row], facts: Sequence[Row], relations: Sequence[Row]
) -> list[Row]:
    """The dead acting after death, and events related out of their order."""
    by_entity: dict[str, list[Row]] = defaultdict(list)
    for fact in facts:
        by_entity[fact["entity_id"]].append(fact)
    found: list[Row] = []
    deaths = {eid: d for eid, fs in by_entity.items() if (d := death_time(fs)) is not None}
    times = {eid: t for eid, fs in by_entity.items() if (t := event_time(fs)) is not None}
    for entity_id, (died, death_fact) in deaths.items():
        entity = entities.get(entity_id)
        if entity is None or died is None:
            continue
        for fact in by_entity[entity_id]:
            if fact is death_fact or fact.get("status", "active") != "active":
                continue
            if fact["attribute"].casefold() in DEATH_ATTRIBUTES | DIED_AT_ATTRIBUTES:
                continue
            if before(died, fact.get("valid_from")):
                found.append(_acts_after_death(entity, death_fact, cite_fact(fact, entity)))
        for relation in relations:
            other = (
                relation["target_id"]
                if relation["source_id"] == entity_id
                else (relation["source_id"] if relation["target_id"] == entity_id else None)
            )
            if other is None or other not in times:
                continue
            when, when_fact = times[other]
            if before(died, when):
                cited = cite_fact(when_fact, entities.get(other))
                cited["relation"] = {"id": relation["id"], "type": relation["type"]}
                found.append(_acts_after_death(entity, death_fact, cited))
    for relation in relations:
        kind = relation["type"].casefold()
        a, b = relation["source_id"], relation["target_id"]
        if kind in AFTER_RELATIONS:
            a, b = b, a
        elif kind not in BEFORE_RELATIONS:
            continue
        if a in times and b in times and before(times[b][0], times[a][0]):
            first, second = entities.get(a), entities.get(b)
            found.append(
                {
                    "id": finding_id("drift", relation["id"]),
                    "kind": "timeline_drift",
                    "summary": f"{_name(first, a)} should come before {_name(second, b)}, "
                    f"but happens at {times[a][0]!r}, after {times[b][0]!r}",
                    "entity_ids": [a, b],
                    "citations": [cite_fact(times[a][1], first), cite_fact(times[b][1], second)],
                    "relation_id": relation["id"],
                }
            )
    return found


def _acts_after_death(entity: Row, death_fact: Row, cited: Row) -> Row:
    return {
        "id": finding_id("drift", death_fact["id"], cited.get("fact_id") or ""),
        "kind": "timeline_drift",
        "summary": f"{entity['name']} is dead from {death_fact.get('valid_from')!r} but "
        f"acts later ({cited.get('attribute')} at {cited.get('valid_from')!r})",
        "entity_ids": [entity["id"]],
        "citations": [cite_fact(death_fact, entity), cited],
    }


def _name(entity: Row | None, fallback: str) -> str:
    return str(entity["name"]) if entity else fallback
