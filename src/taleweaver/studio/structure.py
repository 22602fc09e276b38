"""Chat to structure: one studio reply read into a proposal (a blueprint, world
entries, a prompt recipe, each field with a confidence), and the reviewed
proposal, with the user's corrections, saved in one call. Every applied field
names the reply it came from (session id, turn id) and how sure the reading was.

Everything is checked before anything is written, so bad input writes nothing.
The world entries are committed first (the world bible's own transaction), then
the blueprint and the recipe together in one; the world's content rules follow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taleweaver.domain.errors import InvalidInput, NotFound
from taleweaver.domain.events import JSON, EventMetadata
from taleweaver.domain.studio import WorldBiblePort, propose
from taleweaver.domain.studio.recipes import RECIPE_FIELDS
from taleweaver.domain.world import clean_name
from taleweaver.store.database import Database
from taleweaver.studio.blueprints import Blueprints, RulesChange
from taleweaver.studio.recipes import RecipeVault

MAX_ENTRIES = 20
MAX_BODY = 200_000


def _confidence(confidence: Mapping[str, Any], field: str) -> float | None:
    """A field's confidence; a dial object's is its least sure dial."""
    if field in confidence:
        value = confidence[field]
        return float(value) if isinstance(value, (int, float)) else None
    parts = [v for k, v in confidence.items() if k.startswith(f"{field}.")]
    numbers = [float(v) for v in parts if isinstance(v, (int, float))]
    return min(numbers) if numbers else None


def _check_confidence(confidence: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(confidence, dict):
        raise InvalidInput(f"{what}.confidence: must be an object of field -> 0..1")
    for key, value in confidence.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise InvalidInput(f"{what}.confidence.{key}: must be a number from 0 to 1")
    return confidence


def _sources(
    ref: JSON, fields: Mapping[str, Any], corrections: Mapping[str, Any], confidence: Any
) -> dict[str, JSON]:
    """Where each applied field came from: the reply, how sure its reading was, and
    whether the user corrected it before saving."""
    return {
        field: {
            **ref,
            "confidence": None if field in corrections else _confidence(confidence, field),
            "corrected": field in corrections,
        }
        for field in {**fields, **corrections}
    }


def _applied(sources: Mapping[str, JSON], values: Mapping[str, Any]) -> list[JSON]:
    return [
        {"field": field, "value": values.get(field), **source}
        for field, source in sorted(sources.items())
    ]


def _part(body: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    part = body.get(key)
    if part is None:
        return None
    if not isinstance(part, dict):
        raise InvalidInput(f"{key}: must be an object of id, fields, confidence, corrections")
    unknown = sorted(set(part) - {"id", "fields", "confidence", "corrections", "rejected"})
    if unknown:
        raise InvalidInput(f"{key}: unknown keys {', '.join(unknown)}")
    for inner in ("fields", "corrections"):
        if not isinstance(part.get(inner) or {}, dict):
            raise InvalidInput(f"{key}.{inner}: must be an object")
    return part


class ChatToStructure:
    def __init__(
        self,
        db: Database,
        blueprints: Blueprints,
        recipes: RecipeVault,
        bible: WorldBiblePort,
    ) -> None:
        self.db = db
        self.blueprints = blueprints
        self.recipes = recipes
        self.bible = bible

    def propose(self, reply: str, ref: JSON) -> JSON:
        """What the reply holds for each target, for the user to review."""
        return {"source": ref, **propose(reply)}

    async def apply(
        self,
        workspace_id: str,
        ref: JSON,
        reply: str,
        body: Mapping[str, Any],
        meta: EventMetadata,
    ) -> JSON:
        """Save the reviewed proposal: corrections win over read values."""
        world_id = body.get("world_id")
        blueprint = _part(body, "blueprint")
        recipe = _part(body, "recipe")
        entries = self._entries(body.get("entries") or [], reply)
        if blueprint is None and recipe is None and not entries:
            raise InvalidInput("nothing to apply: give a blueprint, entries or a recipe")
        if entries:
            if not world_id:
                raise InvalidInput("world_id: world entries need the world to go in")
            try:
                await self.bible.world(workspace_id, world_id)
            except NotFound as exc:
                raise InvalidInput(f"world_id: world {world_id} is not in this workspace") from exc

        # Check everything first: nothing is written when any part is wrong.
        b_plan = await self._plan_blueprint(workspace_id, blueprint, world_id, ref)
        r_plan = await self._plan_recipe(workspace_id, recipe, world_id, ref)
        for entry in entries:
            if entry["entry_id"] is not None:
                await self.bible.entry(workspace_id, str(world_id), entry["entry_id"])

        saved_entries = []
        for entry in entries:
            data = {"title": entry["title"], "body": entry["body"], "source_refs": [ref]}
            if entry["tags"]:
                data["tags"] = entry["tags"]
            if entry["entry_id"] is None:
                made = await self.bible.create_entry(workspace_id, str(world_id), data, meta)
            else:
                made = await self.bible.update_entry(
                    workspace_id, str(world_id), entry["entry_id"], data, meta
                )
            saved_entries.append({**made, "confidence": entry["confidence"]})

        rules: list[RulesChange] = []
        blueprint_id = recipe_id = None
        async with self.db.write() as conn:
            await self.db.lock(conn)
            if b_plan is not None:
                blueprint_id, rules = await self.blueprints.save_in(
                    conn, workspace_id, b_plan["id"], b_plan["data"], meta,
                    sources=b_plan["sources"],
                )  # fmt: skip
            if r_plan is not None:
                recipe_id = await self.recipes.save_in(
                    conn, workspace_id, r_plan["id"], r_plan["recipe"], meta,
                    sources=r_plan["sources"],
                )  # fmt: skip
        await self.blueprints.apply_rules(workspace_id, rules)

        result: JSON = {"source": ref, "blueprint": None, "entries": saved_entries, "recipe": None}
        if b_plan is not None and blueprint_id is not None:
            saved = await self.blueprints.get(workspace_id, blueprint_id)
            await self.blueprints.saved(workspace_id, saved)
            result["blueprint"] = saved | {"applied": _applied(b_plan["sources"], saved["fields"])}
        if r_plan is not None and recipe_id is not None:
            saved = await self.recipes.get(workspace_id, recipe_id)
            result["recipe"] = saved | {"applied": _applied(r_plan["sources"], saved)}
        return result

    def _entries(self, entries: Any, reply: str) -> list[JSON]:
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise InvalidInput("entries: must be a list of {title, body, tags, entry_id}")
        if len(entries) > MAX_ENTRIES:
            raise InvalidInput(f"entries: at most {MAX_ENTRIES}")
        out = []
        for i, entry in enumerate(entries):
            unknown = sorted(
                set(entry) - {"title", "body", "tags", "entry_id", "confidence", "corrections"}
            )
            if unknown:
                raise InvalidInput(f"entries[{i}]: unknown keys {', '.join(unknown)}")
            merged = {**entry, **(entry.get("corrections") or {})}
            try:
                title = clean_name(merged.get("title") or "From the studio", "title")
            except InvalidInput as exc:
                raise InvalidInput(f"entries[{i}].{exc.detail}") from exc
            text = reply if merged.get("body") is None else merged["body"]
            if not isinstance(text, str) or len(text) > MAX_BODY:
                raise InvalidInput(f"entries[{i}].body: text of at most {MAX_BODY} characters")
            tags = merged.get("tags") or []
            if not isinstance(tags, list):
                raise InvalidInput(f"entries[{i}].tags: must be a list")
            confidence = entry.get("confidence")
            if confidence is not None and (
                isinstance(confidence, bool)
                or not isinstance(confidence, (int, float))
                or not 0 <= confidence <= 1
            ):
                raise InvalidInput(f"entries[{i}].confidence: must be a number from 0 to 1")
            out.append(
                {
                    "title": title,
                    "body": text,
                    "tags": tags,
                    "entry_id": merged.get("entry_id"),
                    "confidence": None if entry.get("corrections") else confidence,
                }
            )
        return out

    async def _plan_blueprint(
        self,
        workspace_id: str,
        part: Mapping[str, Any] | None,
        world_id: Any,
        ref: JSON,
    ) -> JSON | None:
        if part is None:
            return None
        fields = dict(part.get("fields") or {})
        corrections = dict(part.get("corrections") or {})
        confidence = _check_confidence(part.get("confidence") or {}, "blueprint")
        given = {**fields, **corrections}
        current: JSON = {}
        if part.get("id") is not None:
            current = (await self.blueprints.get(workspace_id, str(part["id"])))["fields"]
        elif world_id and "world_id" not in given:
            given["world_id"] = world_id  # a new blueprint plans the world it fills
        try:
            await self.blueprints.check(workspace_id, {**current, **given})
        except InvalidInput as exc:
            raise InvalidInput(f"blueprint.{exc.detail}") from exc
        return {
            "id": part.get("id"),
            "data": given,
            "sources": _sources(ref, given, corrections, confidence),
        }

    async def _plan_recipe(
        self,
        workspace_id: str,
        part: Mapping[str, Any] | None,
        world_id: Any,
        ref: JSON,
    ) -> JSON | None:
        if part is None:
            return None
        fields = dict(part.get("fields") or {})
        corrections = dict(part.get("corrections") or {})
        confidence = _check_confidence(part.get("confidence") or {}, "recipe")
        given = {**fields, **corrections}
        current: JSON = {}
        if part.get("id") is not None:
            saved = await self.recipes.get(workspace_id, str(part["id"]))
            current = {k: saved[k] for k in saved if k in RECIPE_FIELDS}
        elif world_id and "world_id" not in given:
            given["world_id"] = world_id
        try:
            recipe = await self.recipes.check(workspace_id, {**current, **given})
        except InvalidInput as exc:
            raise InvalidInput(f"recipe.{exc.detail}") from exc
        return {
            "id": part.get("id"),
            "recipe": recipe,
            "sources": _sources(ref, given, corrections, confidence),
        }
