"""Writing rolling summaries in the background, and finding the ones recall needs.

A pass over a session: mark stale what regenerated or edited turns replaced,
then write what is due, level by level (level-1 summaries from the messages,
higher ones from the level below). Passes run as asyncio tasks tracked here, one
at a time per session, so a turn never waits for them; a pass that fails is
logged and tried again on a later turn. When the model fails or says nothing
usable, an extractive summary stands in, marked as such, and the model is asked
again later (with backoff, up to `MAX_ATTEMPTS`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from taleweaver.config import SummarySettings
from taleweaver.domain.errors import NotFound, TaleweaverError
from taleweaver.domain.events import JSON
from taleweaver.domain.prompt import ChatMessage
from taleweaver.domain.summaries import (
    MAX_ATTEMPTS,
    PROMPT_VERSION,
    Exchange,
    IndexEntry,
    Known,
    Span,
    SummaryRow,
    clean_output,
    complete_spans,
    cover,
    due,
    extractive,
    extractive_of_summaries,
    level_prompt,
    max_chars,
    retry_delay,
    span_turns,
    turns_prompt,
)
from taleweaver.llm import CallScope, ChatModel, task_model
from taleweaver.memory.summaries.store import Draft, SessionInfo, SummaryStore
from taleweaver.store.queries import Queries

__all__ = ["IndexView", "ModelChoices", "Summaries", "Summarizer", "SummaryConfig"]

log = logging.getLogger(__name__)

# (workspace id, session id) -> the session's own model choices, {task: model alias}.
ModelChoices = Callable[[str, str], Awaitable[Mapping[str, str]]]

# How many spans one read and one write transaction take at a time.
BATCH = 10
# Recall's caches: summary indexes (checked against the session's generation on
# every read) and texts (a summary's text never changes: a rewrite is a new row).
_INDEX_CACHE = 256
_TEXT_CACHE = 4096
# Sessions whose last noticed turn is remembered (beyond it, the oldest are forgotten,
# which costs at most one extra pass each).
_SEEN_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class SummaryConfig:
    """Settings of the feature, from the environment (`from_settings`).

    TALEWEAVER_SUMMARIES: "off" stops writing new summaries (recall still uses the
    ones there are). TALEWEAVER_SUMMARY_CONCURRENCY: how many summaries the whole
    process may be asking models for at once (default 2), so that a burst of
    long sessions does not crowd out the narrator. TALEWEAVER_SUMMARY_RECALL_CHARS:
    how much of the prompt the summaries may take together (default 3000); past it
    each is shortened to its share, so the distant past stays in, condensed.
    """

    enabled: bool = True
    concurrency: int = 2
    recall_chars: int = 3000

    @classmethod
    def from_settings(cls, settings: SummarySettings) -> SummaryConfig:
        return cls(
            enabled=settings.summaries,
            concurrency=settings.summary_concurrency,
            recall_chars=settings.summary_recall_chars,
        )


class Summarizer:
    """Which model writes summaries: the router's summarize route (or the bare model
    standing in for the router), unless a model of its own is set here."""

    def __init__(self, model: ChatModel | None = None) -> None:
        self.model = model

    def bound(self, base: ChatModel, scope: CallScope) -> ChatModel:
        if self.model is not None:
            return self.model
        return task_model(base, "summarize", scope)


@dataclass(frozen=True, slots=True)
class IndexView:
    """A session's summary index, with what every turn asks of it worked out once."""

    generation: int
    entries: list[IndexEntry]
    by_span: dict[Span, IndexEntry]
    # Summaries per level, whether any is stale, and the earliest retry of a fallback.
    counts: dict[int, int]
    stale: bool
    next_retry: datetime | None

    @classmethod
    def of(cls, generation: int, entries: list[IndexEntry]) -> IndexView:
        counts: dict[int, int] = {}
        for entry in entries:
            counts[entry.span.level] = counts.get(entry.span.level, 0) + 1
        retries = [e.retry_at for e in entries if e.retry_at is not None]
        return cls(
            generation,
            entries,
            {e.span: e for e in entries},
            counts,
            any(e.stale for e in entries),
            min(retries, default=None),
        )

    def work_due(self, committed: int, now: datetime) -> bool:
        """Whether a pass would find anything to write (the same answer as `due`, by
        counting: only complete spans are ever written, so fewer means one missing)."""
        if self.stale or (self.next_retry is not None and self.next_retry <= now):
            return True
        level = 1
        while committed >= span_turns(level):
            if self.counts.get(level, 0) < committed // span_turns(level):
                return True
            level += 1
        return False


@dataclass(frozen=True, slots=True)
class _Job:
    """One pass over one session: what it read first, and who its model calls are for."""

    info: SessionInfo
    session_id: str
    scope: CallScope


@dataclass(frozen=True, slots=True)
class _Written:
    text: str
    model: str
    failure: str | None  # why the extractive fallback stands in, if it does


class Summaries:
    def __init__(
        self,
        store: SummaryStore,
        queries: Queries,
        model: Callable[[], ChatModel],
        *,
        summarizer: Summarizer | None = None,
        config: SummaryConfig | None = None,
        model_choices: ModelChoices | None = None,
    ) -> None:
        self.config = config or SummaryConfig.from_settings(SummarySettings.read())
        self.store = store
        self.queries = queries
        # Looked up at each call: the engine's model may be swapped after wiring.
        self.model = model
        self.summarizer = summarizer or Summarizer()
        # The session's own model choices ({task: model}), honoured for "summarize".
        self.model_choices = model_choices
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        # Per session: the last turn number noticed, and whether it may have been replaced.
        self._seen: dict[str, tuple[int, bool]] = {}
        self._closed = False
        self._calls = asyncio.Semaphore(self.config.concurrency)
        self._indexes: OrderedDict[tuple[str, str], IndexView] = OrderedDict()
        self._texts: OrderedDict[tuple[str, str], str] = OrderedDict()

    # --- scheduling -------------------------------------------------------------------

    def schedule(self, workspace_id: str, session_id: str) -> None:
        """Start a pass for the session, or ask the running one to go again."""
        if self._closed or not self.config.enabled:
            return
        if session_id in self._tasks:
            self._again.add(session_id)
            return
        self._tasks[session_id] = asyncio.create_task(
            self._run(workspace_id, session_id), name=f"summaries-{session_id}"
        )

    def notice(
        self, workspace_id: str, session_id: str, turn_number: int, index: IndexView
    ) -> None:
        """Called as a turn starts: schedule a pass when anything may be due.

        Due: a complete chunk with no summary, a stale summary, a fallback due for
        another try; or a turn number that did not move on (a regenerate or an
        edit, whose replaced turn is known only after it commits, hence the next
        turn looks again too).
        """
        seen = self._seen.get(session_id)
        last, suspect = seen if seen is not None else (-1, True)
        # A turn first seen here may itself be a regenerate: look again next turn.
        replaced = seen is None or turn_number <= last
        if seen is None and len(self._seen) >= _SEEN_LIMIT:
            del self._seen[next(iter(self._seen))]
        self._seen[session_id] = (turn_number, replaced)
        if replaced or suspect or index.work_due(turn_number - 1, datetime.now(UTC)):
            self.schedule(workspace_id, session_id)

    async def settle(self, session_id: str | None = None) -> None:
        """Wait until no pass is running (for one session, or any)."""
        while True:
            tasks = [t for s, t in self._tasks.items() if session_id in (None, s)]
            if not tasks:
                return
            await asyncio.gather(*tasks, return_exceptions=True)

    async def aclose(self, grace: float = 2.0) -> None:
        """Stop every pass (the process is going away); what was written stays.

        Passes stop by themselves at their next write; one still waiting on a model
        after `grace` seconds is cancelled.
        """
        self._closed = True
        tasks = list(self._tasks.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def closing(self) -> bool:
        return self._closed

    def running(self, session_id: str) -> bool:
        return session_id in self._tasks

    async def _run(self, workspace_id: str, session_id: str) -> None:
        try:
            while True:
                self._again.discard(session_id)
                try:
                    await self.run_pass(workspace_id, session_id)
                except asyncio.CancelledError:
                    raise
                except Exception:  # a pass must never take anything down; a later turn retries
                    log.exception("summarising session %s failed", session_id)
                if session_id not in self._again or self._closed:
                    return
        finally:
            self._tasks.pop(session_id, None)

    # --- a pass -----------------------------------------------------------------------

    async def run_pass(self, workspace_id: str, session_id: str) -> int:
        """Bring the session's summaries up to date; how many were written."""
        info = await self.store.session_info(workspace_id, session_id)
        if info is None:  # deleted (or never in this workspace)
            await self.store.forget(workspace_id, session_id)
            return 0
        if info.turn_count < span_turns(1):
            return 0
        # Only summaries already written can have been made from a replaced turn.
        if await self.store.generation(workspace_id, session_id) > 0:
            checked = await self.store.checked_version(workspace_id, session_id)
            if info.version > checked:
                replaced = await self.store.replaced_turns(workspace_id, session_id, checked)
                await self.store.mark_replaced(workspace_id, session_id, replaced, info.version)
        job = _Job(info, session_id, await self._scope(workspace_id, session_id))
        written = 0
        level = 1
        while info.turn_count >= span_turns(level) and not self.closing():
            now = datetime.now(UTC)
            index = await self.store.index(workspace_id, session_id)
            known = {e.span: e.known(now) for e in index}
            todo = due(level, info.turn_count, known)
            previous = {e.span: e for e in index}
            for start in range(0, len(todo), BATCH):
                if self.closing():  # stop between writes, not in the middle of one
                    break
                batch = todo[start : start + BATCH]
                if level == 1:
                    drafts = await self._from_turns(job, batch, previous)
                else:
                    drafts = await self._from_summaries(job, batch, index, previous)
                await self.store.save(workspace_id, session_id, drafts)
                written += len(drafts)
            if not complete_spans(level + 1, info.turn_count):
                break
            level += 1
        return written

    async def _scope(self, workspace_id: str, session_id: str) -> CallScope:
        choices: Mapping[str, str] = {}
        if self.model_choices is not None:
            try:
                choices = await self.model_choices(workspace_id, session_id)
            except TaleweaverError as exc:  # a bad choice must not stop the summaries
                log.warning("session %s model choices ignored: %s", session_id, exc.detail)
        return CallScope(workspace_id=workspace_id, session_id=session_id, overrides=choices)

    async def _from_turns(
        self,
        job: _Job,
        spans: Sequence[Span],
        previous: dict[Span, IndexEntry],
    ) -> list[Draft]:
        by_turn: dict[int, dict[str, JSON]] = {}
        for first, last in _runs(spans):
            rows = await self.queries.messages(
                job.session_id, after_turn=first - 1, limit=2 * (last - first + 1)
            )
            for row in rows:
                if row["turn_number"] <= last:
                    by_turn.setdefault(row["turn_number"], {})[row["role"]] = row
        drafts = []
        for span in spans:
            turns = [(n, by_turn[n]) for n in range(span.first, span.last + 1) if n in by_turn]
            exchanges = [
                Exchange(
                    n,
                    roles["player"]["content"] if "player" in roles else None,
                    roles["narrator"]["content"] if "narrator" in roles else "",
                )
                for n, roles in turns
            ]
            sources: list[JSON] = [
                {"kind": "turn", "number": n, "message_ids": [m["id"] for m in roles.values()]}
                for n, roles in turns
            ]
            written = await self._write(job, turns_prompt(span, exchanges), span)
            fallback = extractive(span, exchanges)
            drafts.append(self._draft(job.info, span, written, fallback, sources, previous))
        return drafts

    async def _from_summaries(
        self,
        job: _Job,
        spans: Sequence[Span],
        index: Sequence[IndexEntry],
        previous: dict[Span, IndexEntry],
    ) -> list[Draft]:
        by_span = {e.span: e for e in index}
        wanted = [by_span[child] for span in spans for child in span.children()]
        texts = await self.store.texts(job.info.workspace_id, [e.id for e in wanted])
        drafts = []
        for span in spans:
            kids = [by_span[child] for child in span.children()]
            if any(k.id not in texts for k in kids):
                continue  # a child was rewritten meanwhile (another replica): next pass
            parts = [(k.span, texts[k.id]) for k in kids]
            sources: list[JSON] = [
                {
                    "kind": "summary",
                    "id": k.id,
                    "level": k.span.level,
                    "first_turn": k.span.first,
                    "last_turn": k.span.last,
                }
                for k in kids
            ]
            written = await self._write(job, level_prompt(span, parts), span)
            fallback = extractive_of_summaries(span, parts)
            drafts.append(self._draft(job.info, span, written, fallback, sources, previous))
        return drafts

    async def _write(self, job: _Job, prompt: list[ChatMessage], span: Span) -> _Written:
        tokens = max_chars(span.level) // 3
        name = "summarizer"
        try:
            model = self.summarizer.bound(self.model(), job.scope)
            name = model.name
            async with self._calls:
                pieces = [piece async for piece in model.stream(prompt, max_tokens=tokens)]
            name = model.name  # a router's bound model names the one that served
        except TaleweaverError as exc:  # model failures, budgets, a bad model choice
            log.warning("summary %s of session %s failed: %s", span.ref, job.session_id, exc)
            return _Written("", name, f"model failed: {type(exc).__name__}: {exc.detail}")
        text = clean_output("".join(pieces), span.level)
        if text is None:
            return _Written("", name, "the model's output was empty or unusable")
        return _Written(text, name, None)

    @staticmethod
    def _draft(
        info: SessionInfo,
        span: Span,
        written: _Written,
        fallback: str,
        sources: list[JSON],
        previous: dict[Span, IndexEntry],
    ) -> Draft:
        if written.failure is None:
            return Draft(
                span, written.text, "model", written.model, PROMPT_VERSION, info.version, sources
            )
        before = previous.get(span)
        attempts = before.attempts + 1 if before is not None and before.attempts else 1
        retry_at = None
        if attempts < MAX_ATTEMPTS:
            retry_at = datetime.now(UTC) + timedelta(seconds=retry_delay(attempts))
        return Draft(
            span,
            fallback,
            "extractive",
            "extractive",
            PROMPT_VERSION,
            info.version,
            sources,
            fallback_reason=written.failure,
            attempts=attempts,
            retry_at=retry_at,
        )

    # --- reading ----------------------------------------------------------------------

    async def current_index(self, workspace_id: str, session_id: str) -> IndexView:
        """The session's summary index, from the cache while its generation holds."""
        # Generation first: a write landing between the two reads then only costs a
        # re-read next time, never a stale index kept as current.
        generation = await self.store.generation(workspace_id, session_id)
        if generation == 0:
            return IndexView.of(0, [])
        key = (workspace_id, session_id)
        cached = self._indexes.get(key)
        if cached is not None and cached.generation == generation:
            self._indexes.move_to_end(key)
            return cached
        view = IndexView.of(generation, await self.store.index(workspace_id, session_id))
        self._indexes[key] = view
        while len(self._indexes) > _INDEX_CACHE:
            self._indexes.popitem(last=False)
        return view

    async def recall(
        self, workspace_id: str, before: int, index: IndexView
    ) -> list[tuple[IndexEntry, str]]:
        """The summaries covering turns before `before`, oldest first, with texts."""
        known = [Known(e.span, stale=e.stale) for e in index.entries]
        chosen = [index.by_span[s] for s in cover(known, before)]
        missing = [e.id for e in chosen if (workspace_id, e.id) not in self._texts]
        for summary_id, opened in (await self.store.texts(workspace_id, missing)).items():
            self._texts[(workspace_id, summary_id)] = opened
        found = []
        for entry in chosen:
            text = self._texts.get((workspace_id, entry.id))
            if text is not None:
                self._texts.move_to_end((workspace_id, entry.id))
                found.append((entry, text))
        while len(self._texts) > _TEXT_CACHE:
            self._texts.popitem(last=False)
        return found

    async def page(
        self, workspace_id: str, session_id: str, *, level: int | None, limit: int, offset: int
    ) -> tuple[list[SummaryRow], int]:
        await self._require_session(workspace_id, session_id)
        return await self.store.page(
            workspace_id, session_id, level=level, limit=limit, offset=offset
        )

    async def rebuild(self, workspace_id: str, session_id: str) -> int:
        """Mark every summary of the session stale and start redoing them; how many."""
        await self._require_session(workspace_id, session_id)
        marked = await self.store.mark_all_stale(workspace_id, session_id)
        self.schedule(workspace_id, session_id)
        return marked

    async def _require_session(self, workspace_id: str, session_id: str) -> None:
        if await self.queries.session(workspace_id, session_id) is None:
            raise NotFound(f"session {session_id} not found")


def _runs(spans: Sequence[Span]) -> list[tuple[int, int]]:
    """The spans' turns as contiguous (first, last) runs: one read each."""
    runs: list[tuple[int, int]] = []
    for span in spans:
        if runs and runs[-1][1] + 1 == span.first:
            runs[-1] = (runs[-1][0], span.last)
        else:
            runs.append((span.first, span.last))
    return runs
