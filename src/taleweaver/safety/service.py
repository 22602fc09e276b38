"""The safety feature, assembled once per engine: rules, checker, crisis protocol,
flags, content preferences, webhooks and the narrator context source.

`TALEWEAVER_SAFETY_POLICY` picks how the rules, the learned detector and the judge
(a model routed to the `safety` task) combine; see `policy.py`. Unset, it is
`rules-or-model` when a model is routed to the `safety` task, else `rules`: the
learned detector is opt-in (`rules+learned`) until its false alarms on everyday
turns are low enough to pause no one's story. It is loaded once per process.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.auth import AuditLog
from taleweaver.config import SafetySettings
from taleweaver.domain.events import JSON
from taleweaver.llm import ChatModel
from taleweaver.safety.classifier import ModelClassifier
from taleweaver.safety.content import ContentPreferences
from taleweaver.safety.crisis import AUDIT_ACTOR, CrisisService
from taleweaver.safety.flags import Flags
from taleweaver.safety.layered import LayeredChecker, OutputRules
from taleweaver.safety.policy import Policy
from taleweaver.safety.rules import RulesProvider
from taleweaver.safety.source import ContentPreferencesSource
from taleweaver.safety.webhooks import Webhooks
from taleweaver.store.database import Database

if TYPE_CHECKING:
    from taleweaver.safety.learned import LearnedDetector

log = logging.getLogger(__name__)


def configured_policy(model_routed: bool) -> Policy:
    value = SafetySettings.read().safety_policy
    if value:
        return Policy.parse(value)
    return Policy.RULES_OR_MODEL if model_routed else Policy.RULES


@functools.cache
def shared_detector() -> LearnedDetector | None:
    """The learned detector, loaded on first use; None (said in the log) if it cannot be."""
    # Imported here too: it brings numpy, which a policy without it never needs.
    from taleweaver.safety.learned import LearnedDetector

    try:
        return LearnedDetector.load()
    except Exception as exc:  # the rules still run: a missing model must not stop a turn
        log.error("the learned crisis detector could not load (%s); rules only", exc)
        return None


class SafetyService:
    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        model: ChatModel,
        *,
        model_routed: bool = False,
        rules_path: Path | None = None,
        webhooks: Webhooks | None = None,
    ) -> None:
        self.db = db
        self.audit = audit
        self.rules = RulesProvider(rules_path)
        self.flags = Flags(db)
        self.content = ContentPreferences(db)
        self.webhooks = webhooks or Webhooks(db)
        self.crisis = CrisisService(db, audit, self.flags, self.content, self.webhooks)
        self.policy = configured_policy(model_routed)
        classifier = ModelClassifier(model) if self.policy.uses_judge else None
        learned = shared_detector() if self.policy.uses_learned else None
        self.checker = LayeredChecker(
            self.rules,
            self.crisis,
            self.flags,
            self.content,
            policy=self.policy,
            classifier=classifier,
            narrator=model,
            learned=learned,
        )
        self.source = ContentPreferencesSource(self.content)
        # Harmful narrator output by the rules: the engine adds it to the checker's
        # layers through the `safety_detectors` hook, as a plugin's detector is.
        self.output_rules = OutputRules(self.rules)

    async def resume(self, workspace_id: str, session_id: str, *, actor: str) -> JSON:
        """Lift the pause on a session (a therapist or admin decided the story may go on)."""
        async with self.db.write() as conn:
            resolved = await self.flags.resume(workspace_id, session_id, actor=actor, conn=conn)
            await self.audit.record(
                actor,
                "safety.resumed",
                workspace_id=workspace_id,
                target=session_id,
                details={"flags_resolved": resolved},
                conn=conn,
            )
        return {"session_id": session_id, "paused": False, "flags_resolved": resolved}

    async def carry_pause(
        self, conn: AsyncConnection, workspace_id: str, source_id: str, fork_id: str
    ) -> None:
        """A fork of a paused session starts paused (an engine fork hook)."""
        carried = await self.flags.carry(workspace_id, source_id, fork_id, conn=conn)
        if carried:
            await self.audit.record(
                AUDIT_ACTOR,
                "safety.pause_carried",
                workspace_id=workspace_id,
                target=fork_id,
                details={"forked_from": source_id, "flags": carried},
                conn=conn,
            )

    async def paused(self, workspace_id: str, session_id: str) -> bool:
        return await self.flags.pause_of(workspace_id, session_id) is not None

    async def aclose(self) -> None:
        await self.webhooks.aclose()


__all__ = ["AUDIT_ACTOR", "SafetyService", "configured_policy", "shared_detector"]
