"""A sample Taleweaver plugin: a haiku session kind and the season it is set in."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import click

from taleweaver.domain.events import RecordedEvent
from taleweaver.domain.pipeline import ContextPiece, RecallQuery
from taleweaver.domain.sessions import SessionState
from taleweaver.engine.kinds import KindSpec
from taleweaver.plugins import hookimpl

KIND = "haiku"


def _haiku_prompt(state: SessionState) -> str:
    return (
        "You answer every move of the player with one haiku: three lines of five, "
        "seven and five syllables, in the present tense, about what happens next. "
        f"Nothing else. The scene: {state.settings.get('premise') or state.title}"
    )


@hookimpl
def session_kinds() -> dict[str, KindSpec]:
    return {KIND: KindSpec(_haiku_prompt, with_choices=False)}


class SeasonSource:
    """The season word a haiku needs, from the session's `season` setting."""

    name = "season"

    async def gather(self, query: RecallQuery) -> list[ContextPiece]:
        if query.kind != KIND:
            return []
        season = str(query.settings.get("season") or "autumn")
        return [
            ContextPiece(
                text=f"Every haiku names something of {season}.",
                source=self.name,
                ref=season,
                reason="a haiku is set in a season",
                priority=50,
                placement="system",
            )
        ]


@hookimpl
def context_sources() -> list[SeasonSource]:
    return [SeasonSource()]


# Committed events by type, this process's; a real integration would send them on.
SEEN: Counter[str] = Counter()


async def _count(events: Sequence[RecordedEvent]) -> None:
    SEEN.update(event.type for event in events)


@hookimpl
def event_listeners() -> list[object]:
    return [_count]


@click.command("syllables")
@click.argument("text")
def syllables(text: str) -> None:
    """Count the syllables of TEXT, roughly (vowel groups per word)."""
    words = re.findall(r"[a-z']+", text.lower())
    count = sum(max(1, len(re.findall(r"[aeiouy]+", word))) for word in words)
    click.echo(str(count))


@hookimpl
def cli_commands() -> list[click.Command]:
    return [syllables]
