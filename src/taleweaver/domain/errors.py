"""The error tree every layer raises; transports map each class to one status.

TaleweaverError
 ├── Unauthorized        no valid credentials (401)
 ├── Forbidden           credentials valid, action not allowed (403)
 ├── TooManyRequests     rate limit or login lockout, with a retry delay (429)
 ├── NotFound            a thing the caller named does not exist (404)
 ├── Conflict            the state moved under the caller (409)
 │    ├── ConcurrencyConflict   a stale expected version on append
 │    └── AlreadyImported       an import matches something already there; choose what to do
 ├── InvalidInput        the request itself is wrong (422)
 ├── PayloadTooLarge     the request body is over the limit (413)
 ├── ModelError          the model failed while generating (502)
 │    └── ModelUnavailable      no model could be reached or loaded (503)
 │         └── ModelLoading      a local model is still loading (503, "loading")
 ├── BudgetExceeded      a spending limit stops further model calls (402)
 └── EncryptionError     a value encrypted at rest cannot be read or sealed (500)
      └── KeyMissing            its key is not in the key ring, or none is configured
"""

from __future__ import annotations


class TaleweaverError(Exception):
    """Base of every error Taleweaver raises on purpose."""

    title = "Error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Unauthorized(TaleweaverError):
    title = "Unauthorized"


class Forbidden(TaleweaverError):
    title = "Forbidden"


class TooManyRequests(TaleweaverError):
    title = "Too many requests"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = max(1, retry_after)


class NotFound(TaleweaverError):
    title = "Not found"


class Conflict(TaleweaverError):
    title = "Conflict"


class ConcurrencyConflict(Conflict):
    """An append expected a stream version that is no longer current."""

    title = "Concurrent modification"

    def __init__(self, stream_id: str, expected_version: int) -> None:
        super().__init__(
            f"stream {stream_id} moved past version {expected_version}; "
            "another turn or edit was committed first"
        )
        self.stream_id = stream_id
        self.expected_version = expected_version


class AlreadyImported(Conflict):
    """An import that matches an existing thing; the caller picks one of `choices`."""

    title = "Already imported"
    choices = ("update", "copy", "skip")

    def __init__(self, detail: str, existing: dict[str, object]) -> None:
        super().__init__(detail)
        self.existing = existing


class InvalidInput(TaleweaverError):
    title = "Invalid input"


class PayloadTooLarge(TaleweaverError):
    title = "Payload too large"


class ModelError(TaleweaverError):
    """A model call failed. `retryable`, `retry_after` (seconds) and `status` (the
    provider's HTTP status) tell the router whether trying again may help."""

    title = "Model error"

    def __init__(
        self,
        detail: str,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(detail)
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status


class ModelUnavailable(ModelError):
    title = "Model unavailable"


class ModelLoading(ModelUnavailable):
    title = "Model loading"


class BudgetExceeded(TaleweaverError):
    title = "Budget exceeded"


class EncryptionError(TaleweaverError):
    """A stored ciphertext failed its integrity check (tampered with, or moved from
    the row it was sealed for), or a value could not be encrypted."""

    title = "Encryption error"


class KeyMissing(EncryptionError):
    title = "Encryption key missing"
