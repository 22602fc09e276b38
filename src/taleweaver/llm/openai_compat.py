"""OpenAI-compatible chat completions, streamed, plus `/models` and `/embeddings`.

Covers OpenAI, OpenRouter, Ollama's /v1, vLLM, LM Studio, KoboldCpp, llama.cpp
server and text-generation-webui: they all speak this protocol, each with its
quirks (see `openai_sse`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import httpx

from taleweaver.domain.errors import ModelError, ModelUnavailable
from taleweaver.domain.prompt import ChatMessage
from taleweaver.llm.base import text_of
from taleweaver.llm.choice_schema import CHOICES_SCHEMA
from taleweaver.llm.http import error_for_status, make_client, redact, transport_error
from taleweaver.llm.openai_sse import openai_stream, pick_chat
from taleweaver.llm.shape import current_shape
from taleweaver.llm.types import Embeddings, StreamItem, Usage

__all__ = [
    "OpenAICompatibleModel",
    "OpenAIEmbeddings",
    "OpenAIServerModel",
    "bearer",
    "list_openai_models",
]


def bearer(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class OpenAIServerModel(ABC):
    """What every model on an OpenAI-compatible server shares: its client, the
    secrets kept out of errors, sampling options, and check/close/stream.

    Built alone (`base_url`, `api_key`) it owns its client; built by a provider it
    shares the provider's `client` and is told the `secrets` to keep out of errors.
    Subclasses say which endpoint they speak by implementing `generate`.
    """

    name_prefix = "openai"

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        client: httpx.AsyncClient | None = None,
        secrets: Sequence[str] = (),
        name: str | None = None,
        include_usage: bool = False,
        temperature: float | None = None,
        options: Mapping[str, Any] | None = None,
        structured_output: bool = True,
    ) -> None:
        self.name = name or f"{self.name_prefix}:{model}"
        self.model = model
        self._secrets = tuple(secrets) + ((api_key,) if api_key else ())
        self._include_usage = include_usage
        self._temperature = temperature
        self._options = dict(options or {})
        # Whether this server is asked to decode under a JSON schema where one is wanted.
        self._structured = structured_output
        self._owns_client = client is None
        if client is None:
            if base_url is None:
                raise ValueError(f"{type(self).__name__} needs a base_url or a client")
            client = make_client(base_url, headers=bearer(api_key), read_timeout=timeout)
        self._client = client

    @abstractmethod
    def generate(
        self, messages: Sequence[ChatMessage], *, max_tokens: int
    ) -> AsyncIterator[StreamItem]:
        """Stream the reply's pieces, usage and finish from this server's endpoint."""

    def stream(self, messages: Sequence[ChatMessage], *, max_tokens: int) -> AsyncIterator[str]:
        return text_of(self.generate(messages, max_tokens=max_tokens))

    async def check(self) -> None:
        await list_openai_models(self._client, self.name, self._secrets)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


# Structured output as OpenAI, vLLM, llama.cpp server, LM Studio and Ollama's /v1 take it.
_CHOICES_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "choices", "strict": True, "schema": CHOICES_SCHEMA},
}


class OpenAICompatibleModel(OpenAIServerModel):
    """One chat model on an OpenAI-compatible server (`/chat/completions`)."""

    @property
    def structured_choices(self) -> bool:
        return self._structured

    def generate(
        self, messages: Sequence[ChatMessage], *, max_tokens: int
    ) -> AsyncIterator[StreamItem]:
        body: dict[str, Any] = {
            **self._options,
            "model": self.model,
            "messages": [m.to_dict() for m in messages],
            "max_tokens": max_tokens,
            "stream": True,
        }
        if self._temperature is not None:
            body["temperature"] = self._temperature
        if self._include_usage:
            body["stream_options"] = {"include_usage": True}
        if self._structured and current_shape().choices_only:
            body["response_format"] = _CHOICES_FORMAT
        return openai_stream(
            self._client,
            "chat/completions",
            body,
            name=self.name,
            secrets=self._secrets,
            pick=pick_chat,
        )


async def list_openai_models(
    client: httpx.AsyncClient, name: str, secrets: Sequence[str], within: float = 5.0
) -> list[str]:
    """The ids `/models` lists; `ModelUnavailable` when the server is down or refuses us."""
    try:
        response = await client.get("models", timeout=within)
    except httpx.HTTPError as exc:
        raise ModelUnavailable(transport_error(name, exc, secrets).detail) from exc
    if response.status_code in (401, 403) or response.status_code >= 500:
        error = error_for_status(
            name, response.status_code, response.content, response.headers, secrets
        )
        raise ModelUnavailable(error.detail, status=response.status_code)
    try:
        data = response.json().get("data") or []
        return [str(entry["id"]) for entry in data if isinstance(entry, dict) and "id" in entry]
    except (ValueError, AttributeError):
        return []


class OpenAIEmbeddings:
    """`POST /embeddings` on an OpenAI-compatible server."""

    def __init__(
        self,
        *,
        client: httpx.AsyncClient,
        model: str,
        name: str | None = None,
        secrets: Sequence[str] = (),
    ) -> None:
        self.name = name or f"openai:{model}"
        self.model = model
        self._client = client
        self._secrets = tuple(secrets)

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        try:
            response = await self._client.post(
                "embeddings", json={"model": self.model, "input": list(texts)}
            )
        except httpx.HTTPError as exc:
            raise transport_error(self.name, exc, self._secrets) from exc
        if response.status_code >= 400:
            raise error_for_status(
                self.name, response.status_code, response.content, response.headers, self._secrets
            )
        try:
            document = response.json()
            rows = sorted(document["data"], key=lambda row: row.get("index", 0))
            vectors = [[float(x) for x in row["embedding"]] for row in rows]
        except (ValueError, KeyError, TypeError) as exc:
            shown = redact(response.text[:200], self._secrets)
            raise ModelError(f"{self.name} sent malformed embeddings: {shown}") from exc
        if len(vectors) != len(texts):
            raise ModelError(f"{self.name} returned {len(vectors)} vectors for {len(texts)} texts")
        usage = document.get("usage") or {}
        tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        return Embeddings(vectors, Usage(tokens, 0) if isinstance(tokens, int) else None)
