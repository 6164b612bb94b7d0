"""HTTP interfaces of the degradation engine: the Alertmanager webhook and the admin API.

Anything that changes state needs credentials compared in constant time; bodies are capped;
a request that fails validation changes nothing and gets a 4xx saying why; the webhook answers
2xx only after the change is stored and 503 when it cannot be (Alertmanager retries 5xx).
No request gets a 5xx for what it holds: headers are compared as the bytes that were sent,
bodies are read to their decoded end, and a change the engine cannot apply is refused alone.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import os
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

import orjson
import structlog
from aiohttp import web
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode, Tracer
from pydantic import ValidationError

from agent.config.model import DegradationSettings
from agent.degradation.alerts import WebhookPayload
from agent.degradation.engine import Actor, DegradationEngine
from agent.degradation.errors import (
    ConflictError,
    FlagError,
    FlagStoreError,
    RequestError,
    StoreUnavailableError,
)
from agent.degradation.flags import FlagDefinition, Flags
from agent.degradation.levels import Level
from agent.degradation.state import State
from agent.server.openapi import document
from agent.server.requests import EvaluateRequest, PinRequest, UnpinRequest
from agent.telemetry.spans import mark_error

log = structlog.get_logger("vigil.degradation.api")

ENGINE = web.AppKey("degradation_engine", DegradationEngine)
FLAGS = web.AppKey("flags", Flags)


class DegradationApi:
    """Route handlers bound to one engine, one flag set and the configured credentials."""

    def __init__(
        self,
        settings: DegradationSettings,
        engine: DegradationEngine,
        flags: Flags,
        tracer: Tracer | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.flags = flags
        self.tracer = tracer or trace.get_tracer("vigil.degradation")
        hook = settings.webhook
        self._bearer = _secret(hook.bearer_token_env)
        password = _secret(hook.basic_password_env)
        self._basic = (
            (_wire(hook.basic_username), password)
            if hook.basic_username and password is not None
            else None
        )
        self._admin = _secret(settings.admin_token_env)
        self.webhook_outcomes: Counter[str] = Counter()

    def register(self, app: web.Application) -> None:
        """Add the routes to `app`."""
        app[ENGINE] = self.engine
        app[FLAGS] = self.flags
        r = app.router
        r.add_post("/webhooks/alertmanager", self.webhook)
        r.add_get("/api/v1/degradation", self.status)
        r.add_post("/api/v1/degradation/pin", self.pin)
        r.add_post("/api/v1/degradation/unpin", self.unpin)
        r.add_get("/api/v1/audit", self.audit)
        r.add_get("/api/v1/flags", self.list_flags)
        r.add_get("/api/v1/flags/{key}", self.get_flag)
        r.add_put("/api/v1/flags/{key}", self.put_flag)
        r.add_delete("/api/v1/flags/{key}", self.delete_flag)
        r.add_post("/api/v1/flags/{key}/evaluate", self.evaluate_flag)
        r.add_get("/api/v1/openapi.json", self.openapi)

    # --- webhook -------------------------------------------------------------------------
    async def webhook(self, request: web.Request) -> web.Response:
        """Apply an Alertmanager v4 notification."""
        with self.tracer.start_as_current_span(
            "POST /webhooks/alertmanager",
            kind=SpanKind.SERVER,
            attributes={"http.request.method": "POST", "http.route": "/webhooks/alertmanager"},
            record_exception=False,  # a bug's message may quote a secret: mark_error redacts
            set_status_on_exception=False,
        ) as span:
            try:
                response = await self._webhook(request, span)
            except Exception as exc:
                mark_error(span, type(exc).__qualname__, str(exc))
                raise
            span.set_attribute("http.response.status_code", response.status)
            if response.status >= 500:
                span.set_status(StatusCode.ERROR)
            return response

    async def _webhook(self, request: web.Request, span: trace.Span) -> web.Response:
        if not self._webhook_authorized(request):
            return self._refuse(
                "unauthorized",
                401,
                "missing or wrong credentials",
                {"WWW-Authenticate": 'Bearer realm="vigil"'},
            )
        try:
            body = await _read_capped(request, self.settings.webhook.max_body_bytes)
        except BodyError as exc:
            if exc.status == 413:
                return self._refuse("too_large", 413, "body exceeds webhook.max_body_bytes")
            return self._refuse("invalid", exc.status, exc.message)
        try:
            payload = WebhookPayload.model_validate_json(body)
        except ValidationError as exc:
            return self._refuse(
                "invalid", 400, "not an Alertmanager v4 payload", details=_errors(exc)
            )
        trace_id = _trace_id(span)
        try:
            step = await self.engine.receive(
                payload, Actor("alertmanager", payload.receiver), trace_id
            )
        except (StoreUnavailableError, ConflictError) as exc:
            return self._refuse("unavailable", 503, f"state store unavailable: {exc}")
        except RequestError as exc:  # logged with its traceback by the engine
            return self._refuse("invalid", 400, f"notification not applied: {exc}")
        self._transition_span(step.transition, step.state)
        self.webhook_outcomes["accepted"] += 1
        level = step.state.level.label
        span.set_attributes(
            {
                "vigil.alerts.count": len(payload.alerts),
                "vigil.alerts.truncated": payload.truncatedAlerts,
                "vigil.degradation.level": level,
            }
        )
        changes: dict[str, int] = {}
        for change in step.changes:
            changes[change.value] = changes.get(change.value, 0) + 1
        answer = {"level": level, "version": step.state.version, "changes": changes}
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    def _transition_span(self, transition: Any, state: State) -> None:
        if transition is None:
            return
        before, after, cause = transition
        # A child of the webhook's span, ended at once: nothing runs inside it.
        self.tracer.start_span(
            "degradation transition",
            attributes={
                "vigil.degradation.from": before.label,
                "vigil.degradation.to": after.label,
                "vigil.degradation.cause": cause.value,
                "vigil.degradation.version": state.version,
            },
        ).end()

    def _refuse(
        self,
        outcome: str,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        details: list[str] | None = None,
    ) -> web.Response:
        self.webhook_outcomes[outcome] += 1
        body: dict[str, Any] = {"error": message}
        if details:
            body["details"] = details
        return web.json_response(body, status=status, headers=headers)

    def _webhook_authorized(self, request: web.Request) -> bool:
        scheme, credentials = _authorization(request.headers)
        if self._bearer is not None and scheme == b"bearer":
            return hmac.compare_digest(credentials, self._bearer)
        if self._basic is not None and scheme == b"basic":
            try:
                decoded = base64.b64decode(credentials, validate=True)
            except (binascii.Error, ValueError):
                return False
            user, colon, password = decoded.partition(b":")
            want_user, want_password = self._basic
            # Both compared whatever the first gave, so the time says nothing about which failed.
            ok_user = hmac.compare_digest(user, want_user)
            ok_password = hmac.compare_digest(password, want_password)
            return bool(colon) and ok_user and ok_password
        return False

    # --- admin ---------------------------------------------------------------------------
    def _admin_authorized(self, request: web.Request) -> bool:
        if self._admin is None:
            return False
        scheme, token = _authorization(request.headers)
        return scheme == b"bearer" and hmac.compare_digest(token, self._admin)

    def _need_admin(self, request: web.Request) -> None:
        if not self._admin_authorized(request):
            detail = "admin API writes need degradation.admin_token_env and its Bearer token"
            raise web.HTTPUnauthorized(
                text=json.dumps({"error": detail}),
                content_type="application/json",
                headers={"WWW-Authenticate": 'Bearer realm="vigil-admin"'},
            )

    async def status(self, request: web.Request) -> web.Response:
        """The effective level, why, the pin and the active alerts."""
        return web.json_response(status_json(self.engine))

    async def pin(self, request: web.Request) -> web.Response:
        """Pin the level (token required)."""
        self._need_admin(request)
        body = await _model(request, PinRequest)
        try:
            await self.engine.set_pin(
                Level.parse(body.level),
                Actor("user", body.actor),
                body.reason,
                body.ttl_seconds,
                _trace_id(None),
            )
        except (StoreUnavailableError, ConflictError) as exc:
            raise _unavailable(exc) from None
        except RequestError as exc:
            raise _bad_request(str(exc)) from None
        return web.json_response(status_json(self.engine))

    async def unpin(self, request: web.Request) -> web.Response:
        """Remove the pin (token required)."""
        self._need_admin(request)
        body = await _model(request, UnpinRequest)
        try:
            await self.engine.clear_pin(Actor("user", body.actor), body.reason, _trace_id(None))
        except (StoreUnavailableError, ConflictError) as exc:
            raise _unavailable(exc) from None
        except RequestError as exc:
            raise _bad_request(str(exc)) from None
        return web.json_response(status_json(self.engine))

    async def audit(self, request: web.Request) -> web.Response:
        """The newest audit entries (`?limit=`, default 100, at most 10,000)."""
        raw = request.query.get("limit", "100")
        # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
        if not _LIMIT.fullmatch(raw) or not 1 <= int(raw) <= 10_000:
            raise _bad_request("limit must be an integer from 1 to 10000")
        try:
            entries = await self.engine.audit(int(raw))
        except StoreUnavailableError as exc:
            raise _unavailable(exc) from None
        return web.json_response({"entries": entries})

    async def list_flags(self, request: web.Request) -> web.Response:
        """Every flag definition."""
        return web.json_response(
            {"flags": [d.model_dump(mode="json") for d in self.flags.definitions]}
        )

    async def get_flag(self, request: web.Request) -> web.Response:
        """One flag definition."""
        found = self.flags.get(request.match_info["key"])
        if found is None:
            raise web.HTTPNotFound(
                text=json.dumps({"error": "no such flag"}), content_type="application/json"
            )
        return web.json_response(found.model_dump(mode="json"))

    async def put_flag(self, request: web.Request) -> web.Response:
        """Create or replace a flag (token required); cycles and unknown parents are refused."""
        self._need_admin(request)
        actor = _actor(request)
        key = request.match_info["key"]
        raw = await _json(request)
        if isinstance(raw, dict):
            raw.setdefault("key", key)
        try:
            definition = FlagDefinition.model_validate(raw)
        except ValidationError as exc:
            raise _bad_request("invalid flag definition", _errors(exc)) from None
        if definition.key != key:
            raise _bad_request("the body's key differs from the URL's")
        try:
            diff = await asyncio.to_thread(self.flags.set, definition)
        except FlagError as exc:
            raise _bad_request(str(exc)) from None
        except FlagStoreError as exc:
            raise _unavailable(exc) from None
        await self._audit_flags("flag_set", diff, actor)
        return web.json_response(definition.model_dump(mode="json"))

    async def delete_flag(self, request: web.Request) -> web.Response:
        """Delete a flag (token required); refused while another flag depends on it."""
        self._need_admin(request)
        actor = _actor(request)
        key = request.match_info["key"]
        if self.flags.get(key) is None:
            raise web.HTTPNotFound(
                text=json.dumps({"error": "no such flag"}), content_type="application/json"
            )
        try:
            diff = await asyncio.to_thread(self.flags.delete, key)
        except FlagError as exc:
            raise _bad_request(str(exc)) from None
        except FlagStoreError as exc:
            raise _unavailable(exc) from None
        await self._audit_flags("flag_deleted", diff, actor)
        return web.json_response({"deleted": key})

    async def evaluate_flag(self, request: web.Request) -> web.Response:
        """Evaluate a flag for a context at the current level."""
        body = await _model(request, EvaluateRequest)
        result = self.flags.evaluate(request.match_info["key"], body.context)
        return web.json_response(
            {
                "flag": result.flag,
                "value": result.value,
                "variant": result.variant,
                "reason": result.reason.value,
                "error": result.error.value if result.error else None,
                "level": self.engine.level.label,
            }
        )

    async def _audit_flags(self, action: str, diff: Any, actor: str) -> None:
        if not diff:
            return
        try:
            await self._record_flags(action, diff, actor)
        except (StoreUnavailableError, ConflictError) as exc:
            # The flag change itself is stored; say loudly that its audit entry is missing.
            log.error(
                "flag change stored but not audited",
                action=action,
                error=str(exc),
                flags=list(diff.keys),
            )

    async def _record_flags(self, action: str, diff: Any, actor: str) -> None:
        await self.engine.record(
            action,
            {"flags": list(diff.keys), "before": dict(diff.before), "after": dict(diff.after)},
            Actor("user", actor),
        )

    async def openapi(self, request: web.Request) -> web.Response:
        """The OpenAPI document of the webhook and the admin API."""
        return web.json_response(document())


_ACTOR = re.compile(r"[\w.@:+-]{1,100}")
_LIMIT = re.compile(r"[0-9]{1,5}")


def _actor(request: web.Request) -> str:
    """Who makes a flag write: the `actor` query parameter (default `api`), a plain name."""
    actor = request.query.get("actor", "api")
    if not _ACTOR.fullmatch(actor):  # fullmatch: `$` would let a trailing newline through
        raise _bad_request("actor must be 1-100 letters, digits or . _ @ : + -")
    return actor


def status_json(engine: DegradationEngine) -> dict[str, Any]:
    """The engine's state as the API and the CLI show it."""
    state = engine.state
    pin = state.pin
    return {
        "level": state.level.label,
        "since": state.levels.since,
        "version": state.version,
        "pinned": pin is not None,
        "pin": None
        if pin is None
        else {
            "level": pin.level.label,
            "actor": pin.actor,
            "reason": pin.reason,
            "set_at": pin.set_at,
            "expires_at": pin.expires_at,
        },
        "suppressed": state.suppressed.value if state.suppressed else None,
        "flags_off": sorted(state.flags_off),
        "reasons": [
            {
                "fingerprint": c.fingerprint,
                "alertname": c.alertname,
                "rule": c.rule,
                "level": c.level.label,
            }
            for c in state.reasons
        ],
        "active_alerts": [
            {"fingerprint": a.fingerprint, "labels": dict(a.labels), "starts_at": a.starts_at}
            for a in state.book.active.values()
        ],
        "stale_seconds": engine.staleness(),
    }


def _secret(variable: str | None) -> bytes | None:
    """The credential in environment variable `variable`, as bytes; None when unset or empty."""
    # An empty credential would match an empty header: treat it as no credential at all.
    value = os.environ.get(variable) if variable else None
    return _wire(value) if value else None


def _wire(text: str) -> bytes:
    """`text` as the bytes it was read from: aiohttp decodes header bytes (and Python the
    environment) as UTF-8 with surrogateescape, which this undoes; it never raises."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no decoder made: bytes no credential can equal
        return text.encode("utf-8", "surrogatepass")


def _authorization(headers: Mapping[str, str]) -> tuple[bytes, bytes]:
    """The `Authorization` header's scheme (lowercased) and credentials, as the bytes sent.

    Bytes, not text: a header may hold any bytes, and comparing them as sent needs no decoding
    that could fail. The scheme is lowercased as ASCII only, as RFC 9110 compares it.
    """
    scheme, _, credentials = _wire(headers.get("Authorization", "")).partition(b" ")
    return scheme.lower(), credentials.strip()


def _trace_id(span: trace.Span | None) -> str | None:
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


async def _read_capped(request: web.Request, limit: int) -> bytes:
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


async def _body(request: web.Request) -> bytes:
    try:
        body = await _read_capped(request, _ADMIN_BODY_BYTES)
    except BodyError as exc:
        raise _http_error(exc) from None
    return body or b"{}"


async def _json(request: web.Request) -> Any:
    # orjson, not json: it refuses lone surrogates (which no UTF-8 file can store), NaN and
    # integers past 64 bits, and bounds nesting, all as ValueError.
    try:
        return orjson.loads(await _body(request))
    except (ValueError, RecursionError):
        raise _bad_request("body is not JSON (or nested too deeply)") from None


async def _model(request: web.Request, model: type[Any]) -> Any:
    # Validated from the JSON text in strict mode: the types the OpenAPI document promises.
    body = await _body(request)
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise _bad_request("invalid request body", _errors(exc)) from None


def _errors(exc: ValidationError) -> list[str]:
    return [
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:20]
    ]


_ADMIN_BODY_BYTES = 256 * 1024


def _bad_request(message: str, details: list[str] | None = None) -> web.HTTPBadRequest:
    body: dict[str, Any] = {"error": message}
    if details:
        body["details"] = details
    return web.HTTPBadRequest(text=json.dumps(body), content_type="application/json")


def _http_error(exc: BodyError) -> web.HTTPException:
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


def _unavailable(exc: Exception) -> web.HTTPServiceUnavailable:
    return web.HTTPServiceUnavailable(
        text=json.dumps({"error": f"state store unavailable: {exc}"}),
        content_type="application/json",
    )
