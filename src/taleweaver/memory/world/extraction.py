"""Extraction: structured artifacts (entities, facts, relations, events) proposed from
each reply, never canon by themselves.

With a model, the router's `extract` task answers in JSON, validated against a
schema and asked again on invalid output; without one, or when it keeps failing,
a heuristic reads capitalised names and "X is a Y" sentences.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from taleweaver.config import WorldSettings
from taleweaver.domain.errors import ModelError
from taleweaver.domain.events import JSON
from taleweaver.domain.pipeline import ReplyUnderReview
from taleweaver.domain.prompt import ChatMessage
from taleweaver.domain.world.text import guess
from taleweaver.llm import CallScope, ChatModel, ModelRouter, task_model
from taleweaver.memory.world import rows
from taleweaver.store.database import Database

log = logging.getLogger(__name__)

MODEL_VERSION = "model-1"
HEURISTIC_VERSION = "heuristic-1"
ATTEMPTS = 3
MAX_TOKENS = 800
Scalar = str | int | float | bool
Time = int | str | None


def _confidence(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"*": float(value)}
    return value


class _Item(BaseModel):
    model_config = ConfigDict(extra="ignore")
    confidence: dict[str, float] = Field(default_factory=dict)

    _check_confidence = field_validator("confidence", mode="before")(_confidence)

    @field_validator("confidence")
    @classmethod
    def _in_range(cls, value: dict[str, float]) -> dict[str, float]:
        if any(not 0 <= v <= 1 for v in value.values()):
            raise ValueError("confidence must be from 0 to 1")
        return value


class EntityOut(_Item):
    name: str = Field(min_length=1, max_length=200)
    type: str = Field(default="npc", max_length=40)
    summary: str = Field(default="", max_length=4000)
    aliases: list[str] = Field(default_factory=list)


class FactOut(_Item):
    entity: str = Field(min_length=1, max_length=200)
    attribute: str = Field(min_length=1, max_length=100)
    value: Scalar
    valid_from: Time = None
    valid_to: Time = None


class RelationOut(_Item):
    source: str = Field(min_length=1, max_length=200)
    type: str = Field(min_length=1, max_length=100)
    target: str = Field(min_length=1, max_length=200)


class EventOut(_Item):
    name: str = Field(min_length=1, max_length=200)
    summary: str = Field(default="", max_length=4000)
    when: Time = None
    participants: list[str] = Field(default_factory=list)


class ExtractionOut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    entities: list[EntityOut] = Field(default_factory=list)
    facts: list[FactOut] = Field(default_factory=list)
    relations: list[RelationOut] = Field(default_factory=list)
    events: list[EventOut] = Field(default_factory=list)


INSTRUCTIONS = (
    "You extract world facts from a story passage for a world bible. Reply with one JSON "
    "object only, no prose, matching this JSON Schema:\n"
    + json.dumps(ExtractionOut.model_json_schema(), separators=(",", ":"))
    + "\nEntity types: faction, npc, location, event, timeline_arc, item (or another "
    "lower_case word). Use names exactly as the passage writes them. `confidence` maps "
    "each field name to how sure you are, from 0 to 1."
)


def parse(text: str) -> ExtractionOut:
    """The model's reply as validated output; ValueError says what is wrong."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise ValueError("the reply holds no JSON object")
    try:
        data = json.loads(text[start : end + 1])
    except json.JSONDecodeError as exc:
        raise ValueError(f"the JSON does not parse: {exc}") from exc
    try:
        return ExtractionOut.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"the JSON does not match the schema: {exc.errors()[:3]}") from exc


class WorldExtractor:
    """The pipeline's extractor for sessions that name a world; others get nothing."""

    def __init__(
        self,
        db: Database,
        model: ChatModel | None,
        *,
        use_model: bool = True,
    ) -> None:
        self.db = db
        self.model = model
        mode = WorldSettings.read().world_extraction
        self.use_model = use_model and model is not None and mode in ("auto", "model")
        self.enabled = mode != "off"

    async def extract(self, reply: ReplyUnderReview) -> list[JSON]:
        if not self.enabled:
            return []
        world_id = reply.world_id
        if not world_id:
            return []
        async with self.db.read() as conn:
            if await rows.world(conn, reply.workspace_id, world_id) is None:
                return []
        parsed: ExtractionOut | None = None
        if self.use_model:
            parsed = await self._ask_model(reply)
        version = MODEL_VERSION if parsed is not None else HEURISTIC_VERSION
        if parsed is None:
            parsed = heuristic(reply.reply_text)
        return await self._artifacts(reply, world_id, parsed, version)

    async def _ask_model(self, reply: ReplyUnderReview) -> ExtractionOut | None:
        assert self.model is not None
        scope = CallScope(
            workspace_id=reply.workspace_id, session_id=reply.session_id, turn_id=reply.turn_id
        )
        passage = f"Player: {reply.player_text or '(continue)'}\nNarrator: {reply.reply_text}"
        messages = [ChatMessage("system", INSTRUCTIONS), ChatMessage("user", passage)]
        for attempt in range(1, ATTEMPTS + 1):
            try:
                text = await self._complete(messages, scope)
            except ModelError as exc:
                log.warning("extraction model failed (%s); using the heuristic", exc.detail)
                return None
            try:
                return parse(text)
            except ValueError as exc:
                log.info("extraction attempt %d invalid: %s", attempt, exc)
                messages = [
                    *messages,
                    ChatMessage("assistant", text[:4000]),
                    ChatMessage("user", f"That was not valid ({exc}). Reply with the JSON only."),
                ]
        return None

    async def _complete(self, messages: list[ChatMessage], scope: CallScope) -> str:
        assert self.model is not None
        if isinstance(self.model, ModelRouter):
            done = await self.model.complete(
                "extract", messages, max_tokens=MAX_TOKENS, scope=scope
            )
            return done.text
        model = task_model(self.model, "extract", scope)
        return "".join([p async for p in model.stream(messages, max_tokens=MAX_TOKENS)])

    async def _artifacts(
        self, reply: ReplyUnderReview, world_id: str, out: ExtractionOut, version: str
    ) -> list[JSON]:
        source = {"session_id": reply.session_id, "turn_id": reply.turn_id, "message": "narrator"}
        known: dict[str, str | None] = {}
        # Names that mean a known entity under another form ("Malvek": "Lord Malvek").
        linked: dict[str, JSON] = {}
        async with self.db.read() as conn:
            names = [e.name for e in out.entities] + [e.name for e in out.events]
            names += [f.entity for f in out.facts]
            names += [r.source for r in out.relations] + [r.target for r in out.relations]
            for name in dict.fromkeys(names):
                match = await rows.entity_by_label(conn, world_id, name)
                if match is None and (near := await rows.entity_like(conn, world_id, name)):
                    match = near.entity
                    linked[name] = {
                        "entity_id": match["id"],
                        "name": match["name"],
                        "how": near.how,
                        "score": near.score,
                    }
                known[name] = match["id"] if match else None

        def artifact(kind: str, payload: JSON, confidence: dict[str, float]) -> JSON:
            fields = [k for k in payload if not k.endswith("_id")]
            default = confidence.get("*", 0.5)
            return {
                "id": uuid.uuid4().hex,
                "kind": kind,
                "workspace_id": reply.workspace_id,
                "world_id": world_id,
                "source": source,
                "extraction_version": version,
                "payload": payload,
                "confidence": {f: round(confidence.get(f, default), 3) for f in fields},
            }

        found: list[JSON] = []
        for e in out.entities:
            payload: JSON = {
                "name": e.name,
                "type": e.type,
                "summary": e.summary,
                "aliases": e.aliases,
            }
            if known.get(e.name):
                payload["entity_id"] = known[e.name]
            if e.name in linked:  # accepted, the reply's form becomes an alias
                payload["linked"] = linked[e.name]
                payload["aliases"] = list(dict.fromkeys([*e.aliases, e.name]))
            found.append(artifact("entity", payload, e.confidence))
        for f in out.facts:
            payload = {
                "entity": f.entity,
                "attribute": f.attribute,
                "value": f.value,
                "valid_from": f.valid_from,
                "valid_to": f.valid_to,
            }
            if known.get(f.entity):
                payload["entity_id"] = known[f.entity]
            if f.entity in linked:
                payload["linked"] = linked[f.entity]
            found.append(artifact("fact", payload, f.confidence))
        for r in out.relations:
            payload = {"source": r.source, "type": r.type, "target": r.target}
            found.append(artifact("relation", payload, r.confidence))
        for ev in out.events:
            payload = {
                "name": ev.name,
                "summary": ev.summary,
                "when": ev.when,
                "participants": ev.participants,
            }
            found.append(artifact("event", payload, ev.confidence))
        return found


def heuristic(text: str) -> ExtractionOut:
    """Names, "X is a Y", "X lives in Z" and deaths, at low confidence."""
    found = guess(text)
    described = dict(found.descriptions)
    entities = [
        EntityOut(
            name=name,
            type="npc",
            summary=f"{name} is a {described[name]}." if name in described else "",
            confidence={"name": 0.5, "type": 0.3, "summary": 0.6 if name in described else 0.2},
        )
        for name in found.names
    ]
    places = {place for _, place in found.residences}
    for entity in entities:
        if entity.name in places:
            entity.type = "location"
    facts = [
        FactOut(
            entity=name,
            attribute="is",
            value=what[:200],
            confidence={"entity": 0.6, "attribute": 0.5, "value": 0.6},
        )
        for name, what in found.descriptions
    ]
    facts += [
        FactOut(
            entity=name,
            attribute="status",
            value="dead",
            confidence={"entity": 0.6, "attribute": 0.6, "value": 0.6},
        )
        for name in found.deaths
    ]
    relations = [
        RelationOut(
            source=who,
            type="lives_in",
            target=place,
            confidence={"source": 0.6, "type": 0.5, "target": 0.6},
        )
        for who, place in found.residences
    ]
    return ExtractionOut(entities=entities, facts=facts, relations=relations)
