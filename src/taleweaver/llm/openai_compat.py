"""A minimal OpenAI-compatible chat completions adapter (streaming).

Covers OpenAI, OpenRouter, Ollama's /v1, vLLM, LM Studio, KoboldCpp and llama.cpp
server. The full router (fallbacks, retries, accounting) is built on top of this.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence

import httpx
from httpx_sse import SSEError, aconnect_sse

from taleweaver.domain.errors import ModelError, ModelUnavailable
from taleweaver.domain.prompt import ChatMessage


class OpenAICompatibleModel:
    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 60.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.name = f"openai:{model}"
        self.model = model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = client or httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=10.0),
        )

    async def stream(
        self, messages: Sequence[ChatMessage], *, max_tokens: int
    ) -> AsyncIterator[str]:
        body = {
            "model": self.model,
            "messages": [m.to_dict() for m in messages],
            "max_tokens": max_tokens,
            "stream": True,
        }
        try:
            # Leaving this block (finished, failed or cancelled) closes the
            # response, which closes the upstream connection and stops generation.
            async with aconnect_sse(self._client, "POST", "chat/completions", json=body) as events:
                if events.response.status_code >= 400:
                    await events.response.aread()
                    raise ModelError(
                        f"{self.name} answered HTTP {events.response.status_code}: "
                        f"{events.response.text[:200]}"
                    )
                async for sse in events.aiter_sse():
                    if sse.data.strip() == "[DONE]":
                        return
                    text = _delta_text(sse.data, self.name)
                    if text:
                        yield text
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise ModelUnavailable(f"{self.name} is unreachable: {exc}") from exc
        except (httpx.HTTPError, SSEError) as exc:
            raise ModelError(f"{self.name} stream failed: {exc}") from exc

    async def check(self) -> None:
        try:
            response = await self._client.get("models", timeout=5.0)
        except httpx.HTTPError as exc:
            raise ModelUnavailable(f"{self.name} is unreachable: {exc}") from exc
        if response.status_code in (401, 403):
            status = response.status_code
            raise ModelUnavailable(f"{self.name} rejected the API key (HTTP {status})")
        if response.status_code >= 500:
            raise ModelUnavailable(f"{self.name} answered HTTP {response.status_code}")

    async def aclose(self) -> None:
        await self._client.aclose()


def _delta_text(data: str, name: str) -> str:
    try:
        chunk = json.loads(data)
    except json.JSONDecodeError as exc:
        raise ModelError(f"{name} sent a malformed chunk: {data[:100]!r}") from exc
    if "error" in chunk:
        raise ModelError(f"{name} reported an error: {str(chunk['error'])[:200]}")
    choices = chunk.get("choices") or []
    if not choices:
        return ""
    delta = choices[0].get("delta") or {}
    content = delta.get("content")
    return content if isinstance(content, str) else ""
