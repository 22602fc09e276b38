"""A story reply's options as structured output: the schema, the request, the reading.

Providers with structured output (OpenAI's `response_format`, Ollama's `format`)
decode under a JSON schema, so 2 to 4 options come back whatever the model would
rather say. The prose streams first as always; only when it ended without a
usable list does the narrator ask, in a second short call, for the options
alone under this schema (`ReplyShape.choices_only`).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["CHOICES_REQUEST", "CHOICES_SCHEMA", "CHOICE_TOKENS", "read_choices"]

MIN_CHOICES, MAX_CHOICES = 2, 4
MAX_CHOICE_CHARS = 80
# Four short options in JSON, with room for the quoting.
CHOICE_TOKENS = 160

CHOICES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "choices": {
            "type": "array",
            "items": {"type": "string"},
            "minItems": MIN_CHOICES,
            "maxItems": MAX_CHOICES,
        }
    },
    "required": ["choices"],
    "additionalProperties": False,
}

CHOICES_REQUEST = (
    "Give the player 2 to 4 short options for what to do next, each a few words "
    'starting with a verb, as JSON: {"choices": ["...", "..."]}'
)


def read_choices(text: str) -> list[str]:
    """The options in a reply to `CHOICES_REQUEST`: 2 to 4 distinct one-line texts,
    or none. A server that ignored the schema may wrap the object in prose."""
    start, end = text.find("{"), text.rfind("}")
    try:
        document = json.loads(text[start : end + 1]) if 0 <= start < end else None
    except ValueError:
        return []
    found = document.get("choices") if isinstance(document, dict) else None
    if not isinstance(found, list):
        return []
    choices: list[str] = []
    for item in found:
        if not isinstance(item, str):
            continue
        line = " ".join(item.split())[:MAX_CHOICE_CHARS].strip()
        if line and line not in choices:
            choices.append(line)
    return choices[:MAX_CHOICES] if len(choices) >= MIN_CHOICES else []
