"""How the rules and the model classifier combine: a policy, chosen in configuration.

- `rules`: the rules alone.
- `rules-or-model`: both run; the more severe wins.
- `model-confirms-rules`: the rules decide; a rules *warning* (level low) stands
  only if the model agrees. A crisis found by the rules is never downgraded.
When the model is asked but fails, the rules' answer stands.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import StrEnum

from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.safety import NOTHING, Assessment, combine


class Policy(StrEnum):
    RULES = "rules"
    RULES_OR_MODEL = "rules-or-model"
    MODEL_CONFIRMS_RULES = "model-confirms-rules"

    @classmethod
    def parse(cls, value: str) -> Policy:
        try:
            return cls(value.strip().lower())
        except ValueError:
            known = ", ".join(p.value for p in cls)
            raise InvalidInput(f"unknown safety policy {value!r} (known: {known})") from None


AskModel = Callable[[], Awaitable[Assessment | None]]


async def apply(policy: Policy, rules: Assessment, ask_model: AskModel | None) -> Assessment:
    if policy == Policy.RULES or ask_model is None:
        return rules
    if policy == Policy.RULES_OR_MODEL:
        model = await ask_model()
        return rules if model is None else combine(rules, model)
    if rules.level != "low":
        return rules
    model = await ask_model()
    if model is not None and model.level == "none":
        return NOTHING
    return rules
