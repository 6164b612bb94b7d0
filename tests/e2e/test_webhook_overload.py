"""An overloaded webhook answers 503, never 429, and a real Alertmanager's notification arrives
once the overload is over (Alertmanager retries a 5xx and drops a 4xx)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_alertmanager_delivery import alertmanager_config, rfc3339, status
from tests.harness.alertmanager import AlertmanagerServer
from tests.harness.checks import quiet_disk
from tests.harness.httpclient import request
from tests.harness.wait import poll_until
from tests.integration.conftest import RunningAgent

pytestmark = pytest.mark.integration

TOKEN = "e2e-Overload-7731"
ALERT = "VigilE2EOverload"
FIXTURES = Path(__file__).parents[1] / "fixtures" / "alertmanager"
DEGRADATION = {
    "enabled": True,
    "webhook": {
        "bearer_token_env": "VIGIL_E2E_OVERLOAD",
        # One notification stored at a time and one waiting: the third is an overload.
        "queue": {"capacity": 1, "max_workers": 1, "deadline_seconds": 120},
    },
    "hold_seconds": 1,
    "tick_seconds": 0.2,
    "rules": [{"name": "e2e", "matchers": [f'alertname="{ALERT}"'], "level": "minimal"}],
}


def _metric(text: str, pattern: str) -> float:
    """The sum of the samples of `pattern` (a regex of name and labels) in exposition `text`."""
    return sum(float(m.group(1)) for m in re.finditer(rf"^{pattern} (\S+)$", text, re.M))


async def _agent_counter(agent: RunningAgent, outcome: str) -> float:
    _, text = await agent.get("/metrics")
    return _metric(text, rf'vigil_degradation_webhook_requests_total\{{outcome="{outcome}"\}}')


def _failed_deliveries(alertmanager: AlertmanagerServer) -> float:
    """Webhook deliveries Alertmanager saw fail (it retries them)."""
    _, body = request("GET", f"{alertmanager.url}/metrics")
    text = body.decode() if isinstance(body, bytes) else str(body)
    return _metric(
        text, r'alertmanager_notification_requests_failed_total\{integration="webhook"[^}]*\}'
    )


async def test_an_overloaded_webhook_answers_503_and_alertmanager_delivers_after(
    start_agent: Callable[..., Any],
    alertmanager_factory: Callable[..., AlertmanagerServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While the store is held, the webhook's queue fills and further notifications get 503 with
    Retry-After; Alertmanager's delivery fails, is retried, and lands once the store is free."""
    monkeypatch.setenv("VIGIL_E2E_OVERLOAD", TOKEN)
    agent: RunningAgent = await start_agent(quiet_disk(), degradation=DEGRADATION)
    token_file = tmp_path / "webhook-token"
    token_file.write_text(TOKEN + "\n")
    alertmanager = await asyncio.to_thread(
        alertmanager_factory, alertmanager_config(agent.agent.port, token_file)
    )
    database = agent.agent.database
    assert database is not None
    filler = json.loads((FIXTURES / "webhook_firing.json").read_text())["body"]
    filler["receiver"] = "filler"
    for each in filler["alerts"]:
        # No severity: the fillers must not move the level themselves.
        each["labels"] = {"alertname": "VigilE2EFiller", "instance": each["labels"]["instance"]}

    # Another writer holds SQLite's write lock: every commit of the engine waits on it.
    lock = sqlite3.connect(database.path, isolation_level=None, check_same_thread=False)
    lock.execute("BEGIN IMMEDIATE")
    fillers: set[asyncio.Task[Any]] = set()

    async def keep_full() -> None:
        # A notification every 50 ms keeps the one running and the one waiting slot taken.
        while True:
            task = asyncio.create_task(
                agent.send("POST", "/webhooks/alertmanager", filler, token=TOKEN)
            )
            fillers.add(task)
            task.add_done_callback(fillers.discard)
            await asyncio.sleep(0.05)

    pressure = asyncio.create_task(keep_full())
    try:
        code, body = await poll_until(
            _overloaded_answer(agent, filler),
            20,
            what="a 503 from the full webhook queue",
        )
        assert code == 503
        assert body["error"] == "webhook overloaded (full); retry later"

        starts = rfc3339(dt.datetime.now(dt.UTC))
        alert = {"labels": {"alertname": ALERT, "severity": "critical"}, "startsAt": starts}
        await asyncio.to_thread(alertmanager.post_alerts, [alert])
        await poll_until(
            lambda: asyncio.to_thread(_failed_deliveries, alertmanager),
            30,
            what="Alertmanager seeing its delivery refused",
        )
        assert ALERT not in json.dumps((await status(agent))["active_alerts"])
    finally:
        pressure.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pressure
        lock.execute("ROLLBACK")
        lock.close()
        await asyncio.gather(*fillers, return_exceptions=True)

    async def delivered() -> bool:
        active = (await status(agent))["active_alerts"]
        return any(a["labels"].get("alertname") == ALERT for a in active)

    await poll_until(delivered, 60, what="Alertmanager's retried delivery after the overload")
    assert (await status(agent))["level"] == "minimal"
    assert await _agent_counter(agent, "overloaded") >= 1
    # Never a 429 on the webhook: the rate limit is not in front of it.
    _, text = await agent.get("/metrics")
    assert "vigil_ratelimit_decisions_total" in text
    assert 'vigil_queue_items_total{queue="webhook",outcome="rejected"}' in text


def _overloaded_answer(agent: RunningAgent, filler: dict[str, Any]) -> Callable[[], Any]:
    async def probe() -> tuple[int, Any] | None:
        headers: dict[str, str] = {}
        async with agent.session.post(
            agent.base_url + "/webhooks/alertmanager",
            json=filler,
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as response:
            headers = dict(response.headers)
            code, body = response.status, await response.json()
        if code != 503 or not body["error"].startswith("webhook overloaded"):
            return None  # this one found a free slot, or waited for the store: try again
        retry = headers.get("Retry-After", "")
        assert retry.isdigit(), headers
        assert int(retry) >= 1
        return code, body

    return probe
