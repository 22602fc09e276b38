"""A model classifier for crisis language, through the model router's `safety` task.

The model is asked for one JSON object; anything else (an error, a timeout, prose,
an unknown category) yields None and a log line, and the caller goes on with the
rules alone: a classifier failure never blocks a turn, and never passes silently.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re

from taleweaver.domain.prompt import ChatMessage
from taleweaver.domain.safety import CATEGORIES, LEVELS, Assessment
from taleweaver.llm import CallScope, ChatModel, task_model

log = logging.getLogger(__name__)

INSTRUCTIONS = (
    "You are a safety classifier for an interactive-fiction app used in therapy. "
    "Decide whether the PLAYER MESSAGE shows that the real person writing it may be in "
    "danger. Violence inside the story, game talk and figures of speech ('this level is "
    "killing me', 'I'm dying to know') are not a crisis. Answer with one JSON object and "
    'nothing else: {"level": "none|low|moderate|high|critical", "categories": [...]} '
    f"where categories are drawn from: {', '.join(CATEGORIES)}."
)
_JSON = re.compile(r"\{.*\}", re.DOTALL)


def parse_verdict(raw: str) -> Assessment | None:
    """The model's JSON answer as an assessment; None when it is not one."""
    found = _JSON.search(raw)
    if found is None:
        return None
    try:
        data = json.loads(found.group(0))
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    level = data.get("level")
    categories = data.get("categories", [])
    if level not in LEVELS or not isinstance(categories, list):
        return None
    if any(c not in CATEGORIES for c in categories):
        return None
    if level != "none" and not categories:
        return None
    return Assessment(
        level=level if categories else "none",
        categories=tuple(categories) if level != "none" else (),
        source="model",
    )


class ModelClassifier:
    def __init__(self, model: ChatModel, *, timeout_s: float = 10.0, max_tokens: int = 120) -> None:
        self.model = model
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens

    async def classify(self, text: str, scope: CallScope) -> Assessment | None:
        messages = [
            ChatMessage("system", INSTRUCTIONS),
            ChatMessage("user", f"PLAYER MESSAGE:\n{text}"),
        ]
        model = task_model(self.model, "safety", scope)
        try:
            async with asyncio.timeout(self.timeout_s):
                raw = "".join([p async for p in model.stream(messages, max_tokens=self.max_tokens)])
        except Exception as exc:  # any model failure: fall back to the rules, said aloud
            log.warning(
                "safety classifier %s failed (%s); using the rules alone",
                model.name,
                type(exc).__name__,
            )
            return None
        verdict = parse_verdict(raw)
        if verdict is None:
            log.warning(
                "safety classifier %s gave no usable verdict; using the rules alone", model.name
            )
        return verdict
