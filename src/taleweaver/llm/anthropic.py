"""Anthropic's Messages API, streamed: system prompt apart, typed events, stop reasons.

Plain `httpx` and `httpx-sse` rather than the SDK, so that this adapter shares
the others' client, error translation and redaction; the event shapes are those
documented for `POST /v1/messages` with `stream: true`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import httpx
from httpx_sse import EventSource, SSEError

from taleweaver.domain.errors import ModelError, ModelUnavailable
from taleweaver.domain.prompt import ChatMessage
from taleweaver.llm.base import text_of
from taleweaver.llm.http import (
    RETRYABLE_STATUS,
    error_for_status,
    make_client,
    redact,
    transport_error,
)
from taleweaver.llm.types import Finish, ReasoningDelta, StreamItem, Usage

__all__ = ["ANTHROPIC_URL", "AnthropicModel", "anthropic_headers", "anthropic_turns"]

ANTHROPIC_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"

# Error types Anthropic sends inside a stream, as the status they stand for.
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


def anthropic_headers(api_key: str | None, version: str = API_VERSION) -> dict[str, str]:
    headers = {"anthropic-version": version}
    if api_key:
        headers["x-api-key"] = api_key
    return headers


def anthropic_turns(messages: Sequence[ChatMessage]) -> tuple[str, list[dict[str, str]]]:
    """The system text, and the turns as the API wants them: alternating, user first."""
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    turns: list[dict[str, str]] = []
    for m in messages:
        if m.role == "system":
            continue
        if turns and turns[-1]["role"] == m.role:
            turns[-1]["content"] += "\n\n" + m.content
        else:
            turns.append({"role": m.role, "content": m.content})
    if not turns or turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": "(Begin.)"})
    return system, turns


class AnthropicModel:
    def __init__(
        self,
        *,
        model: str,
        api_key: str | None = None,
        base_url: str = ANTHROPIC_URL,
        client: httpx.AsyncClient | None = None,
        secrets: Sequence[str] = (),
        name: str | None = None,
        version: str = API_VERSION,
        temperature: float | None = None,
        options: Mapping[str, Any] | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.name = name or f"anthropic:{model}"
        self.model = model
        self._secrets = tuple(secrets) + ((api_key,) if api_key else ())
        self._temperature = temperature
        self._options = dict(options or {})
        self._owns_client = client is None
        if client is None:
            headers = anthropic_headers(api_key, version)
            client = make_client(base_url, headers=headers, read_timeout=timeout)
        self._client = client

    def _body(self, messages: Sequence[ChatMessage], max_tokens: int) -> dict[str, Any]:
        system, turns = anthropic_turns(messages)
        body: dict[str, Any] = {
            **self._options,
            "model": self.model,
            "max_tokens": max_tokens,
            "messages": turns,
            "stream": True,
        }
        if system:
            body["system"] = system
        if self._temperature is not None:
            body["temperature"] = self._temperature
        return body

    async def generate(
        self, messages: Sequence[ChatMessage], *, max_tokens: int
    ) -> AsyncIterator[StreamItem]:
        body = self._body(messages, max_tokens)
        headers = {"Accept": "text/event-stream"}
        try:
            async with self._client.stream(
                "POST", "v1/messages", json=body, headers=headers
            ) as response:
                if response.status_code >= 400:
                    raw = await response.aread()
                    raise error_for_status(
                        self.name, response.status_code, raw, response.headers, self._secrets
                    )
                if "text/event-stream" not in response.headers.get("content-type", ""):
                    for item in self._whole(await response.aread()):
                        yield item
                    return
                async for item in self._events(EventSource(response)):
                    yield item
        except httpx.HTTPError as exc:
            raise transport_error(self.name, exc, self._secrets) from exc
        except SSEError as exc:
            raise ModelError(f"{self.name} sent a broken event stream: {exc}") from exc

    async def _events(self, source: EventSource) -> AsyncIterator[StreamItem]:
        prompt_tokens = completion_tokens = 0
        stop_reason: str | None = None
        async for sse in source.aiter_sse():
            if not sse.data:
                continue
            event = self._parse(sse.data)
            kind = event.get("type") or sse.event
            if kind == "content_block_delta":
                delta = event.get("delta") or {}
                if delta.get("type") == "text_delta" and delta.get("text"):
                    yield str(delta["text"])
                elif delta.get("type") == "thinking_delta" and delta.get("thinking"):
                    yield ReasoningDelta(str(delta["thinking"]))
            elif kind == "message_start":
                usage = (event.get("message") or {}).get("usage") or {}
                prompt_tokens = _input_tokens(usage)
                completion_tokens = int(usage.get("output_tokens") or 0)
            elif kind == "message_delta":
                stop_reason = (event.get("delta") or {}).get("stop_reason") or stop_reason
                usage = event.get("usage") or {}
                completion_tokens = int(usage.get("output_tokens") or completion_tokens)
            elif kind == "message_stop":
                yield Finish(stop_reason or "end_turn", Usage(prompt_tokens, completion_tokens))
                return
            elif kind == "error":
                raise self._reported(event.get("error") or {})
        raise ModelError(f"{self.name} ended the stream without a stop reason", retryable=True)

    def _parse(self, data: str) -> dict[str, Any]:
        try:
            event = json.loads(data)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            shown = redact(repr(data[:100]), self._secrets)
            raise ModelError(f"{self.name} sent a malformed event: {shown}")
        return event

    def _reported(self, error: dict[str, Any]) -> ModelError:
        status = _ERROR_STATUS.get(str(error.get("type")))
        message = redact(str(error.get("message") or error.get("type") or error), self._secrets)
        return ModelError(
            f"{self.name} reported an error: {message}",
            status=status,
            retryable=status in RETRYABLE_STATUS,
        )

    def _whole(self, raw: bytes) -> list[StreamItem]:
        """A 200 that is not a stream: an error body, or a whole message."""
        document = self._parse(raw.decode("utf-8", "replace"))
        if document.get("type") == "error" or "error" in document:
            raise self._reported(document.get("error") or {})
        items: list[StreamItem] = []
        for block in document.get("content") or []:
            if block.get("type") == "thinking" and block.get("thinking"):
                items.append(ReasoningDelta(str(block["thinking"])))
            elif block.get("type") == "text" and block.get("text"):
                items.append(str(block["text"]))
        usage = document.get("usage") or {}
        tokens = Usage(_input_tokens(usage), int(usage.get("output_tokens") or 0))
        items.append(Finish(str(document.get("stop_reason") or "end_turn"), tokens))
        return items

    def stream(self, messages: Sequence[ChatMessage], *, max_tokens: int) -> AsyncIterator[str]:
        return text_of(self.generate(messages, max_tokens=max_tokens))

    async def check(self) -> None:
        try:
            response = await self._client.get("v1/models", timeout=5.0)
        except httpx.HTTPError as exc:
            raise ModelUnavailable(transport_error(self.name, exc, self._secrets).detail) from exc
        if response.status_code in (401, 403) or response.status_code >= 500:
            error = error_for_status(
                self.name, response.status_code, response.content, response.headers, self._secrets
            )
            raise ModelUnavailable(error.detail, status=response.status_code)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


def _input_tokens(usage: dict[str, Any]) -> int:
    """Every prompt token billed: plain, written to the cache, and read from it."""
    keys = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    return sum(int(usage.get(key) or 0) for key in keys)
