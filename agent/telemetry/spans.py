"""Span helpers shared by every capability: errors recorded on spans are redacted first."""

from __future__ import annotations

from opentelemetry.trace import Span, StatusCode

from agent.telemetry.redact import redactor


def mark_error(span: Span, error_type: str, message: str) -> None:
    """Set ERROR status, `error.type` and a redacted exception event on `span`.

    The SDK's own exception recording would put the raw message (which may quote a password a
    server echoed) on the span: spans that can see such errors record them through this instead.
    """
    text = redactor.text(message)
    span.set_attribute("error.type", error_type)
    span.add_event("exception", {"exception.type": error_type, "exception.message": text})
    span.set_status(StatusCode.ERROR, text)
