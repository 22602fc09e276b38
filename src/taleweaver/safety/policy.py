"""How the detection layers combine: a policy, chosen in configuration.

The layers: the **rules** (fast, explainable), the **learned** detector (trained
heads over n-grams and a sentence encoder, local) and the **judge** (the model
routed to the `safety` task, an LLM; slow, optional).

- `rules`: the rules alone.
- `learned`: the learned detector alone.
- `rules+learned`: both run; the more severe wins, except that a
  rules finding below `high` which the learned detector is sure is idiom or
  fiction is set aside (what the rules' keywords cannot tell apart).
- `rules+learned+judge`: as above, and the judge is asked when the learned
  detector is uncertain and the rules found nothing; the judge can add, never remove.
- `rules-or-model`: the rules and the judge; the more severe wins.
- `model-confirms-rules`: the rules decide; a rules *warning* (level low) stands
  only if the judge agrees. A crisis found by the rules is never downgraded.
When a layer is asked but fails, the others' answer stands.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import StrEnum

from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.safety import NOTHING, Assessment, combine, rank

# A learned p(crisis) under this sets aside a rules finding below `high`.
VETO_BELOW = 0.03


class Policy(StrEnum):
    RULES = "rules"
    LEARNED = "learned"
    RULES_LEARNED = "rules+learned"
    RULES_LEARNED_JUDGE = "rules+learned+judge"
    RULES_OR_MODEL = "rules-or-model"
    MODEL_CONFIRMS_RULES = "model-confirms-rules"

    @classmethod
    def parse(cls, value: str) -> Policy:
        try:
            return cls(value.strip().lower())
        except ValueError:
            known = ", ".join(p.value for p in cls)
            raise InvalidInput(f"unknown safety policy {value!r} (known: {known})") from None

    @property
    def uses_learned(self) -> bool:
        return self in (Policy.LEARNED, Policy.RULES_LEARNED, Policy.RULES_LEARNED_JUDGE)

    @property
    def uses_judge(self) -> bool:
        return self in (
            Policy.RULES_LEARNED_JUDGE,
            Policy.RULES_OR_MODEL,
            Policy.MODEL_CONFIRMS_RULES,
        )


AskModel = Callable[[], Awaitable[Assessment | None]]


async def apply(
    policy: Policy,
    rules: Assessment,
    ask_model: AskModel | None,
    learned: Assessment | None = None,
) -> Assessment:
    if policy == Policy.RULES:
        return rules
    if policy.uses_learned and learned is not None:
        return await _with_learned(policy, rules, learned, ask_model)
    if policy.uses_learned:  # the learned detector is not loaded: the rules stand
        return rules
    if ask_model is None:
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


async def _with_learned(
    policy: Policy, rules: Assessment, learned: Assessment, ask_model: AskModel | None
) -> Assessment:
    if policy == Policy.LEARNED:
        return learned
    p_crisis = float(learned.detail.get("p_crisis", 1.0))
    if rules.level != "none" and rank(rules.level) < rank("high") and p_crisis < VETO_BELOW:
        found = NOTHING  # idiom or fiction the keywords took for a crisis
    else:
        found = combine(rules, learned)
    uncertain = bool(learned.detail.get("uncertain"))
    if policy == Policy.RULES_LEARNED_JUDGE and ask_model and uncertain and rules.level == "none":
        judged = await ask_model()
        if judged is not None:
            found = combine(found, judged)
    return found
