"""Error tracking: unexpected errors to a Sentry-compatible server (Sentry, GlitchTip,
Bugsink...) when `TALEWEAVER_SENTRY_DSN` is set; nothing is loaded when it is not.

The same rule as for traces: nothing anyone wrote leaves the server. An event keeps
the exception's type, the stack (without local variables), the route and the
correlation and trace ids; exception messages, log arguments, request bodies,
query strings, cookies and credentials are removed before it is sent.
"""

from __future__ import annotations

import logging
from typing import Any

from taleweaver.observability.tracing import current_trace_id

log = logging.getLogger(__name__)

REDACTED = "[redacted]"
_KEPT_HEADERS = frozenset({"user-agent", "content-type", "content-length", "x-request-id"})


def configure_error_tracking(dsn: str | None, *, release: str, environment: str | None) -> bool:
    """Start sending unexpected errors to `dsn`; True when it is on."""
    if not dsn:
        return False
    import sentry_sdk

    sentry_sdk.init(
        dsn=dsn,
        release=f"taleweaver@{release}",
        environment=environment,
        include_local_variables=False,
        max_request_body_size="never",
        traces_sample_rate=0.0,  # traces go to OpenTelemetry
        before_send=redact_event,
        before_breadcrumb=redact_breadcrumb,
    )
    log.info("sending unexpected errors to the configured error tracker")
    return True


def redact_event(event: Any, _hint: Any) -> Any:
    for exception in (event.get("exception") or {}).get("values") or ():
        if exception.get("value"):
            exception["value"] = REDACTED
        for frame in (exception.get("stacktrace") or {}).get("frames") or ():
            frame.pop("vars", None)
    entry = event.get("logentry")
    if isinstance(entry, dict):
        entry.pop("params", None)
        entry.pop("formatted", None)  # the message template stays, its values do not
    if "message" in event:
        event["message"] = (entry or {}).get("message", REDACTED)
    request = event.get("request")
    if isinstance(request, dict):
        for key in ("data", "cookies", "query_string", "env"):
            request.pop(key, None)
        headers = request.get("headers")
        if isinstance(headers, dict):
            request["headers"] = {k: v for k, v in headers.items() if k.lower() in _KEPT_HEADERS}
    event.pop("user", None)
    trace_id = current_trace_id()
    if trace_id is not None:
        event.setdefault("tags", {})["trace_id"] = trace_id
    extra = event.get("extra")
    if isinstance(extra, dict):  # a log record's own fields: keep only the ids
        event["extra"] = {k: v for k, v in extra.items() if k.endswith("_id") and k != "user_id"}
    return event


def redact_breadcrumb(crumb: Any, _hint: Any) -> Any:
    if crumb.get("category") in {"httplib", "http"}:
        data = crumb.get("data")
        if isinstance(data, dict):
            data.pop("http.query", None)
            data.pop("http.fragment", None)
        return crumb
    crumb.pop("data", None)
    if crumb.get("message"):
        crumb["message"] = REDACTED
    return crumb
