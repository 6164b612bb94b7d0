"""Request plumbing of the agent's HTTP APIs: credentials as the bytes sent, bodies read to their
decoded end under a cap, and the JSON error answers.

Nothing here raises past its caller for what a request holds: a header may carry any bytes, a
body any coding, and each becomes a 4xx with a message saying why.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web
from opentelemetry import trace
from pydantic import ValidationError


def secret_bytes(variable: str | None) -> bytes | None:
    """The credential in environment variable `variable`, as bytes; None when unset or empty."""
    # An empty credential would match an empty header: treat it as no credential at all.
    value = os.environ.get(variable) if variable else None
    return wire(value) if value else None


def wire(text: str) -> bytes:
    """`text` as the bytes it was read from: aiohttp decodes header bytes (and Python the
    environment) as UTF-8 with surrogateescape, which this undoes; it never raises."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no decoder made: bytes no credential can equal
        return text.encode("utf-8", "surrogatepass")


def authorization(headers: Mapping[str, str]) -> tuple[bytes, bytes]:
    """The `Authorization` header's scheme (lowercased) and credentials, as the bytes sent.

    Bytes, not text: a header may hold any bytes, and comparing them as sent needs no decoding
    that could fail. The scheme is lowercased as ASCII only, as RFC 9110 compares it.
    """
    scheme, _, credentials = wire(headers.get("Authorization", "")).partition(b" ")
    return scheme.lower(), credentials.strip()


def trace_id_of(span: trace.Span | None) -> str | None:
    """The trace id of `span` (or of the current span) as 32 hex digits; None outside a trace."""
    context = (span or trace.get_current_span()).get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


class BodyError(Exception):
    """A request body that cannot be read: too large (413), in an unknown encoding (415), or
    not decodable in the one it names (400)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


DECODED = frozenset({"gzip", "deflate", "br", "zstd"})
"""The content codings aiohttp decodes before a handler reads the body (`br` and `zstd` only
with their optional packages installed; without them aiohttp itself answers 400)."""


def _coding(request: web.Request) -> str:
    """The body's content coding: `identity`, or one of DECODED (decoded by aiohttp).

    BodyError 415 for anything else, including several codings at once: aiohttp would pass such
    a body on undecoded, and reading it as JSON would give a misleading 400.
    """
    values = request.headers.getall("Content-Encoding", [])
    if not values:
        return "identity"
    value = values[0].strip()
    # The same test aiohttp's parser makes to decide whether to decode (ASCII, then lowercase).
    coding = value.lower() if value.isascii() else value
    if len(values) == 1 and (coding in DECODED or coding in ("", "identity")):
        return coding or "identity"
    raise BodyError(
        415, "Content-Encoding must be one of identity, gzip, deflate (or br, zstd if installed)"
    )


async def read_capped(request: web.Request, limit: int) -> bytes:
    """The whole body, at most `limit` bytes once decoded; BodyError otherwise.

    A compressed body is decoded by aiohttp as it is read, and its Content-Length counts the
    compressed bytes: it is read to its end, and the cap applies to the decoded size, so a
    small "gzip bomb" is refused with 413 after reading just past the cap, not inflated whole.
    """
    coding = _coding(request)
    length = request.content_length if coding == "identity" else None
    try:
        if length is not None:
            if length > limit:
                raise BodyError(413, f"body exceeds {limit} bytes")
            try:  # the whole declared body, however many segments it came in
                return await request.content.readexactly(length)
            except asyncio.IncompleteReadError as exc:  # the client gave up: judge what came
                return exc.partial
        # Read to the end: one read() returns only what has arrived, and a body split over TCP
        # segments would be judged on its first part (a 400 that Alertmanager never retries).
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise BodyError(413, f"body exceeds {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    except web.RequestPayloadError:  # a corrupt gzip stream, a broken chunked body
        what = "read" if coding == "identity" else f"decoded as {coding}"
        raise BodyError(400, f"body cannot be {what}") from None


async def read_body(request: web.Request) -> bytes:
    """An admin request's body, at most 256 KiB decoded (`{}` when empty); HTTP errors otherwise."""
    try:
        body = await read_capped(request, _ADMIN_BODY_BYTES)
    except BodyError as exc:
        raise http_error(exc) from None
    return body or b"{}"


async def read_json(request: web.Request) -> Any:
    """An admin request's body parsed as JSON; 400 when it is not JSON."""
    # orjson, not json: it refuses lone surrogates (which no UTF-8 file can store), NaN and
    # integers past 64 bits, and bounds nesting, all as ValueError.
    try:
        return orjson.loads(await read_body(request))
    except (ValueError, RecursionError):
        raise bad_request("body is not JSON (or nested too deeply)") from None


async def read_model(request: web.Request, model: type[Any]) -> Any:
    """An admin request's body validated by `model`; 400 naming each problem otherwise."""
    # Validated from the JSON text in strict mode: the types the OpenAPI document promises.
    body = await read_body(request)
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise bad_request("invalid request body", validation_errors(exc)) from None


def validation_errors(exc: ValidationError) -> list[str]:
    """Up to 20 `path: message` lines of a validation error."""
    return [
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:20]
    ]


_ADMIN_BODY_BYTES = 256 * 1024


def bad_request(message: str, details: list[str] | None = None) -> web.HTTPBadRequest:
    """A 400 answer with `message` (and `details`) as JSON."""
    body: dict[str, Any] = {"error": message}
    if details:
        body["details"] = details
    return web.HTTPBadRequest(text=json.dumps(body), content_type="application/json")


def http_error(exc: BodyError) -> web.HTTPException:
    """The admin API's answer to a body that cannot be read (413, 415 or 400)."""
    body = json.dumps({"error": exc.message})
    if exc.status == 413:
        return web.HTTPRequestEntityTooLarge(
            max_size=_ADMIN_BODY_BYTES,
            actual_size=_ADMIN_BODY_BYTES + 1,
            text=body,
            content_type="application/json",
        )
    if exc.status == 415:
        return web.HTTPUnsupportedMediaType(text=body, content_type="application/json")
    return web.HTTPBadRequest(text=body, content_type="application/json")


def unavailable(exc: Exception) -> web.HTTPServiceUnavailable:
    """A 503 answer: the state store cannot take the change now (clients retry)."""
    return web.HTTPServiceUnavailable(
        text=json.dumps({"error": f"state store unavailable: {exc}"}),
        content_type="application/json",
    )
