"""A session rendered for people (Markdown, text) or for tools (JSON)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from taleweaver.domain.events import JSON


def render_export(session: JSON, messages: list[JSON], events: list[JSON], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(
            {"session": session, "messages": messages, "events": events},
            indent=2,
            default=_default,
        )
    markdown = fmt == "md"
    lines = [f"# {session['title']}" if markdown else session["title"], ""]
    for message in messages:
        if message["role"] == "player":
            lines.append(
                f"> **You:** {message['content']}" if markdown else f"> {message['content']}"
            )
        else:
            lines.append(message["content"])
            for number, choice in enumerate(message["choices"], 1):
                lines.append(f"{number}. {choice}")
        lines.append("")
    return "\n".join(lines)


def _default(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot export {type(value).__name__}")
