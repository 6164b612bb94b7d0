"""The degradation engine's admin API: level, pin and unpin, the audit trail, feature flags and
their segments.

Reads need nothing; anything that changes state needs the admin token, compared in constant time
as the bytes sent; a request that fails validation changes nothing and gets a 4xx saying why;
a change the store cannot take now gets 503. The Alertmanager webhook is `webhook.py`; request
reading and error answers are `plumbing.py`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any, TypeVar

import structlog
from aiohttp import web
from opentelemetry import trace
from opentelemetry.trace import Tracer
from pydantic import ValidationError

from agent.config.model import DegradationSettings
from agent.degradation.audit import Actor
from agent.degradation.engine import DegradationEngine
from agent.degradation.errors import (
    ConflictError,
    FlagError,
    FlagStoreError,
    QueryError,
    RequestError,
    StoreUnavailableError,
)
from agent.degradation.flags import FlagDefinition, FlagDiff, Flags, Segment
from agent.degradation.levels import Level
from agent.server.auth import AdminAuth, Principal
from agent.server.backup_api import BACKUP_API
from agent.server.openapi import document
from agent.server.plumbing import (
    bad_request,
    read_json,
    read_model,
    trace_id_of,
    unavailable,
    validation_errors,
)
from agent.server.requests import EvaluateRequest, PinRequest, UnpinRequest, audit_query
from agent.server.webhook import AlertmanagerWebhook

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
        auth: AdminAuth | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.flags = flags
        self.tracer = tracer or trace.get_tracer("vigil.degradation")
        self.hook = AlertmanagerWebhook(settings, engine, self.tracer)
        self.webhook_outcomes = self.hook.outcomes  # read by the metrics
        # One check for every admin API: the agent hands the same one to the backups API.
        self.auth = auth or AdminAuth(settings.admin_token_env)

    def register(self, app: web.Application) -> None:
        """Add the routes to `app`."""
        app[ENGINE] = self.engine
        app[FLAGS] = self.flags
        r = app.router
        r.add_post("/webhooks/alertmanager", self.hook.webhook)
        r.add_get("/api/v1/degradation", self.status)
        r.add_post("/api/v1/degradation/pin", self.pin)
        r.add_post("/api/v1/degradation/unpin", self.unpin)
        r.add_get("/api/v1/audit", self.audit)
        r.add_get("/api/v1/flags", self.list_flags)
        r.add_get("/api/v1/flags/{key}", self.get_flag)
        r.add_put("/api/v1/flags/{key}", self.put_flag)
        r.add_delete("/api/v1/flags/{key}", self.delete_flag)
        r.add_post("/api/v1/flags/{key}/evaluate", self.evaluate_flag)
        r.add_get("/api/v1/segments", self.list_segments)
        r.add_get("/api/v1/segments/{name}", self.get_segment)
        r.add_put("/api/v1/segments/{name}", self.put_segment)
        r.add_delete("/api/v1/segments/{name}", self.delete_segment)
        r.add_get("/api/v1/openapi.json", self.openapi)

    def _need_admin(self, request: web.Request) -> Principal:
        return self.auth.authorize(request)

    async def status(self, request: web.Request) -> web.Response:
        """The effective level, why, the pin and the active alerts."""
        return web.json_response(status_json(self.engine))

    async def pin(self, request: web.Request) -> web.Response:
        """Pin the level (token required)."""
        principal = self._need_admin(request)
        body = await read_model(request, PinRequest)
        actor = _pin_actor(principal, body)
        try:
            await self.engine.set_pin(
                Level.parse(body.level),
                Actor("user", actor),
                body.reason,
                body.ttl_seconds,
                trace_id_of(None),
            )
        except (StoreUnavailableError, ConflictError) as exc:
            raise unavailable(exc) from None
        except RequestError as exc:
            raise bad_request(str(exc)) from None
        return web.json_response(status_json(self.engine))

    async def unpin(self, request: web.Request) -> web.Response:
        """Remove the pin (token required)."""
        principal = self._need_admin(request)
        body = await read_model(request, UnpinRequest)
        actor = _pin_actor(principal, body)
        try:
            await self.engine.clear_pin(Actor("user", actor), body.reason, trace_id_of(None))
        except (StoreUnavailableError, ConflictError) as exc:
            raise unavailable(exc) from None
        except RequestError as exc:
            raise bad_request(str(exc)) from None
        return web.json_response(status_json(self.engine))

    async def audit(self, request: web.Request) -> web.Response:
        """Audit entries, newest first, filtered and paged (`requests.audit_query`)."""
        try:
            query = audit_query(request.query)
            page = await self.engine.history(query)
        except (ValueError, QueryError) as exc:
            raise bad_request(str(exc)) from None
        except StoreUnavailableError as exc:
            raise unavailable(exc) from None
        return web.json_response({"entries": page.entries, "next_cursor": page.next_cursor})

    async def list_flags(self, request: web.Request) -> web.Response:
        """Every flag definition."""
        return web.json_response(
            {"flags": [d.model_dump(mode="json") for d in self.flags.definitions]}
        )

    async def get_flag(self, request: web.Request) -> web.Response:
        """One flag definition."""
        found = self.flags.get(request.match_info["key"])
        if found is None:
            raise _not_found("flag")
        return web.json_response(found.model_dump(mode="json"))

    async def put_flag(self, request: web.Request) -> web.Response:
        """Create or replace a flag (token required); cycles and unknown parents are refused."""
        actor = self._need_admin(request).acting_as(request.query.get("actor"))
        definition = await _named_body(request, FlagDefinition, "key", "flag definition")
        diff = await _written(self.flags.set(definition))
        await self._audit_flags("flag_set", diff, actor)
        return web.json_response(definition.model_dump(mode="json"))

    async def delete_flag(self, request: web.Request) -> web.Response:
        """Delete a flag (token required); refused while another flag depends on it."""
        actor = self._need_admin(request).acting_as(request.query.get("actor"))
        key = request.match_info["key"]
        if self.flags.get(key) is None:
            raise _not_found("flag")
        diff = await _written(self.flags.delete(key))
        await self._audit_flags("flag_deleted", diff, actor)
        return web.json_response({"deleted": key})

    async def evaluate_flag(self, request: web.Request) -> web.Response:
        """Evaluate a flag for a context at the current level."""
        body = await read_model(request, EvaluateRequest)
        result = self.flags.evaluate(request.match_info["key"], body.context)
        return web.json_response(
            {
                "flag": result.flag,
                "value": result.value,
                "variant": result.variant,
                "payload": None if result.payload is None else result.payload.model_dump(),
                "reason": result.reason.value,
                "error": result.error.value if result.error else None,
                "level": self.engine.level.label,
            }
        )

    async def list_segments(self, request: web.Request) -> web.Response:
        """Every segment, and the flags naming each."""
        segments = self.flags.segments
        return web.json_response(
            {
                "segments": [s.model_dump(mode="json") for s in segments],
                "used_by": {s.name: list(self.flags.naming(s.name)) for s in segments},
            }
        )

    async def get_segment(self, request: web.Request) -> web.Response:
        """One segment."""
        found = self.flags.segment(request.match_info["name"])
        if found is None:
            raise _not_found("segment")
        return web.json_response(found.model_dump(mode="json"))

    async def put_segment(self, request: web.Request) -> web.Response:
        """Create or replace a segment (token required): every flag naming it answers by it."""
        actor = self._need_admin(request).acting_as(request.query.get("actor"))
        segment = await _named_body(request, Segment, "name", "segment")
        diff = await _written(self.flags.set_segment(segment))
        await self._audit_flags("segment_set", diff, actor, segments=True)
        return web.json_response(segment.model_dump(mode="json"))

    async def delete_segment(self, request: web.Request) -> web.Response:
        """Delete a segment (token required); refused while a flag names it."""
        actor = self._need_admin(request).acting_as(request.query.get("actor"))
        name = request.match_info["name"]
        if self.flags.segment(name) is None:
            raise _not_found("segment")
        diff = await _written(self.flags.delete_segment(name))
        await self._audit_flags("segment_deleted", diff, actor, segments=True)
        return web.json_response({"deleted": name})

    async def _audit_flags(
        self, action: str, diff: FlagDiff, actor: str, *, segments: bool = False
    ) -> None:
        """Record `diff` (of flags, or of `segments`); a change stored but not recorded is
        logged as an error, never undone."""
        if not diff:
            return
        details: dict[str, Any] = {"before": dict(diff.before), "after": dict(diff.after)}
        if segments:
            # A segment change is a change to the answers of every flag naming it.
            users = {key for name in diff.keys for key in self.flags.naming(name)}
            details = {"segments": list(diff.keys), "flags": sorted(users), **details}
        else:
            details = {"flags": list(diff.keys), **details}
        try:
            await self.engine.record(action, details, Actor("user", actor))
        except (StoreUnavailableError, ConflictError) as exc:
            # The change itself is stored; say loudly that its audit entry is missing.
            log.error(
                "flag change stored but not audited",
                action=action,
                error=str(exc),
                changed=list(diff.keys),
            )

    async def openapi(self, request: web.Request) -> web.Response:
        """The OpenAPI document of the webhook and the admin API (and the backups', if served)."""
        return web.json_response(document(backups=BACKUP_API in request.app))


_Body = TypeVar("_Body", FlagDefinition, Segment)


async def _named_body(request: web.Request, model: type[_Body], field: str, what: str) -> _Body:
    """The request's body as a `model` whose `field` is the URL's last part (filled in when the
    body leaves it out); 400 when it is not one, or names another."""
    name = request.match_info[field]
    raw = await read_json(request)
    if isinstance(raw, dict):
        raw.setdefault(field, name)
    try:
        body = model.model_validate(raw)
    except ValidationError as exc:
        raise bad_request(f"invalid {what}", validation_errors(exc)) from None
    if getattr(body, field) != name:
        raise bad_request(f"the body's {field} differs from the URL's")
    return body


async def _written(write: Awaitable[FlagDiff]) -> FlagDiff:
    """The diff of a flag or segment write; 400 when refused, 503 when it cannot be stored."""
    try:
        return await write
    except FlagError as exc:
        raise bad_request(str(exc)) from None
    except FlagStoreError as exc:
        raise unavailable(exc) from None


def _not_found(what: str) -> web.HTTPNotFound:
    """The 404 of an unknown flag or segment."""
    return web.HTTPNotFound(
        text=json.dumps({"error": f"no such {what}"}), content_type="application/json"
    )


def _pin_actor(principal: Principal, body: PinRequest | UnpinRequest) -> str:
    """Who pins or unpins: with the token, the body's `actor` (default `api`), as ever; with a
    console session, its operator (a body naming someone else is refused by `acting_as`)."""
    if principal.shared:
        return body.actor
    return principal.acting_as(body.actor if "actor" in body.model_fields_set else None)


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
            {
                "fingerprint": a.fingerprint,
                "labels": dict(a.labels),
                "starts_at": a.starts_at,
                "runbook_url": a.runbook_url,
            }
            for a in state.book.active.values()
        ],
        "stale_seconds": engine.staleness(),
    }
