"""The safety checker the pipeline calls: rules, the model (by policy), crisis and pause
on input; content rules on output."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from taleweaver.auth import LOCAL_USER_ID
from taleweaver.domain.safety import (
    CRISIS_FROM,
    Assessment,
    assess,
    combine,
    find_topics,
    rank,
)
from taleweaver.domain.turns import SAFE, SafetyVerdict
from taleweaver.llm import CallScope, ChatModel
from taleweaver.safety.checker import SafetyDetector, SafetySubject
from taleweaver.safety.classifier import ModelClassifier
from taleweaver.safety.content import ContentPreferences
from taleweaver.safety.crisis import CrisisService
from taleweaver.safety.flags import Flags
from taleweaver.safety.policy import Policy, apply
from taleweaver.safety.protocol import CrisisSignal
from taleweaver.safety.resources import render
from taleweaver.safety.rules import RulesProvider

if TYPE_CHECKING:
    from taleweaver.safety.learned import LearnedDetector  # numpy: see service.shared_detector

log = logging.getLogger(__name__)


class OutputRules:
    """The rules' harmful-output patterns on narrator replies (a `SafetyDetector`,
    registered through the `safety_detectors` hook like a plugin's)."""

    name = "output-rules"

    def __init__(self, rules: RulesProvider) -> None:
        self.rules = rules

    async def assess(self, subject: SafetySubject) -> Assessment | None:
        if subject.direction != "output":
            return None
        return assess(subject.text, self.rules.current(), direction="output")


async def detect(
    policy: Policy,
    rules: RulesProvider,
    text: str,
    *,
    learned: LearnedDetector | None = None,
    classifier: ModelClassifier | None = None,
    scope: CallScope | None = None,
    context: Sequence[str] = (),
) -> Assessment:
    """Every layer the policy names, on one player message: what a turn and the
    evaluation both run, so the figures measure what players get."""
    found = assess(text, rules.current(), direction="input")
    if not text.strip():
        return found
    by_model = learned.assess(text, context) if learned and policy.uses_learned else None
    ask = None
    if classifier is not None:

        async def ask() -> Assessment | None:
            return await classifier.classify(text, scope or CallScope())

    return await apply(policy, found, ask, by_model)


class LayeredChecker:
    """Implements `SafetyChecker`. `narrator` is the model an output that broke a
    content rule is asked again with (OutputSafety does the asking)."""

    def __init__(
        self,
        rules: RulesProvider,
        crisis: CrisisService,
        flags: Flags,
        content: ContentPreferences,
        *,
        policy: Policy = Policy.RULES,
        classifier: ModelClassifier | None = None,
        narrator: ChatModel | None = None,
        learned: LearnedDetector | None = None,
    ) -> None:
        self.rules = rules
        self.crisis = crisis
        self.flags = flags
        self.content = content
        self.policy = policy
        self.classifier = classifier
        self.narrator = narrator
        self.learned = learned
        # More layers (the `safety_detectors` hook): the engine adds them as it wires.
        self.detectors: list[SafetyDetector] = []

    async def _extra(self, subject: SafetySubject) -> list[Assessment]:
        """What each added detector finds; one that raises is logged and skipped."""
        found: list[Assessment] = []
        for detector in self.detectors:
            try:
                assessment = await detector.assess(subject)
            except Exception:
                log.exception("safety detector %s failed; the other layers stand", detector.name)
                continue
            if assessment is not None and (assessment.level != "none" or assessment.findings):
                found.append(assessment)
        return found

    async def detect(
        self, text: str, scope: CallScope | None = None, context: Sequence[str] = ()
    ) -> Assessment:
        """What the configured policy concludes about one player message, judged with
        the conversation's earlier turns (`context`, oldest first)."""
        return await detect(
            self.policy,
            self.rules,
            text,
            learned=self.learned,
            classifier=self.classifier,
            scope=scope,
            context=context,
        )

    async def check(self, subject: SafetySubject) -> SafetyVerdict:
        if subject.direction == "input":
            return await self._input(subject)
        return await self._output(subject)

    async def _player(self, subject: SafetySubject) -> str:
        owner = await self.flags.session_owner(subject.workspace_id, subject.session_id)
        return owner or subject.actor or LOCAL_USER_ID

    async def _input(self, subject: SafetySubject) -> SafetyVerdict:
        scope = CallScope(subject.workspace_id, subject.session_id, subject.turn_id)
        found = await self.detect(subject.text, scope, subject.context)
        for extra in await self._extra(subject):
            found = combine(found, extra)
        if rank(found.level) >= rank(CRISIS_FROM):
            player = await self._player(subject)
            response = await self.crisis.raise_crisis(
                CrisisSignal(
                    workspace_id=subject.workspace_id,
                    user_id=player,
                    level=found.level,
                    categories=list(found.categories),
                    source="turn",
                    session_id=subject.session_id,
                    ref=subject.turn_id,
                    detail=found.to_dict() | {"rules_version": self.rules.version},
                )
            )
            return SafetyVerdict(
                "blocked", True, found.level, found.categories, "crisis_protocol", render(response)
            )
        pause = await self.flags.pause_of(subject.workspace_id, subject.session_id)
        if pause is not None:
            support = await self.crisis.support(subject.workspace_id, await self._player(subject))
            return SafetyVerdict(
                "blocked",
                False,
                pause["level"],
                tuple(pause["categories"]),
                "paused",
                render(support),
            )
        if found.level == "low":
            return SafetyVerdict("warning", False, "low", found.categories, "support_offered")
        return SAFE

    async def _output(self, subject: SafetySubject) -> SafetyVerdict:
        world = subject.settings.get("world_id")
        prefs = await self.content.effective(
            subject.workspace_id, str(world) if world else None, await self._player(subject)
        )
        broken = [
            f"forbidden in this world: {t}" for t in find_topics(subject.text, prefs.forbidden)
        ]
        broken += [f"the player avoids: {t}" for t in find_topics(subject.text, prefs.avoid_topics)]
        for harmful in await self._extra(subject):
            rules = [f.rule for f in harmful.findings] or [harmful.source]
            broken += [f"unsafe content ({rule})" for rule in rules]
        if broken:
            return SafetyVerdict(
                "blocked",
                categories=("content_rule",),
                action="violation",
                violations=tuple(broken),
            )
        warned = find_topics(subject.text, prefs.trigger_warnings)
        if warned:
            return SafetyVerdict(
                "warning",
                categories=("trigger_warning",),
                action="content_warning",
                violations=tuple(warned),
            )
        return SAFE
