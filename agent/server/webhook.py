"""`POST /webhooks/alertmanager`: Alertmanager's notifications, applied through the engine.

Credentials are compared in constant time as the bytes sent; the body is capped after decoding;
the answer is 2xx only after the change is stored and 503 when it cannot be (Alertmanager
retries 5xx and nothing else, so a refusal it should retry must be a 5xx, and one it should not
must be a 4xx). Notifications wait for the engine in a bounded work queue (`queue="webhook"`):
when it is full or past its watermarks the answer is a fast 503 with `Retry-After`, never a 429.
Every answer is counted by outcome for `vigil_degradation_webhook_requests_total`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import math
from collections import Counter
from typing import Any

import orjson
from aiohttp import web
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode, Tracer
from pydantic import ValidationError

from agent.config.model import DegradationSettings
from agent.degradation.alerts import WebhookPayload
from agent.degradation.audit import Actor
from agent.degradation.engine import DegradationEngine
from agent.degradation.errors import ConflictError, RequestError, StoreUnavailableError
from agent.degradation.state import State
from agent.queue.config import QueueConfig
from agent.queue.errors import (
    DeadlineExceededError,
    ExpiredError,
    JobCancelledError,
    QueueClosedError,
    RejectedError,
)
from agent.queue.manager import WorkQueue
from agent.server.plumbing import (
    BodyError,
    authorization,
    read_capped,
    secret_bytes,
    trace_id_of,
    validation_errors,
    wire,
)
from agent.telemetry.spans import mark_error


class AlertmanagerWebhook:
    """The webhook handler bound to one engine and the configured credentials."""

    def __init__(
        self, settings: DegradationSettings, engine: DegradationEngine, tracer: Tracer
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.tracer = tracer
        hook = settings.webhook
        self._bearer = secret_bytes(hook.bearer_token_env)
        password = secret_bytes(hook.basic_password_env)
        self._basic = (
            (wire(hook.basic_username), password)
            if hook.basic_username and password is not None
            else None
        )
        self.outcomes: Counter[str] = Counter()
        hook_queue = hook.queue
        self.queue = WorkQueue(
            "webhook",
            QueueConfig(
                capacity=hook_queue.capacity,
                max_workers=hook_queue.max_workers,
                default_deadline_seconds=hook_queue.deadline_seconds,
                wait_high_seconds=hook_queue.wait_high_seconds,
                wait_low_seconds=hook_queue.wait_low_seconds,
                # At shutdown, what is queued gets the agent's own grace to be stored.
                drain_grace_seconds=5.0,
            ),
        )

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
        if not self._authorized(request):
            return self._refuse(
                "unauthorized",
                401,
                "missing or wrong credentials",
                {"WWW-Authenticate": 'Bearer realm="vigil"'},
            )
        try:
            body = await read_capped(request, self.settings.webhook.max_body_bytes)
        except BodyError as exc:
            if exc.status == 413:
                return self._refuse("too_large", 413, "body exceeds webhook.max_body_bytes")
            return self._refuse("invalid", exc.status, exc.message)
        try:
            payload = WebhookPayload.model_validate_json(body)
        except ValidationError as exc:
            return self._refuse(
                "invalid", 400, "not an Alertmanager v4 payload", details=validation_errors(exc)
            )
        trace_id = trace_id_of(span)
        receive = functools.partial(
            self.engine.receive, payload, Actor("alertmanager", payload.receiver), trace_id
        )
        try:
            # Past the queue's bound or watermarks the answer is a fast 503, which Alertmanager
            # retries (a 429 it would drop until the group is sent again).
            job = self.queue.submit_nowait(receive)
            step = await job
        except RejectedError as exc:
            return self._overloaded(f"webhook overloaded ({exc.reason})", exc.retry_after_seconds)
        except ExpiredError:
            return self._overloaded("webhook overloaded (waited past its deadline)", None)
        except (QueueClosedError, JobCancelledError):
            return self._refuse("unavailable", 503, "the agent is stopping", {"Retry-After": "1"})
        except (StoreUnavailableError, ConflictError, DeadlineExceededError) as exc:
            return self._refuse("unavailable", 503, f"state store unavailable: {exc}")
        except RequestError as exc:  # logged with its traceback by the engine
            return self._refuse("invalid", 400, f"notification not applied: {exc}")
        self._transition_span(step.transition, step.state)
        self.outcomes["accepted"] += 1
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

    def _overloaded(self, message: str, retry_after_seconds: float | None) -> web.Response:
        """503 with `Retry-After` in whole seconds (rounded up, at least 1): nothing was applied."""
        seconds = (
            self.queue.retry_after_seconds()
            if retry_after_seconds is None
            else (retry_after_seconds)
        )
        retry = str(max(1, math.ceil(seconds)))
        return self._refuse("overloaded", 503, f"{message}; retry later", {"Retry-After": retry})

    def _refuse(
        self,
        outcome: str,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        details: list[str] | None = None,
    ) -> web.Response:
        self.outcomes[outcome] += 1
        body: dict[str, Any] = {"error": message}
        if details:
            body["details"] = details
        return web.json_response(body, status=status, headers=headers)

    def _authorized(self, request: web.Request) -> bool:
        scheme, credentials = authorization(request.headers)
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
