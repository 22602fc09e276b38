"""Content preferences: a world's (or workspace's) content rules and a player's own
avoid topics, trigger warnings and locale. They feed the narrator's prompt and the
check on its output."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.events import JSON
from taleweaver.domain.safety import (
    MAX_TOPIC_CHARS,
    MAX_TOPICS,
    WORKSPACE_SCOPE,
    topic_pattern,
    world_scope,
)
from taleweaver.store import sqlite_fast
from taleweaver.store.database import Database
from taleweaver.store.safety_schema import safety_content_rules, safety_preferences


def clean_topics(values: list[str], what: str) -> list[str]:
    """Trimmed, de-duplicated topics, each a phrase that can be matched."""
    if len(values) > MAX_TOPICS:
        raise InvalidInput(f"{what}: at most {MAX_TOPICS} topics")
    out: list[str] = []
    for value in values:
        topic = " ".join(value.split())
        if not topic or len(topic) > MAX_TOPIC_CHARS or not topic.isprintable():
            raise InvalidInput(f"{what}: each topic must be 1 to {MAX_TOPIC_CHARS} characters")
        topic_pattern(topic)
        if topic.lower() not in (t.lower() for t in out):
            out.append(topic)
    return out


def clean_locale(value: str | None) -> str | None:
    if value is None:
        return None
    tag = value.strip()
    if not tag or len(tag) > 20 or not all(c.isalnum() or c in "-_" for c in tag):
        raise InvalidInput("locale must be a language tag such as 'en', 'en-GB' or 'de'")
    return tag


@dataclass(frozen=True, slots=True)
class Effective:
    """Everything that applies to one turn: the world's (or workspace's) rules and the
    player's preferences."""

    scope: str = WORKSPACE_SCOPE
    content_warnings: list[str] = field(default_factory=list)
    forbidden: list[str] = field(default_factory=list)
    avoid_topics: list[str] = field(default_factory=list)
    trigger_warnings: list[str] = field(default_factory=list)
    locale: str | None = None

    @property
    def empty(self) -> bool:
        return not (
            self.content_warnings or self.forbidden or self.avoid_topics or self.trigger_warnings
        )


def _rules_view(scope: str, row: Any) -> JSON:
    return {
        "scope": scope,
        "content_warnings": list(row.content_warnings) if row else [],
        "forbidden": list(row.forbidden) if row else [],
        "locale": row.locale if row else None,
    }


def _prefs_view(user_id: str, row: Any) -> JSON:
    return {
        "user_id": user_id,
        "avoid_topics": list(row.avoid_topics) if row else [],
        "trigger_warnings": list(row.trigger_warnings) if row else [],
        "locale": row.locale if row else None,
    }


# How long a turn may use content rules read a moment ago. Every turn reads them
# twice (the narrator's prompt, then the check on its reply); a change made here
# is seen at once, one made through another replica within this many seconds.
EFFECTIVE_TTL_S = 2.0
_KEPT = 1024


class ContentPreferences:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._recent: dict[tuple[str, str | None, str | None], tuple[float, Effective]] = {}

    async def rules(self, workspace_id: str, scope: str) -> JSON:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    sa.select(safety_content_rules).where(
                        safety_content_rules.c.workspace_id == workspace_id,
                        safety_content_rules.c.scope == scope,
                    )
                )
            ).first()
        return _rules_view(scope, row)

    async def set_rules(
        self,
        workspace_id: str,
        scope: str,
        *,
        content_warnings: list[str],
        forbidden: list[str],
        locale: str | None,
    ) -> JSON:
        values = {
            "content_warnings": clean_topics(content_warnings, "content_warnings"),
            "forbidden": clean_topics(forbidden, "forbidden"),
            "locale": clean_locale(locale),
            "updated_at": datetime.now(UTC),
        }
        where = (
            safety_content_rules.c.workspace_id == workspace_id,
            safety_content_rules.c.scope == scope,
        )
        self._recent.clear()
        async with self.db.write() as conn:
            updated = await conn.execute(
                safety_content_rules.update().where(*where).values(**values)
            )
            if updated.rowcount == 0:
                await conn.execute(
                    safety_content_rules.insert().values(
                        workspace_id=workspace_id, scope=scope, **values
                    )
                )
        return await self.rules(workspace_id, scope)

    async def preferences(self, workspace_id: str, user_id: str) -> JSON:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    sa.select(safety_preferences).where(
                        safety_preferences.c.workspace_id == workspace_id,
                        safety_preferences.c.user_id == user_id,
                    )
                )
            ).first()
        return _prefs_view(user_id, row)

    async def set_preferences(
        self,
        workspace_id: str,
        user_id: str,
        *,
        avoid_topics: list[str],
        trigger_warnings: list[str],
        locale: str | None,
    ) -> JSON:
        values = {
            "avoid_topics": clean_topics(avoid_topics, "avoid_topics"),
            "trigger_warnings": clean_topics(trigger_warnings, "trigger_warnings"),
            "locale": clean_locale(locale),
            "updated_at": datetime.now(UTC),
        }
        where = (
            safety_preferences.c.workspace_id == workspace_id,
            safety_preferences.c.user_id == user_id,
        )
        self._recent.clear()
        async with self.db.write() as conn:
            updated = await conn.execute(safety_preferences.update().where(*where).values(**values))
            if updated.rowcount == 0:
                await conn.execute(
                    safety_preferences.insert().values(
                        workspace_id=workspace_id, user_id=user_id, **values
                    )
                )
        return await self.preferences(workspace_id, user_id)

    async def effective(
        self, workspace_id: str, world_id: str | None, user_id: str | None
    ) -> Effective:
        """The world's rules (the workspace's when the session has no world, or the
        world has none of its own) and the player's preferences: one read, as every
        turn asks this twice (the narrator's prompt and the check on its reply)."""
        key = (workspace_id, world_id, user_id)
        kept = self._recent.get(key)
        if kept is not None and kept[0] > time.monotonic():
            return kept[1]
        found = await self._read_effective(workspace_id, world_id, user_id)
        if len(self._recent) >= _KEPT:
            self._recent.clear()
        self._recent[key] = (time.monotonic() + EFFECTIVE_TTL_S, found)
        return found

    async def _read_effective(
        self, workspace_id: str, world_id: str | None, user_id: str | None
    ) -> Effective:
        world = world_scope(world_id) if world_id else WORKSPACE_SCOPE
        rows = await sqlite_fast.fetch_rows(
            self.db,
            _EFFECTIVE,
            {
                "ws": workspace_id,
                "world": world,
                "user": user_id or "",
            },
        )
        found = {str(r[0]): (_list(r[1]), _list(r[2]), r[3]) for r in rows}
        rules = found.get(world) or found.get(WORKSPACE_SCOPE)
        prefs = found.get("")
        workspace = found.get(WORKSPACE_SCOPE)
        return Effective(
            scope=world if world in found else WORKSPACE_SCOPE,
            content_warnings=rules[0] if rules else [],
            forbidden=rules[1] if rules else [],
            avoid_topics=prefs[0] if prefs else [],
            trigger_warnings=prefs[1] if prefs else [],
            locale=(prefs[2] if prefs and prefs[2] else None)
            or (workspace[2] if workspace else None),
        )


# A world's or the workspace's rules (by scope) and the player's preferences (scope '').
_EFFECTIVE = (
    "SELECT scope, content_warnings, forbidden, locale FROM safety_content_rules "
    "WHERE workspace_id = :ws AND scope IN ('workspace', :world) "
    "UNION ALL SELECT '', avoid_topics, trigger_warnings, locale FROM safety_preferences "
    "WHERE workspace_id = :ws AND user_id = :user"
)


def _list(value: Any) -> list[str]:
    """A JSON list column, decoded by the driver or not (raw SQLite reads are text)."""
    data = json.loads(value) if isinstance(value, str | bytes) else value
    return [str(v) for v in data or []]
