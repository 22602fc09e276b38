"""The crisis protocol: flag and pause, audit, resources for the person's locale, and a
signed webhook to their therapist(s). Turn safety and the therapy layer both raise
crises here."""

from __future__ import annotations

import logging

import sqlalchemy as sa

from taleweaver.auth import AuditLog
from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.safety import LEVELS
from taleweaver.safety.content import ContentPreferences
from taleweaver.safety.flags import Flags
from taleweaver.safety.protocol import CrisisResponse, CrisisSignal
from taleweaver.safety.resources import crisis_response
from taleweaver.safety.webhooks import Webhooks, payload_for
from taleweaver.store.database import Database
from taleweaver.store.schema import assignments, memberships

log = logging.getLogger(__name__)

AUDIT_ACTOR = "safety"


class CrisisService:
    """Implements `CrisisProtocol`."""

    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        flags: Flags,
        content: ContentPreferences,
        webhooks: Webhooks,
    ) -> None:
        self.db = db
        self.audit = audit
        self.flags = flags
        self.content = content
        self.webhooks = webhooks

    async def raise_crisis(self, signal: CrisisSignal) -> CrisisResponse:
        if signal.level not in LEVELS[1:]:
            raise InvalidInput(f"a crisis needs a level of {', '.join(LEVELS[1:])}")
        async with self.db.write() as conn:
            flag_id = await self.flags.create(signal, conn=conn)
            await self.audit.record(
                AUDIT_ACTOR,
                "safety.crisis",
                workspace_id=signal.workspace_id,
                target=signal.session_id or signal.user_id,
                details={
                    "flag_id": flag_id,
                    "user_id": signal.user_id,
                    "level": signal.level,
                    "categories": list(signal.categories),
                    "source": signal.source,
                    "ref": signal.ref,
                },
                conn=conn,
            )
        log.warning(
            "crisis raised: workspace %s session %s level %s (%s)",
            signal.workspace_id,
            signal.session_id,
            signal.level,
            ", ".join(signal.categories),
        )
        response = await self.support(signal.workspace_id, signal.user_id)
        try:
            recipients = await self.recipients(signal.workspace_id, signal.user_id)
            payload = payload_for(
                {
                    "flag_id": flag_id,
                    "workspace_id": signal.workspace_id,
                    "session_id": signal.session_id,
                    "user_id": signal.user_id,
                    "level": signal.level,
                    "categories": list(signal.categories),
                    "source": signal.source,
                    "ref": signal.ref,
                }
            )
            await self.webhooks.notify(signal.workspace_id, flag_id, recipients, payload)
        except Exception:  # the person's response must never wait on, or fail with, a webhook
            log.exception("crisis %s: scheduling therapist webhooks failed", flag_id)
        return response

    async def support(self, workspace_id: str, user_id: str | None) -> CrisisResponse:
        """The supportive message with resources for the person's locale."""
        prefs = await self.content.effective(workspace_id, None, user_id)
        return crisis_response(prefs.locale)

    async def recipients(self, workspace_id: str, user_id: str) -> list[str]:
        """The player's assigned therapists; with none assigned, the workspace's owners
        and admins, so that a crisis always reaches someone who registered a webhook."""
        async with self.db.read() as conn:
            therapists = (
                (
                    await conn.execute(
                        sa.select(assignments.c.therapist_id).where(
                            assignments.c.workspace_id == workspace_id,
                            assignments.c.player_id == user_id,
                        )
                    )
                )
                .scalars()
                .all()
            )
            if therapists:
                return sorted(therapists)
            managers = (
                (
                    await conn.execute(
                        sa.select(memberships.c.user_id).where(
                            memberships.c.workspace_id == workspace_id,
                            memberships.c.role.in_(["owner", "admin"]),
                        )
                    )
                )
                .scalars()
                .all()
            )
        return sorted(managers)
