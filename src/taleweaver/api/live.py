"""One live-channel connection: JSON frames over a WebSocket, one task per source.

Server frames: `hello`, `event`, `replayed`, `turn.<name>` (`turn.start`,
`turn.token`, `turn.choices`, `turn.safety`, `turn.done`, `turn.error`, ...),
`presence`, `table`, `said`, `proposed`, `decided`, `ping`, `error`. Client frames: `pong`,
`typing`, and at a collaborative session's table `table.open`, `table.seat`,
`table.leave`, `table.policy`, `say`, `table.decide`. The README and
docs/collaboration.md list their fields.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from taleweaver.api.guard import load_storable
from taleweaver.api.problems import problem_body
from taleweaver.config import Settings
from taleweaver.domain import table as t
from taleweaver.domain.errors import InvalidInput, NotFound, TaleweaverError
from taleweaver.domain.events import JSON, RecordedEvent
from taleweaver.domain.json_values import Unstorable
from taleweaver.engine.live import LiveSessions, SessionWatch, seen_until
from taleweaver.engine.outcome import new_id
from taleweaver.realtime import Presence

log = logging.getLogger(__name__)

NO_HEARTBEAT = 4000  # close code: the client stopped answering pings


def event_frame(event: RecordedEvent) -> JSON:
    data = event.to_dict()
    data.pop("workspace_id", None)  # what GET .../events shows, no more
    return {"type": "event", "position": event.position, "event": data}


class LiveConnection:
    def __init__(
        self,
        websocket: WebSocket,
        live: LiveSessions,
        settings: Settings,
        *,
        session_id: str,
        user_id: str,
        workspace_id: str,
        may_play: Callable[[], Awaitable[None]],
        is_member: Callable[[str], Awaitable[bool]],
        names: Callable[[], Awaitable[dict[str, str]]] | None = None,
    ) -> None:
        self.websocket = websocket
        self.workspace_id = workspace_id
        self.may_play = may_play
        self.is_member = is_member
        self.names = names
        self._names: dict[str, str] = {}
        self.live = live
        self.session_id = session_id
        self.user_id = user_id
        self.connection = new_id()
        self.ping_s = settings.live_ping_seconds
        self.dead_after_s = settings.live_dead_after_seconds
        self.max_frame_bytes = settings.max_body_bytes  # a frame is a JSON body
        self.typing = False
        self.heard_at = time.monotonic()
        self._send_lock = asyncio.Lock()

    async def run(self, after: int, resume: tuple[str, int] | None) -> None:
        """Serve the connection until either side ends it."""
        await self.live.start()
        with (
            self.live.watch(self.session_id) as watch,
            self.live.feed.watch(t.table_stream(self.session_id)) as table_events,
        ):
            await self.live.here(self.session_id, self._presence())
            jobs: list[Awaitable[None]] = [
                self._events(watch, after),
                self._turns(watch, resume),
                self._heartbeat(watch),
                self._table(table_events),
                self._receive(),
            ]
            tasks = [asyncio.ensure_future(job) for job in jobs]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    error = task.exception()
                    if error is not None and not isinstance(error, WebSocketDisconnect):
                        log.warning("live connection %s ended: %r", self.connection, error)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await self.live.gone(self.session_id, self.connection)
        if self.websocket.application_state == WebSocketState.CONNECTED:
            # The client may be gone already (it dropped the connection): nothing to say.
            with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
                await self.websocket.close()

    async def send(self, frame: JSON) -> None:
        async with self._send_lock:
            await self.websocket.send_text(json.dumps(frame, separators=(",", ":")))

    def _presence(self) -> Presence:
        return Presence(self.connection, self.user_id, self.typing, seen_until(self.dead_after_s))

    async def _events(self, watch: SessionWatch, after: int) -> None:
        """Replay from the store after `after`, then live events, each position once."""
        await self.send(
            {
                "type": "hello",
                "session_id": self.session_id,
                "connection": self.connection,
                "user_id": self.user_id,
            }
        )
        last = after
        while batch := await self.live.replay(self.session_id, last):
            for event in batch:
                await self.send(event_frame(event))
                last = event.position
        await self.send({"type": "replayed", "position": last})
        while True:
            event = await watch.events.get()
            if event.position > last:
                await self.send(event_frame(event))
                last = event.position

    async def _turns(self, watch: SessionWatch, resume: tuple[str, int] | None) -> None:
        """The turn resumed (after its seq, even if it has ended since: its tail is
        still readable a while), the running turn (from its start), then each turn
        that starts while connected."""
        followed: set[str] = set()
        waiting: deque[str] = deque()
        if resume is not None:
            waiting.append(resume[0])
        current = await self.live.current_turn(self.session_id)
        if current is not None:
            waiting.append(current)
        while True:
            if not waiting:
                waiting.append(await watch.turns.get())
            turn_id = waiting.popleft()
            if turn_id in followed:
                continue
            followed.add(turn_id)
            after = resume[1] if resume is not None and resume[0] == turn_id else 0
            async for event in self.live.follow_turn(self.session_id, turn_id, after):
                await self.send(
                    {
                        "type": f"turn.{event['name']}",
                        "turn_id": turn_id,
                        "seq": event["seq"],
                        "data": event["data"],
                    }
                )

    async def _heartbeat(self, watch: SessionWatch) -> None:
        """Presence whenever it changes; a ping every `ping_s`; drop a silent client."""
        next_ping = time.monotonic() + self.ping_s
        watch.presence.set()
        while True:
            until_ping = max(0.0, next_ping - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(watch.presence.wait(), until_ping)
            if watch.presence.is_set():
                watch.presence.clear()
                here = await self.live.presence(self.session_id)
                names = await self._names_of({p.user_id for p in here})
                await self.send(
                    {
                        "type": "presence",
                        "here": [
                            {
                                "user_id": p.user_id,
                                "connection": p.connection,
                                "typing": p.typing,
                                "name": names.get(p.user_id),
                            }
                            for p in here
                        ],
                        "typing": sorted({p.user_id for p in here if p.typing}),
                    }
                )
            now = time.monotonic()
            if now < next_ping:
                continue
            if now - self.heard_at > self.dead_after_s:
                await self.websocket.close(NO_HEARTBEAT, "no answer to pings")
                return
            await self.send({"type": "ping", "at": time.time()})
            await self.live.here(self.session_id, self._presence(), changed=False)
            next_ping = now + self.ping_s

    async def _names_of(self, user_ids: set[str]) -> dict[str, str]:
        """Display names for presence, read again only when someone new is here."""
        if self.names is not None and not user_ids <= self._names.keys():
            self._names = await self.names()
            self._names.update({u: "" for u in user_ids - self._names.keys()})  # asked once
        return {u: name for u, name in self._names.items() if name}

    async def _table(self, changes: asyncio.Queue[RecordedEvent]) -> None:
        """The session's table as it is now, then again after every change to it."""
        while True:
            table = await self.live.tables.get(self.session_id)
            await self.send({"type": "table", "table": table.to_dict() | {"open": table.opened}})
            await changes.get()
            while not changes.empty():  # a burst of changes: one fresh table
                changes.get_nowait()

    async def _receive(self) -> None:
        while True:
            text = await self.websocket.receive_text()
            self.heard_at = time.monotonic()
            try:
                frame = self._read(text)
            except InvalidInput as exc:
                await self._refuse(exc)
                continue
            kind = frame.get("type") if isinstance(frame, dict) else None
            if kind == "pong":
                continue
            if kind == "typing" and isinstance(frame.get("typing"), bool):
                self.typing = frame["typing"]
                await self.live.here(self.session_id, self._presence())
                continue
            if isinstance(kind, str) and kind in TABLE_FRAMES:
                try:
                    await self.may_play()
                    await self._act(kind, frame)
                except TaleweaverError as exc:
                    await self._refuse(exc, kind)
                continue
            await self.send(
                {
                    "type": "error",
                    "title": "Invalid frame",
                    "detail": 'send {"type": "pong"}, {"type": "typing", "typing": true|false}'
                    f" or a table frame ({', '.join(sorted(TABLE_FRAMES))})",
                }
            )

    def _read(self, text: str) -> Any:
        """The frame's JSON (None when it is not JSON), held to what an HTTP JSON body
        is held to (api/guard.py): no NUL, lone surrogate, NaN or Infinity, no nesting
        past the cap, no more bytes than a body. Refused before anything reads it, so
        nothing downstream can store it, or recurse on it."""
        if len(text) > self.max_frame_bytes or len(text.encode()) > self.max_frame_bytes:
            raise InvalidInput(f"a frame is at most {self.max_frame_bytes} bytes")
        try:
            return load_storable(text)
        except Unstorable as exc:
            where = f"the frame's {exc.where}" if exc.where else "the frame"
            raise InvalidInput(f"{where} {exc.what}") from None
        except ValueError:
            return None

    async def _refuse(self, error: TaleweaverError, request: str | None = None) -> None:
        """An `error` frame for a refused frame; the channel stays open."""
        problem = problem_body(error)
        problem["problem"] = problem.pop("type")  # the frame's type is "error"
        frame: JSON = {"type": "error"} | ({"request": request} if request else {})
        await self.send(frame | problem)

    async def _act(self, kind: str, frame: dict[str, Any]) -> None:
        """One table frame: seating and policy (answered by the `table` frame that
        follows), an input (`said` or `proposed`), a decision (`decided`, with the
        turn it started when approved)."""
        tables, ws, sid, me = self.live.tables, self.workspace_id, self.session_id, self.user_id
        if kind == "table.open":
            await tables.open(ws, sid, me, t.parse_policy(frame.get("policy", "free")))
        elif kind == "table.seat":
            user_id = _text(frame, "user_id", default=me)
            if not await self.is_member(user_id):
                raise NotFound(f"no member {user_id} in this workspace to seat")
            role, character = (
                t.parse_role(frame.get("role")),
                t.parse_character(frame.get("character")),
            )
            await tables.seat(ws, sid, me, user_id, role, character)
        elif kind == "table.leave":
            await tables.leave(ws, sid, me, _text(frame, "user_id", default=me))
        elif kind == "table.policy":
            await tables.set_policy(ws, sid, me, t.parse_policy(frame.get("policy")))
        elif kind == "say":
            outcome = await tables.say(ws, sid, me, _text(frame, "text"))
            if isinstance(outcome, t.Proposal):
                await self.send({"type": "proposed", "proposal": outcome.to_dict()})
            else:
                await self.send({"type": "said", "turn_id": outcome.turn_id})
        elif kind == "table.decide":
            approved = frame.get("approved")
            if not isinstance(approved, bool):
                raise InvalidInput("approved must be true or false")
            proposal = _text(frame, "proposal")
            handle = await tables.decide(ws, sid, me, proposal, approved)
            decided: JSON = {"type": "decided", "proposal": proposal, "approved": approved}
            if handle is not None:
                decided["turn_id"] = handle.turn_id
            await self.send(decided)


TABLE_FRAMES = frozenset(
    {"table.open", "table.seat", "table.leave", "table.policy", "say", "table.decide"}
)


def _text(frame: dict[str, Any], name: str, *, default: str | None = None) -> str:
    value = frame.get(name, default)
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{name} must be a non-empty string")
    return value
