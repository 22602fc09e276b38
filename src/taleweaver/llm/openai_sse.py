"""Reading an OpenAI-style completion stream (chat or text) into stream items.

Shared by the chat and text-completion adapters. Tolerates what real servers
send: keep-alive comments, chunks with no choices, usage in a trailing chunk,
reasoning in `reasoning_content` or `reasoning`, an error object mid-stream, a
200 with an error body, and a plain JSON reply from servers that ignore
`stream: true`. A stream that stops before `[DONE]` or a finish reason is an error.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import Any

import httpx
from httpx_sse import EventSource, SSEError

from taleweaver.domain.errors import ModelError
from taleweaver.llm.http import RETRYABLE_STATUS, body_message, error_for_status, redact
from taleweaver.llm.http import transport_error as translate
from taleweaver.llm.types import Finish, ReasoningDelta, StreamItem, Usage

__all__ = ["Pick", "openai_stream", "pick_chat", "pick_text"]

# A choice's (text, reasoning): `delta` in a chunk, `message` in a whole reply.
Pick = Callable[[dict[str, Any]], tuple[Any, Any]]

_SSE_HEADERS = {"Accept": "text/event-stream", "Cache-Control": "no-store"}


def pick_chat(choice: dict[str, Any]) -> tuple[Any, Any]:
    part = choice.get("delta") or choice.get("message") or {}
    if "reasoning_content" in part or "reasoning" in part:
        return part.get("content"), part.get("reasoning_content") or part.get("reasoning")
    return part.get("content"), None


def pick_text(choice: dict[str, Any]) -> tuple[Any, Any]:
    return choice.get("text"), None


async def openai_stream(
    client: httpx.AsyncClient,
    path: str,
    body: dict[str, Any],
    *,
    name: str,
    secrets: Iterable[str],
    pick: Pick,
) -> AsyncGenerator[StreamItem, None]:
    secrets = tuple(secrets)
    try:
        # Leaving this block (finished, failed or cancelled) closes the response,
        # which closes the upstream connection and stops the generation.
        async with client.stream("POST", path, json=body, headers=_SSE_HEADERS) as response:
            if response.status_code >= 400:
                raw = await response.aread()
                raise error_for_status(name, response.status_code, raw, response.headers, secrets)
            if "text/event-stream" not in response.headers.get("content-type", ""):
                for item in _whole_reply(await response.aread(), name, secrets, pick):
                    yield item
                return
            reason: str | None = None
            usage: Usage | None = None
            done = False
            # Runs once a token: kept to plain lookups.
            async for sse in EventSource(response).aiter_sse():
                data = sse.data
                if not data:
                    continue
                if data[0] != "{" and data.strip() == "[DONE]":
                    done = True
                    break
                try:
                    chunk = json.loads(data)
                except ValueError:
                    chunk = None
                if type(chunk) is not dict:
                    chunk = _parse(data, name, secrets)  # raises, saying what came
                if "error" in chunk:
                    raise _reported(chunk["error"], name, secrets)
                if "usage" in chunk:
                    usage = _usage(chunk["usage"]) or usage
                choices = chunk.get("choices")
                if not choices:
                    if sse.event == "error":
                        raise _reported(chunk, name, secrets)
                    continue
                choice = choices[0]
                text, reasoning = pick(choice)
                if reasoning and isinstance(reasoning, str):
                    yield ReasoningDelta(reasoning)
                if text and type(text) is str:
                    yield text
                if choice.get("finish_reason"):
                    reason = str(choice["finish_reason"])
            if reason is None and not done:
                raise ModelError(f"{name} ended the stream without a stop reason", retryable=True)
            yield Finish(reason or "stop", usage)
    except httpx.HTTPError as exc:
        raise translate(name, exc, secrets) from exc
    except SSEError as exc:
        raise ModelError(f"{name} sent a broken event stream: {exc}") from exc


def _parse(data: str, name: str, secrets: tuple[str, ...]) -> dict[str, Any]:
    try:
        chunk = json.loads(data)
    except ValueError:
        chunk = None
    if not isinstance(chunk, dict):
        shown = redact(repr(data[:100]), secrets)
        raise ModelError(f"{name} sent a malformed chunk: {shown}")
    return chunk


def _reported(error: Any, name: str, secrets: tuple[str, ...]) -> ModelError:
    """An error object inside a 200 response (OpenRouter puts the real status in `code`)."""
    message = redact(
        body_message(json.dumps(error) if not isinstance(error, str) else error), secrets
    )
    code = error.get("code") if isinstance(error, dict) else None
    status = code if isinstance(code, int) else None
    return ModelError(
        f"{name} reported an error: {message}",
        status=status,
        retryable=status in RETRYABLE_STATUS,
    )


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    prompt, completion = raw.get("prompt_tokens"), raw.get("completion_tokens")
    if not isinstance(prompt, int) and not isinstance(completion, int):
        return None
    return Usage(
        prompt if isinstance(prompt, int) else 0,
        completion if isinstance(completion, int) else 0,
    )


def _whole_reply(raw: bytes, name: str, secrets: tuple[str, ...], pick: Pick) -> list[StreamItem]:
    """A 200 that is not an event stream: an error body, or a non-streamed completion."""
    document = _parse(raw.decode("utf-8", "replace"), name, secrets)
    if "error" in document:
        raise _reported(document["error"], name, secrets)
    choices = document.get("choices")
    if not choices or not isinstance(choices[0], dict):
        shown = redact(body_message(raw), secrets)
        raise ModelError(f"{name} answered 200 without a completion: {shown}")
    text, reasoning = pick(choices[0])
    items: list[StreamItem] = []
    if reasoning and isinstance(reasoning, str):
        items.append(ReasoningDelta(reasoning))
    if text and isinstance(text, str):
        items.append(text)
    reason = choices[0].get("finish_reason") or "stop"
    items.append(Finish(str(reason), _usage(document.get("usage"))))
    return items
