"""Ollama's native API: `/api/chat` streamed as NDJSON, `keep_alive`, model options,
`/api/embed` for embeddings and `/api/tags` for health."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import httpx

from taleweaver.domain.errors import ModelError, ModelUnavailable
from taleweaver.domain.prompt import ChatMessage
from taleweaver.llm.base import text_of
from taleweaver.llm.choice_schema import CHOICES_SCHEMA
from taleweaver.llm.http import body_message, error_for_status, make_client, redact
from taleweaver.llm.http import transport_error as translate
from taleweaver.llm.shape import current_shape
from taleweaver.llm.types import Embeddings, Finish, ReasoningDelta, StreamItem, Usage

__all__ = ["OLLAMA_URL", "OllamaEmbeddings", "OllamaModel", "list_ollama_models"]

OLLAMA_URL = "http://127.0.0.1:11434"


class OllamaModel:
    def __init__(
        self,
        *,
        model: str,
        base_url: str = OLLAMA_URL,
        client: httpx.AsyncClient | None = None,
        secrets: Sequence[str] = (),
        name: str | None = None,
        keep_alive: str | int | None = None,
        temperature: float | None = None,
        options: Mapping[str, Any] | None = None,
        timeout: float = 60.0,
        structured_output: bool = True,
    ) -> None:
        self.name = name or f"ollama:{model}"
        self.model = model
        self._secrets = tuple(secrets)
        self._keep_alive = keep_alive
        self._temperature = temperature
        self._options = dict(options or {})
        # `format` with a JSON schema (Ollama 0.5 on) where one is wanted.
        self.structured_choices = structured_output
        self._owns_client = client is None
        self._client = client or make_client(base_url, read_timeout=timeout)

    def _body(self, messages: Sequence[ChatMessage], max_tokens: int) -> dict[str, Any]:
        options = {**self._options, "num_predict": max_tokens}
        if self._temperature is not None:
            options["temperature"] = self._temperature
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [m.to_dict() for m in messages],
            "stream": True,
            "options": options,
        }
        if self._keep_alive is not None:
            body["keep_alive"] = self._keep_alive
        if self.structured_choices and current_shape().choices_only:
            body["format"] = CHOICES_SCHEMA
        return body

    async def generate(
        self, messages: Sequence[ChatMessage], *, max_tokens: int
    ) -> AsyncIterator[StreamItem]:
        body = self._body(messages, max_tokens)
        try:
            async with self._client.stream("POST", "api/chat", json=body) as response:
                if response.status_code >= 400:
                    raw = await response.aread()
                    raise error_for_status(
                        self.name, response.status_code, raw, response.headers, self._secrets
                    )
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    chunk = self._parse(line)
                    if "error" in chunk:
                        message = redact(body_message(json.dumps(chunk)), self._secrets)
                        raise ModelError(f"{self.name} reported an error: {message}")
                    message_part = chunk.get("message") or {}
                    if message_part.get("thinking"):
                        yield ReasoningDelta(str(message_part["thinking"]))
                    if message_part.get("content"):
                        yield str(message_part["content"])
                    if chunk.get("done"):
                        usage = Usage(
                            int(chunk.get("prompt_eval_count") or 0),
                            int(chunk.get("eval_count") or 0),
                        )
                        yield Finish(str(chunk.get("done_reason") or "stop"), usage)
                        return
        except httpx.HTTPError as exc:
            raise translate(self.name, exc, self._secrets) from exc
        raise ModelError(f"{self.name} ended the stream without a stop reason", retryable=True)

    def _parse(self, line: str) -> dict[str, Any]:
        try:
            chunk = json.loads(line)
        except ValueError:
            chunk = None
        if not isinstance(chunk, dict):
            shown = redact(repr(line[:100]), self._secrets)
            raise ModelError(f"{self.name} sent a malformed chunk: {shown}")
        return chunk

    def stream(self, messages: Sequence[ChatMessage], *, max_tokens: int) -> AsyncIterator[str]:
        return text_of(self.generate(messages, max_tokens=max_tokens))

    async def check(self) -> None:
        await list_ollama_models(self._client, self.name, self._secrets)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


async def list_ollama_models(
    client: httpx.AsyncClient, name: str, secrets: Sequence[str], within: float = 5.0
) -> list[str]:
    try:
        response = await client.get("api/tags", timeout=within)
    except httpx.HTTPError as exc:
        raise ModelUnavailable(translate(name, exc, secrets).detail) from exc
    if response.status_code >= 400:
        error = error_for_status(
            name, response.status_code, response.content, response.headers, secrets
        )
        raise ModelUnavailable(error.detail, status=response.status_code)
    try:
        models = response.json().get("models") or []
        return [str(m["name"]) for m in models if isinstance(m, dict) and "name" in m]
    except (ValueError, AttributeError):
        return []


class OllamaEmbeddings:
    """`POST /api/embed`: many texts in one request."""

    def __init__(
        self,
        *,
        client: httpx.AsyncClient,
        model: str,
        name: str | None = None,
        secrets: Sequence[str] = (),
        keep_alive: str | int | None = None,
    ) -> None:
        self.name = name or f"ollama:{model}"
        self.model = model
        self._client = client
        self._secrets = tuple(secrets)
        self._keep_alive = keep_alive

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        body: dict[str, Any] = {"model": self.model, "input": list(texts)}
        if self._keep_alive is not None:
            body["keep_alive"] = self._keep_alive
        try:
            response = await self._client.post("api/embed", json=body)
        except httpx.HTTPError as exc:
            raise translate(self.name, exc, self._secrets) from exc
        if response.status_code >= 400:
            raise error_for_status(
                self.name, response.status_code, response.content, response.headers, self._secrets
            )
        try:
            document = response.json()
            vectors = [[float(x) for x in row] for row in document["embeddings"]]
        except (ValueError, KeyError, TypeError) as exc:
            shown = redact(response.text[:200], self._secrets)
            raise ModelError(f"{self.name} sent malformed embeddings: {shown}") from exc
        if len(vectors) != len(texts):
            raise ModelError(f"{self.name} returned {len(vectors)} vectors for {len(texts)} texts")
        tokens = document.get("prompt_eval_count")
        return Embeddings(vectors, Usage(tokens, 0) if isinstance(tokens, int) else None)
