"""A world import is all or nothing, on SQLite and PostgreSQL: a failure anywhere
in the file, or while storing it, leaves no world, no entity and no event behind."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from taleweaver.domain.errors import Conflict, InvalidInput
from taleweaver.domain.events import RecordedEvent
from taleweaver.domain.world import WorldEvent
from taleweaver.engine import Engine
from taleweaver.memory.world import bible as bible_module
from taleweaver.memory.world import projector
from taleweaver.store.schema import events
from taleweaver.store.world_schema import world_entities, worlds
from tests.conftest import META
from tests.test_summaries import settings

__all__ = ["settings"]  # the key-file settings fixture PostgreSQL needs
pytestmark = pytest.mark.dialects
WS = "local"


def export(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "format": "taleweaver.world",
        "version": 1,
        "world": {"name": "Aster", "description": "", "settings": {}},
        "entities": [
            {"id": "e-ada", "type": "npc", "name": "Ada"},
            {"id": "e-bo", "type": "npc", "name": "Bo"},
        ],
        "facts": [
            {"id": "f-1", "entity_id": "e-ada", "attribute": "age", "value": "30"},
            {"id": "f-2", "entity_id": "e-bo", "attribute": "age", "value": "40"},
        ],
        "relations": [],
        "entries": [],
    }
    return data | changes


async def _written(engine: Engine) -> tuple[int, int, int]:
    async with engine.db.read() as conn:
        counts = [
            await conn.scalar(sa.select(sa.func.count()).select_from(table))
            for table in (worlds, world_entities, events)
        ]
    return counts[0] or 0, counts[1] or 0, counts[2] or 0


async def test_a_failure_while_storing_an_import_leaves_no_world(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The world, its entities and its facts commit together: a failure projecting
    the second fact (after the world and both entities) undoes them all."""
    real = projector.project

    async def fails_on_a_fact(conn: Any, recorded: list[RecordedEvent]) -> None:
        for number, event in enumerate(recorded):
            if event.type == WorldEvent.FACT_ADDED and event.payload["fact"]["id"] == "f-2":
                await real(conn, recorded[:number])
                raise RuntimeError("the disk is full")
        await real(conn, recorded)

    monkeypatch.setattr(bible_module, "project", fails_on_a_fact)
    before = await _written(engine)
    with pytest.raises(RuntimeError, match="disk is full"):
        await engine.world.import_(WS, export(), META)
    assert await _written(engine) == before
    monkeypatch.setattr(bible_module, "project", real)
    made = await engine.world.import_(WS, export(), META)  # and nothing blocks a retry
    assert [e["name"] for e in await engine.world.bible.entities(WS, made["id"])] == ["Ada", "Bo"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"entities": [{"id": "e-ada", "type": "npc", "name": "Ada"}, {"id": "e-2"}]},
            "name must not be empty",
        ),
        (
            {
                "facts": [
                    {"id": "f-1", "entity_id": "e-ada", "attribute": "age", "value": "30"},
                    {"id": "f-1", "entity_id": "e-bo", "attribute": "age", "value": "40"},
                ]
            },
            "repeats a fact id",
        ),
        ({"facts": [{"id": "f-1", "entity_id": "e-zed", "attribute": "a", "value": "b"}]}, "lacks"),
    ],
    ids=["bad-entity-mid-file", "repeated-fact-id", "fact-about-nobody"],
)
async def test_a_bad_item_anywhere_in_the_file_writes_nothing(
    engine: Engine, changes: dict[str, Any], message: str
) -> None:
    before = await _written(engine)
    with pytest.raises(InvalidInput, match=message):
        await engine.world.import_(WS, export(**changes), META)
    assert await _written(engine) == before


async def test_an_import_into_a_world_that_holds_its_ids_is_a_conflict(engine: Engine) -> None:
    made = await engine.world.import_(WS, export(), META)
    before = await _written(engine)
    # New entities, but facts whose ids the world already holds.
    again = export(
        entities=[{"id": "e-cy", "type": "npc", "name": "Cy"}],
        facts=[{"id": "f-1", "entity_id": "e-cy", "attribute": "age", "value": "9"}],
    )
    with pytest.raises(Conflict, match="already holds"):
        await engine.world.import_(WS, again, META, world_id=made["id"])
    assert await _written(engine) == before
