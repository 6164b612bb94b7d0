"""Polls Alertmanager's `GET /api/v2/alerts` for this agent's receiver and hands the list to the
engine, which repairs whatever webhooks were lost (a resolve that never arrived, a firing
dropped by a 4xx). Polling runs beside the webhook, never instead of it."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import aiohttp
import structlog
from pydantic import TypeAdapter, ValidationError

from agent.config.model import AlertmanagerSettings
from agent.degradation.alerts import WebhookAlert
from agent.degradation.engine import DegradationEngine
from agent.degradation.errors import ConflictError, StoreUnavailableError

log = structlog.get_logger("vigil.degradation.reconcile")
_ALERTS = TypeAdapter(list[dict[str, Any]])


class Reconciler:
    """A loop that polls Alertmanager every `reconcile_seconds` and applies what it finds."""

    def __init__(
        self,
        settings: AlertmanagerSettings,
        engine: DegradationEngine,
        clock: Callable[[], float] = time.time,
    ) -> None:
        assert settings.url is not None
        self._settings = settings
        self._engine = engine
        self._clock = clock
        self._url = settings.url.rstrip("/") + "/api/v2/alerts"
        self._task: asyncio.Task[None] | None = None
        self.runs: Counter[str] = Counter()
        self.last_success: float | None = None

    def start(self) -> None:
        """Start polling."""
        self._task = asyncio.create_task(self._loop(), name="degradation-reconcile")

    async def stop(self) -> None:
        """Stop polling."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self._settings.timeout_seconds)
        async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as session:
            while True:
                await self.run_once(session)
                await asyncio.sleep(self._settings.reconcile_seconds)

    async def run_once(self, session: aiohttp.ClientSession) -> str:
        """One poll; the outcome (`ok`, `unreachable`, `invalid`, `unavailable`) is counted."""
        outcome = await self._poll(session)
        self.runs[outcome] += 1
        if outcome == "ok":
            self.last_success = self._clock()
        return outcome

    async def _poll(self, session: aiohttp.ClientSession) -> str:
        params = {
            "active": "true",
            "silenced": "false",
            "inhibited": "false",
            "unprocessed": "false",
            "receiver": self._settings.receiver,
        }
        try:
            async with session.get(self._url, params=params) as response:
                if response.status != 200:
                    log.warning("alertmanager answered an error", status=response.status)
                    return "unreachable"
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("alertmanager unreachable", error=str(exc) or type(exc).__name__)
            return "unreachable"
        try:
            firing = [_alert(raw) for raw in _ALERTS.validate_python(body)]
        except (ValidationError, KeyError, TypeError) as exc:
            log.warning("alertmanager sent an unexpected alert list", error=str(exc)[:200])
            return "invalid"
        try:
            step = await self._engine.reconcile(firing)
        except (StoreUnavailableError, ConflictError) as exc:
            log.warning("reconciliation could not be stored", error=str(exc))
            return "unavailable"
        if step.changed:
            log.info("reconciliation repaired the alert state", alerts=len(firing))
        return "ok"


def _alert(raw: dict[str, Any]) -> WebhookAlert:
    """An `/api/v2/alerts` entry as the webhook would have carried it."""
    return WebhookAlert.model_validate(
        strict=False,  # a JSON document parsed already: timestamps are still strings
        obj={
            "status": "firing",
            "labels": raw["labels"],
            "annotations": raw.get("annotations", {}),
            "startsAt": raw["startsAt"],
            "fingerprint": raw["fingerprint"],
        },
    )
