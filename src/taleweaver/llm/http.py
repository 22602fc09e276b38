"""What every HTTP adapter shares: its client, and translating failures into ours.

Provider and transport errors become `ModelError` (or `ModelUnavailable` when
nothing could be reached) here, once, with what the router needs to decide on
a retry: the status, whether trying again may help, and how long the provider
asked us to wait. Secrets never reach an error message: every detail is passed
through `redact` with the adapter's secrets.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Iterable, Mapping

import httpx

from taleweaver.domain.errors import ModelError, ModelUnavailable

__all__ = [
    "RETRYABLE_STATUS",
    "body_message",
    "error_for_status",
    "make_client",
    "redact",
    "retry_after",
    "transport_error",
]

# Rate limits, timeouts and server-side trouble (529: Anthropic's "overloaded").
RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})
_SHOWN_BODY = 300


def make_client(
    base_url: str,
    *,
    headers: Mapping[str, str] | None = None,
    connect_timeout: float = 10.0,
    read_timeout: float | None = 60.0,
) -> httpx.AsyncClient:
    """A pooled client for one provider. The read timeout is a backstop; the router
    enforces first-token, idle and total deadlines itself."""
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/") + "/",
        headers=dict(headers or {}),
        timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
    )


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def retry_after(headers: httpx.Headers) -> float | None:
    """Seconds the provider asked us to wait: `retry-after-ms` (OpenAI) or
    `Retry-After` as seconds or an HTTP date."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def body_message(body: bytes | str) -> str:
    """The human part of an error body: `error.message`, `error` or the text itself."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        document = json.loads(text)
    except ValueError:
        return text.strip()[:_SHOWN_BODY]
    if isinstance(document, dict):
        error = document.get("error", document)
        if isinstance(error, dict):
            message = error.get("message") or error.get("type")
            if message:
                return str(message)[:_SHOWN_BODY]
        elif isinstance(error, str):
            return error[:_SHOWN_BODY]
    return text.strip()[:_SHOWN_BODY]


def error_for_status(
    name: str, status: int, body: bytes | str, headers: httpx.Headers, secrets: Iterable[str]
) -> ModelError:
    message = redact(body_message(body), secrets)
    detail = f"{name} answered HTTP {status}: {message}"
    if status in (401, 403):
        detail = f"{name} rejected the credentials (HTTP {status}): {message}"
    return ModelError(
        detail,
        status=status,
        retryable=status in RETRYABLE_STATUS,
        retry_after=retry_after(headers),
    )


def transport_error(name: str, exc: httpx.HTTPError, secrets: Iterable[str]) -> ModelError:
    """A transport failure as ours: unreachable, dropped, or too slow."""
    reason = redact(str(exc) or type(exc).__name__, secrets)
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return ModelUnavailable(f"{name} is unreachable: {reason}")
    if isinstance(exc, httpx.TimeoutException):
        return ModelError(f"{name} timed out: {reason}", retryable=True)
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return ModelError(f"{name} dropped the connection: {reason}", retryable=True)
    return ModelError(f"{name} request failed: {reason}")
