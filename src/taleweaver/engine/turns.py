"""Running turns: one task per turn, a replayable event buffer, cancellation.

A turn runs as its own task, not inside the request that started it: a client
that disconnects can resume the stream from the last event id it saw, and only
an explicit cancel stops the generation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from taleweaver.domain.errors import (
    ConcurrencyConflict,
    Conflict,
    ModelError,
    NotFound,
    TaleweaverError,
)
from taleweaver.domain.events import JSON, EventMetadata, NewEvent
from taleweaver.domain.flags import DEFAULT_FLAGS, TRACE_CONTENT, FlagSet
from taleweaver.domain.turns import TurnRequest, resolve_input
from taleweaver.engine.context import TurnContext
from taleweaver.engine.outcome import (
    cancelled_event,
    completed_events,
    failed_event,
    new_id,
    turn_view,
)
from taleweaver.engine.pipeline import Capabilities, build_pipeline
from taleweaver.observability import (
    observe_inter_token,
    observe_safety,
    observe_stage,
    observe_ttft,
    observe_turn,
    tracing,
    turns_in_flight,
)
from taleweaver.store.repository import SessionRepository

log = logging.getLogger(__name__)

UNEXPECTED = "the turn failed on an unexpected error; the server log has the details"


class TurnCrashed(TaleweaverError):
    """A turn ended by an error no stage raised on purpose (answered as a 500)."""

    title = "Turn failed"


KEEP_FINISHED = 1000


@dataclass(frozen=True, slots=True)
class StreamEvent:
    turn_id: str
    seq: int
    name: str
    data: JSON

    @property
    def id(self) -> str:
        return f"{self.turn_id}:{self.seq}"


class Phase(StrEnum):
    GENERATING = "generating"
    COMMITTING = "committing"
    FINISHED = "finished"


class TurnHandle:
    def __init__(self, turn_id: str, session_id: str, workspace_id: str) -> None:
        self.turn_id = turn_id
        self.session_id = session_id
        self.workspace_id = workspace_id
        self.events: list[StreamEvent] = []
        self.phase = Phase.GENERATING
        self.result: JSON | None = None
        self.error: TaleweaverError | None = None
        self.cancel_requested = False
        self.task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._finished = asyncio.Event()

    def emit(self, name: str, data: JSON) -> None:
        self.events.append(StreamEvent(self.turn_id, len(self.events) + 1, name, data))
        wake, self._wake = self._wake, asyncio.Event()
        wake.set()

    async def subscribe(self, after: int = 0) -> AsyncIterator[StreamEvent]:
        """Every event after sequence number `after`, live until the turn ends."""
        index = after
        while True:
            wake = self._wake
            while index < len(self.events):
                yield self.events[index]
                index += 1
            if self._finished.is_set():
                return
            await wake.wait()

    async def wait(self) -> JSON:
        """The finished turn's view, or its error raised."""
        await self._finished.wait()
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    def cancel(self) -> bool:
        """Stop the generation; False if the turn is already past the point of no return."""
        if self.phase != Phase.GENERATING or self.task is None:
            return False
        self.cancel_requested = True
        self.task.cancel()
        return True

    def finish(self) -> None:
        self.phase = Phase.FINISHED
        self._finished.set()
        wake, self._wake = self._wake, asyncio.Event()
        wake.set()


class TurnRunner:
    def __init__(
        self,
        repository: SessionRepository,
        caps: Capabilities,
        *,
        flags: Callable[[str], Awaitable[FlagSet]] | None = None,
    ) -> None:
        self.repository = repository
        self.caps = caps
        # Reads a workspace's feature flags; without it every turn has the defaults.
        self.flags = flags
        self._running: dict[str, TurnHandle] = {}
        self._recent: OrderedDict[str, TurnHandle] = OrderedDict()
        # Told of each turn once it runs (the live channel relays its stream).
        self.on_start: Callable[[TurnHandle], Awaitable[None]] | None = None

    async def start(
        self,
        workspace_id: str,
        session_id: str,
        request: TurnRequest,
        metadata: EventMetadata,
        *,
        known_version: int | None = None,
    ) -> TurnHandle:
        """Validate the turn, then run it in the background and return its handle.

        Raises before anything streams when the session is missing, busy, or the
        request does not fit its state, so transports can answer with a plain 4xx.
        """
        state = await self.repository.open(workspace_id, session_id, known_version=known_version)
        # Read once, here: a flag flipped while the turn runs waits for the next turn.
        flags = DEFAULT_FLAGS if self.flags is None else await self.flags(workspace_id)
        if session_id in self._running:
            raise Conflict(f"a turn is already running in session {session_id}")
        resolve_input(state, request)
        handle = TurnHandle(new_id(), session_id, workspace_id)
        ctx = TurnContext(
            turn_id=handle.turn_id,
            session=state,
            request=request,
            metadata=metadata,
            emit=_timing_tokens(handle, str(state.kind)),
            flags=flags,
        )
        self._running[session_id] = handle
        self._recent[handle.turn_id] = handle
        while len(self._recent) > KEEP_FINISHED:
            self._recent.popitem(last=False)
        handle.emit(
            "start",
            {
                "turn_id": handle.turn_id,
                "session_id": session_id,
                "action": str(request.action),
                "number": ctx.number,
            },
        )
        handle.task = asyncio.create_task(self._run(handle, ctx), name=f"turn-{handle.turn_id}")
        if self.on_start is not None:
            await self.on_start(handle)
        return handle

    def get(self, workspace_id: str, session_id: str, turn_id: str) -> TurnHandle:
        handle = self.find(workspace_id, session_id, turn_id)
        if handle is None:
            raise NotFound(f"turn {turn_id} is not running or recent in session {session_id}")
        return handle

    def find(self, workspace_id: str, session_id: str, turn_id: str) -> TurnHandle | None:
        """A running or recent turn of this process, or None."""
        handle = self._recent.get(turn_id)
        if handle is None or handle.session_id != session_id or handle.workspace_id != workspace_id:
            return None
        return handle

    def local(self, session_id: str, turn_id: str) -> TurnHandle | None:
        """A running or recent turn of this process in that session (any workspace:
        for callers that authorized the session already)."""
        handle = self._recent.get(turn_id)
        return handle if handle is not None and handle.session_id == session_id else None

    def running(self, session_id: str) -> TurnHandle | None:
        return self._running.get(session_id)

    def running_sessions(self) -> list[str]:
        """Sessions with a turn generating or committing on this server now."""
        return list(self._running)

    async def shutdown(self) -> None:
        """Stop every running turn without committing it (the process is going away)."""
        tasks = [h.task for h in self._running.values() if h.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, handle: TurnHandle, ctx: TurnContext) -> None:
        outcome = "failed"
        with tracing.span("turn", _turn_attributes(ctx)) as current:
            try:
                with turns_in_flight():
                    await self._generate_and_commit(handle, ctx)
                outcome = str((handle.result or {}).get("status", "failed"))
            except TaleweaverError as exc:
                tracing.fail(current, exc)
                self._fail(handle, exc)
            except Exception as exc:  # committing failed (the store is down): say so, end
                log.exception("turn %s could not be committed", handle.turn_id)
                tracing.fail(current, exc)
                self._fail(handle, TurnCrashed(UNEXPECTED))
            finally:
                current.set_attribute("taleweaver.turn.outcome", outcome)
                if ctx.flags.enabled(TRACE_CONTENT):  # never set in a sensitive workspace
                    tracing.record_content(current, ctx.input.text, ctx.reply_text)
                self._running.pop(handle.session_id, None)
                handle.finish()
                _observe(ctx, outcome)

    @staticmethod
    def _fail(handle: TurnHandle, exc: TaleweaverError) -> None:
        handle.error = exc
        handle.emit(
            "error",
            {
                "type": type(exc).__name__,
                "title": exc.title,
                "detail": exc.detail,
                "turn_id": handle.turn_id,
            },
        )

    async def _generate_and_commit(self, handle: TurnHandle, ctx: TurnContext) -> None:
        pipeline = build_pipeline(ctx.session.kind, self.caps)
        try:
            await pipeline.run(ctx)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not handle.cancel_requested or task is None:
                raise  # shutdown: nothing is committed
            task.uncancel()
            await self._commit_cancelled(handle, ctx)
            return
        except ModelError as exc:
            handle.phase = Phase.COMMITTING
            await self._commit_quietly(ctx, [failed_event(ctx, exc)])
            raise
        except TaleweaverError:
            raise  # refused on purpose (bad settings, a paused session): nothing to record
        except Exception as exc:  # a bug in a stage: the turn still ends, recorded
            handle.phase = Phase.COMMITTING
            raise await self._crashed(ctx, "turn %s failed on an unexpected error") from exc
        handle.phase = Phase.COMMITTING
        started = time.perf_counter()
        try:
            state, _ = await self.repository.commit(
                ctx.session, completed_events(ctx), ctx.metadata
            )
        except TaleweaverError:
            raise  # a race lost (409) or a refusal: the caller is told as it is
        except Exception as exc:  # the store refused the turn: record that it failed
            raise await self._crashed(ctx, "turn %s could not be committed") from exc
        observe_stage("commit", str(ctx.session.kind), time.perf_counter() - started)
        handle.result = turn_view(ctx, "completed", state.version)
        handle.emit("done", {"turn": handle.result})

    async def _crashed(self, ctx: TurnContext, message: str) -> TurnCrashed:
        """Log an unexpected error (with its traceback; `message` is the template, the
        turn id its one argument), record the turn as failed, and give the error the
        client is shown (no internals in it)."""
        log.exception(message, ctx.turn_id)
        crashed = TurnCrashed(UNEXPECTED)
        await self._commit_quietly(ctx, [failed_event(ctx, crashed)])
        return crashed

    async def _commit_cancelled(self, handle: TurnHandle, ctx: TurnContext) -> None:
        handle.phase = Phase.COMMITTING
        version = await self._commit_quietly(ctx, [cancelled_event(ctx)])
        handle.result = turn_view(ctx, "cancelled", version)
        handle.emit("done", {"turn": handle.result})

    async def _commit_quietly(self, ctx: TurnContext, events: list[NewEvent]) -> int | None:
        """Record a turn that did not happen; losing that record to a race is fine."""
        try:
            state, _ = await self.repository.commit(ctx.session, events, ctx.metadata)
        except ConcurrencyConflict:
            log.info("turn %s outcome not recorded: the session moved on", ctx.turn_id)
            return None
        return state.version


def _timing_tokens(handle: TurnHandle, kind: str) -> Callable[[str, JSON], None]:
    """The turn's emit, noting how long its first token took and the gaps after."""
    clock = time.perf_counter
    last = clock()
    first, gap = True, True

    def emit(name: str, data: JSON) -> None:
        nonlocal last, first, gap
        if name == "token":
            now = clock()
            if first:
                observe_ttft(kind, now - last)
            elif gap:
                observe_inter_token(kind, now - last)
            last, first, gap = now, False, True
        elif name == "rewrite":
            gap = False  # the wait for a rewritten reply's start is not a gap in one
        handle.emit(name, data)

    return emit


def _turn_attributes(ctx: TurnContext) -> dict[str, str | int | float | bool]:
    return {
        tracing.OPERATION: "invoke_agent",
        tracing.CONVERSATION: ctx.session.id,
        "taleweaver.session.kind": str(ctx.session.kind),
        "taleweaver.turn.id": ctx.turn_id,
        "taleweaver.turn.number": ctx.number,
    }


def _observe(ctx: TurnContext, outcome: str) -> None:
    """A finished turn, counted: its outcome, tokens and what safety said."""
    observe_turn(str(ctx.session.kind), outcome, model=ctx.model_name, tokens=ctx.tokens)
    for direction, verdict in (("input", ctx.safety_in), ("output", ctx.safety_out)):
        if verdict.level != "safe" or verdict.crisis:
            crisis = verdict.crisis_level if verdict.crisis else None
            observe_safety(direction, verdict.level, verdict.categories, crisis)
