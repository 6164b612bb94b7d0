"""The OpenAPI 3.1 document of the webhook, the admin APIs and the runtime status reads, built
from the request models."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from agent import __version__
from agent.degradation.alerts import WebhookPayload
from agent.degradation.audit import MAX_LIMIT
from agent.degradation.flags import FlagDefinition, Segment
from agent.server.backup_api import (
    KINDS,
    OPERATIONS,
    BackupRequest,
    DrillRequest,
    VerifyRequest,
)
from agent.server.requests import EvaluateRequest, PinRequest, UnpinRequest

_MODELS: dict[str, type[BaseModel]] = {
    "WebhookPayload": WebhookPayload,
    "PinRequest": PinRequest,
    "UnpinRequest": UnpinRequest,
    "EvaluateRequest": EvaluateRequest,
    "FlagDefinition": FlagDefinition,
    "Segment": Segment,
}
_BACKUP_MODELS: dict[str, type[BaseModel]] = {
    "BackupRequest": BackupRequest,
    "VerifyRequest": VerifyRequest,
    "DrillRequest": DrillRequest,
}
_ERROR = {"$ref": "#/components/schemas/Error"}


def _body(name: str) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
    }


def _responses(ok: str, *errors: int) -> dict[str, Any]:
    out: dict[str, Any] = {"200": {"description": ok, "content": {"application/json": {}}}}
    texts = {
        400: "The request is invalid; nothing changed.",
        401: "Missing or wrong credentials; nothing changed.",
        404: "No such flag (or segment).",
        409: "Conflict; nothing changed.",
        413: "The body, decoded, is larger than allowed; nothing changed.",
        415: "The body's Content-Encoding is not identity, gzip or deflate; nothing changed.",
        503: "The state store is unavailable (or the webhook is overloaded); retry later.",
    }
    for code in errors:
        out[str(code)] = {
            "description": texts[code],
            "content": {"application/json": {"schema": _ERROR}},
        }
    # Every admin route is behind the agent's API rate limit (agent.api_rate_limit).
    out["429"] = {
        "description": "Rate limited; retry after `Retry-After` seconds. Nothing changed.",
        "headers": {
            name: {"schema": {"type": "string"}}
            for name in ("Retry-After", "RateLimit", "RateLimit-Policy")
        },
        "content": {"application/json": {"schema": _ERROR}},
    }
    return out


def _webhook_responses() -> dict[str, Any]:
    # Never rate limited: Alertmanager drops a notification answered 429 until the group is
    # sent again, and retries only a 5xx.
    out = _responses("Stored; the resulting level.", 400, 401, 413, 415, 503)
    del out["429"]
    return out


def document(*, degradation: bool = True, backups: bool = False) -> dict[str, Any]:
    """The whole OpenAPI document: the webhook and degradation API, the backups API, or both
    (the routes an agent serves)."""
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {"type": "string"},
                "details": {"type": "array", "items": {"type": "string"}},
            },
        }
    }
    models = {**(_MODELS if degradation else {}), **(_BACKUP_MODELS if backups else {})}
    for name, model in models.items():
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = schema
    admin: list[dict[str, list[str]]] = [{"adminToken": []}]
    paths = {
        **(_degradation_paths(admin) if degradation else {}),
        **(_backup_paths(admin) if backups else {}),
        **_runtime_paths(),
    }
    title = "Vigil degradation API" if degradation and not backups else "Vigil admin API"
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": __version__},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "adminToken": {"type": "http", "scheme": "bearer"},
                **(
                    {
                        "webhookBearer": {"type": "http", "scheme": "bearer"},
                        "webhookBasic": {"type": "http", "scheme": "basic"},
                    }
                    if degradation
                    else {}
                ),
            },
        },
    }


def handler(
    *, degradation: bool, backups: bool
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A handler answering the document of these parts (for an agent whose degradation API,
    which serves it otherwise, is off)."""

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(document(degradation=degradation, backups=backups))

    return openapi


def _degradation_paths(admin: list[dict[str, list[str]]]) -> dict[str, Any]:
    """The webhook's and the degradation API's operations."""
    key = [{"name": "key", "in": "path", "required": True, "schema": {"type": "string"}}]
    name = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
    actor = {
        "name": "actor",
        "in": "query",
        "required": False,
        "description": "Who makes the change, for the audit trail (default `api`).",
        "schema": {"type": "string", "pattern": r"^[\w.@:+-]{1,100}$"},
    }
    return {
        "/webhooks/alertmanager": {
            "post": {
                "summary": "Apply an Alertmanager v4 webhook notification",
                "security": [{"webhookBearer": []}, {"webhookBasic": []}],
                "requestBody": _body("WebhookPayload"),
                "responses": _webhook_responses(),
            }
        },
        "/api/v1/degradation": {
            "get": {"summary": "Degradation status", "responses": _responses("Status.")}
        },
        "/api/v1/degradation/pin": {
            "post": {
                "summary": "Pin the level",
                "security": admin,
                "requestBody": _body("PinRequest"),
                "responses": _responses("Pinned; the status.", 400, 401, 413, 415, 503),
            }
        },
        "/api/v1/degradation/unpin": {
            "post": {
                "summary": "Remove the pin",
                "security": admin,
                "requestBody": _body("UnpinRequest"),
                "responses": _responses("Unpinned; the status.", 400, 401, 413, 415, 503),
            }
        },
        "/api/v1/audit": {
            "get": {
                "summary": "Audit entries, newest first, filtered and paged",
                "parameters": [
                    _query("limit", "Entries per page.", minimum=1, maximum=10000),
                    _query(
                        "since",
                        "Entries at or after this time (RFC 3339 with an offset).",
                        fmt="date-time",
                    ),
                    _query(
                        "until",
                        "Entries before this time (RFC 3339 with an offset).",
                        fmt="date-time",
                    ),
                    _query(
                        "actor",
                        "An actor id or kind (`alice`, `alertmanager`), or `kind:id`.",
                    ),
                    {
                        **_query("kind", "Only entries with this `action` (repeatable)."),
                        "schema": {"type": "array", "items": {"type": "string"}},
                        "explode": True,
                    },
                    _query("cursor", "The `next_cursor` of the page before."),
                ],
                "responses": _responses(
                    "Entries, newest first, and `next_cursor` (null on the last page).",
                    400,
                    503,
                ),
            }
        },
        "/api/v1/flags": {
            "get": {"summary": "Every flag", "responses": _responses("Flag definitions.")}
        },
        "/api/v1/flags/{key}": {
            "get": {
                "summary": "One flag",
                "parameters": key,
                "responses": _responses("The definition.", 404),
            },
            "put": {
                "summary": "Create or replace a flag",
                "security": admin,
                "parameters": [*key, actor],
                "requestBody": _body("FlagDefinition"),
                "responses": _responses("Stored.", 400, 401, 413, 415, 503),
            },
            "delete": {
                "summary": "Delete a flag",
                "security": admin,
                "parameters": [*key, actor],
                "responses": _responses("Deleted.", 400, 401, 404, 503),
            },
        },
        "/api/v1/flags/{key}/evaluate": {
            "post": {
                "summary": "Evaluate a flag for a context",
                "parameters": key,
                "requestBody": _body("EvaluateRequest"),
                "responses": _responses("Value, variant and reason.", 400, 413, 415),
            }
        },
        "/api/v1/segments": {
            "get": {
                "summary": "Every segment",
                "responses": _responses("Segments, and `used_by`: the flags naming each."),
            }
        },
        "/api/v1/segments/{name}": {
            "get": {
                "summary": "One segment",
                "parameters": name,
                "responses": _responses("The segment.", 404),
            },
            "put": {
                "summary": "Create or replace a segment (every flag naming it answers by it)",
                "security": admin,
                "parameters": [*name, actor],
                "requestBody": _body("Segment"),
                "responses": _responses("Stored.", 400, 401, 413, 415, 503),
            },
            "delete": {
                "summary": "Delete a segment no flag names",
                "security": admin,
                "parameters": [*name, actor],
                "responses": _responses("Deleted.", 400, 401, 404, 503),
            },
        },
    }


def _query(
    name: str,
    description: str,
    *,
    fmt: str | None = None,
    minimum: int | None = None,
    maximum: int | None = None,
) -> dict[str, Any]:
    """An optional query parameter."""
    schema: dict[str, Any] = {"type": "integer" if minimum is not None else "string"}
    if fmt is not None:
        schema["format"] = fmt
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def _runtime_paths() -> dict[str, Any]:
    """The runtime status API's reads (served by every agent)."""
    history = _responses("Each check's recent runs, oldest first.", 400, 404)
    history["404"]["description"] = "No such check."
    return {
        "/api/v1/checks/history": {
            "get": {
                "summary": "Each check's last runs (time, status, reason, duration)",
                "parameters": [_query("check", "Only this check.")],
                "responses": history,
            }
        },
        "/api/v1/limits": {
            "get": {
                "summary": "The agent's rate limiters: limits, decisions, utilization",
                "responses": _responses("The limiters.", 400),
            }
        },
        "/api/v1/queues": {
            "get": {
                "summary": "The agent's work queues: depth, workers, backpressure, counts",
                "responses": _responses("The queues.", 400),
            }
        },
    }


def _backup_paths(admin: list[dict[str, list[str]]]) -> dict[str, Any]:
    """The backups API's operations."""
    job = [{"name": "job", "in": "path", "required": True, "schema": {"type": "string"}}]
    limit = _query(
        "limit", "At most this many, newest first (default 100).", minimum=1, maximum=MAX_LIMIT
    )
    job_filter = _query("job", "Only this job.")
    paths: dict[str, Any] = {
        "/api/v1/backups/jobs": {
            "get": {
                "summary": "Every backup job: schedules, what runs, last outcomes, failures",
                "responses": _responses("The jobs.", 503),
            }
        },
        "/api/v1/backups": {
            "get": {
                "summary": "Catalogued backups, newest first",
                "parameters": [
                    job_filter,
                    {
                        **_query("kind", "Only backups of this kind."),
                        "schema": {"type": "string", "enum": list(KINDS)},
                    },
                    _query(
                        "since",
                        "Started at or after this time (RFC 3339 with an offset).",
                        fmt="date-time",
                    ),
                    _query(
                        "until",
                        "Started before this time (RFC 3339 with an offset).",
                        fmt="date-time",
                    ),
                    limit,
                ],
                "responses": _responses("The backups.", 400, 503),
            }
        },
        "/api/v1/backups/runs": {
            "get": {
                "summary": "Recorded runs, newest first, with who asked for each",
                "parameters": [
                    job_filter,
                    {
                        **_query("operation", "Only runs of this operation."),
                        "schema": {"type": "string", "enum": list(OPERATIONS)},
                    },
                    limit,
                ],
                "responses": _responses("The runs.", 400, 503),
            }
        },
    }
    for operation, model in (
        ("backup", "BackupRequest"),
        ("verify", "VerifyRequest"),
        ("drill", "DrillRequest"),
    ):
        responses = _responses("unused", 400, 401, 404, 409, 413, 415, 503)
        del responses["200"]
        responses["202"] = {
            "description": "Started (it holds the job's lock); `job`, `operation`, `accepted_at`.",
            "content": {"application/json": {}},
        }
        responses["404"]["description"] = "No such job, or no such backup of it; nothing started."
        responses["409"] = {
            "description": "The job runs something already, or has no backup; nothing started.",
            "content": {"application/json": {"schema": _ERROR}},
        }
        responses["503"]["description"] = "The agent is stopping; nothing started."
        body = _body(model)
        body["required"] = False
        paths[f"/api/v1/backups/jobs/{{job}}/{operation}"] = {
            "post": {
                "summary": f"Start a {operation} of the job now",
                "security": admin,
                "parameters": job,
                "requestBody": body,
                "responses": responses,
            }
        }
    return paths
