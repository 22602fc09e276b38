"""A file's assistant: an instruction becomes a turn of the file's `file` session,
through the one turn pipeline (safety and the context pack apply, and the turn is in
that session's log with its verdicts), and its reply becomes a proposal on the file,
a unified diff against the revision the turn was shown, for the user to accept or
reject. A reply that safety blocked, or one that changes nothing or does not apply,
makes no proposal, and the answer says why."""

from __future__ import annotations

from taleweaver.domain.errors import Conflict, InvalidInput
from taleweaver.domain.events import JSON, EventMetadata
from taleweaver.domain.files import proposed_text
from taleweaver.domain.sessions import SessionKind
from taleweaver.domain.turns import TurnRequest
from taleweaver.engine.sessions import Sessions
from taleweaver.engine.turns import TurnRunner
from taleweaver.files import FileSessions, revision_seen

__all__ = ["FileAssistant"]


class FileAssistant:
    def __init__(self, files: FileSessions, sessions: Sessions, turns: TurnRunner) -> None:
        self.files = files
        self.sessions = sessions
        self.turns = turns

    async def session(self, workspace_id: str, file_id: str, meta: EventMetadata) -> str:
        """The file's assistant session, made on first use."""
        found = await self.files.assistant(workspace_id, file_id)
        if found is not None:
            return found
        row = await self.files.current(workspace_id, file_id)
        made = await self.sessions.create(
            workspace_id,
            kind=SessionKind.FILE,
            title=f"Assistant for {row['path']}"[:200],
            settings={"file_id": file_id, "path": row["path"]},
            owner_id=None if meta.actor == "system" else meta.actor,
            metadata=meta,
        )
        return await self.files.link_assistant(workspace_id, file_id, str(made["id"]), meta)

    async def assist(
        self, workspace_id: str, file_id: str, instruction: str, meta: EventMetadata
    ) -> JSON:
        """Run the instruction as a turn; {session_id, turn, proposal, reason}: the
        proposal made, or None and the reason."""
        request = TurnRequest.build(action=None, text=instruction, choice=None)
        session_id = await self.session(workspace_id, file_id, meta)
        handle = await self.turns.start(workspace_id, session_id, request, meta)
        turn = await handle.wait()
        answer: JSON = {"session_id": session_id, "turn": turn, "proposal": None, "reason": None}
        safety = turn["safety"]
        if turn["status"] != "completed":
            return answer | {"reason": f"the turn was {turn['status']}"}
        if safety["level"] == "blocked" or safety["crisis"]:
            why = ", ".join(safety["categories"]) or safety["action"]
            return answer | {"reason": f"safety blocked the turn ({why}); no change is proposed"}
        recorded = await self.sessions.turn_event(workspace_id, session_id, turn["id"])
        base_revision = revision_seen(recorded.payload.get("context") or [], file_id)
        if base_revision is None:
            return answer | {"reason": "the turn was not shown the file"}
        base = (await self.files.version(workspace_id, file_id, base_revision))["text"]
        try:
            text = proposed_text(turn["reply"]["text"], base)
            proposal = await self.files.propose(
                workspace_id,
                file_id,
                meta,
                text=text,
                note=instruction[:2000],
                author="assistant",
                base_revision=base_revision,
                origin={"session_id": session_id, "turn_id": turn["id"]},
            )
        except (InvalidInput, Conflict) as exc:
            return answer | {"reason": f"the reply makes no proposal: {exc.detail}"}
        return answer | {"proposal": proposal}
