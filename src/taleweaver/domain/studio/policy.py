"""A workspace's studio policy, pure: which providers and models the studio may
use, and which named fields are redacted before a prompt leaves the machine.

`redact_fields` names blueprint fields (e.g. "premise", "signature_faction") and
fact attributes (e.g. "true_name"); the values those fields hold in the material a
studio prompt is built from are replaced with `REDACTED` in the prompt's text.
An empty allow-list allows every provider (or model).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from taleweaver.domain.errors import Forbidden, InvalidInput
from taleweaver.domain.events import JSON

REDACTED = "[redacted]"
MAX_NAMES = 100
_NAME = re.compile(r"^[A-Za-z0-9_.:/@-]{1,120}$")


def default_policy() -> JSON:
    return {"providers": [], "models": [], "redact_fields": []}


def clean_policy(data: Mapping[str, Any]) -> JSON:
    unknown = sorted(set(data) - {"providers", "models", "redact_fields"})
    if unknown:
        raise InvalidInput(f"unknown policy fields: {', '.join(unknown)}")
    policy = default_policy()
    for key in policy:
        values = data.get(key) or []
        if not isinstance(values, list) or len(values) > MAX_NAMES:
            raise InvalidInput(f"{key}: a list of at most {MAX_NAMES} names")
        for value in values:
            if not isinstance(value, str) or not _NAME.match(value):
                raise InvalidInput(f"{key}: {value!r} is not a name")
        policy[key] = sorted(set(values))
    return policy


def check_models(policy: Mapping[str, Any], models: Iterable[Mapping[str, str]]) -> None:
    """Refuse (403) unless every model the studio would call is allowed: its
    provider (name or kind) in `providers` and its name or model id in `models`."""
    providers, names = set(policy.get("providers") or []), set(policy.get("models") or [])
    for model in models:
        if providers and not {model.get("provider"), model.get("kind")} & providers:
            raise Forbidden(
                f"the workspace's studio policy does not allow provider "
                f"{model.get('provider')!r} (model {model.get('name')!r})"
            )
        if names and not {model.get("name"), model.get("model"), model.get("alias")} & names:
            raise Forbidden(
                f"the workspace's studio policy does not allow model {model.get('name')!r}"
            )


def redaction_values(
    policy: Mapping[str, Any],
    blueprint_fields: Mapping[str, Any] | None,
    facts: Iterable[Mapping[str, Any]],
) -> list[str]:
    """The values to hide: those of the named blueprint fields and fact attributes."""
    named = set(policy.get("redact_fields") or [])
    values: list[str] = []

    def add(value: Any) -> None:
        if isinstance(value, list):
            for item in value:
                add(item)
        elif isinstance(value, str | int | float) and not isinstance(value, bool):
            text = str(value).strip()
            if len(text) >= 2:
                values.append(text)

    for field, value in (blueprint_fields or {}).items():
        if field in named:
            add(value)
    for fact in facts:
        if fact.get("attribute") in named:
            add(fact.get("value"))
    return sorted(set(values), key=len, reverse=True)


def redact(text: str, values: Iterable[str]) -> str:
    """The text with every value replaced (longest first, any case)."""
    for value in values:
        text = re.sub(re.escape(value), REDACTED, text, flags=re.IGNORECASE)
    return text
