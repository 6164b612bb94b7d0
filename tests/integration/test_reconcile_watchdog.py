"""Reconciliation from a real Alertmanager's alert list, and the Watchdog heartbeat."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from tests.harness.checks import quiet_disk
from tests.harness.ports import free_port
from tests.harness.wait import FakeClock, poll_until

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parents[1] / "fixtures" / "alertmanager"
TOKEN = "reconcile-Hook-3391"
DISK = quiet_disk(5)


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    """The webhook token the configs name."""
    monkeypatch.setenv("VIGIL_RECONCILE_HOOK", TOKEN)


def _degradation(**extra: Any) -> dict[str, Any]:
    return {
        "enabled": True,
        "webhook": {"bearer_token_env": "VIGIL_RECONCILE_HOOK"},
        "hold_seconds": 0,
        "tick_seconds": 0.2,
        "rules": [
            {"name": "lost", "matchers": ['alertname="VigilLostWebhook"'], "level": "degraded"}
        ],
        **extra,
    }


async def _status(agent: Any) -> dict[str, Any]:
    _, status = await agent.send("GET", "/api/v1/degradation")
    return dict(status)


async def _wait(agent: Any, level: str, within: float = 20.0) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        status = await _status(agent)
        return status if status["level"] == level else None

    return await poll_until(reached, within, interval=0.2, what=f"level {level}")


async def _unreachable_runs(agent: Any) -> float:
    _, metrics = await agent.get("/metrics")
    prefix = 'vigil_degradation_reconcile_runs_total{outcome="unreachable"}'
    lines = [m for m in metrics.splitlines() if m.startswith(prefix)]
    return float(lines[0].split()[-1]) if lines else 0.0


async def test_reconcile_repairs_lost_webhooks(start_agent, alertmanager_factory) -> None:
    """With every webhook lost, polling Alertmanager still raises and then recovers the level."""
    # The receiver points at a closed port: Alertmanager's notifications never arrive.
    config = (
        "route: {receiver: vigil, group_wait: 0s, group_interval: 1s, repeat_interval: 1h}\n"
        "receivers:\n"
        f"  - name: vigil\n    webhook_configs: [{{url: 'http://127.0.0.1:{free_port()}/'}}]\n"
    )
    am = await asyncio.to_thread(alertmanager_factory, config)
    agent = await start_agent(
        DISK,
        degradation=_degradation(
            alertmanager={"url": am.url, "receiver": "vigil", "reconcile_seconds": 1}
        ),
    )
    now = dt.datetime.now(dt.UTC)
    alert = {
        "labels": {"alertname": "VigilLostWebhook", "severity": "warning"},
        "startsAt": now.isoformat(),
    }

    await asyncio.to_thread(am.post_alerts, [alert])
    raised = await _wait(agent, "degraded")
    await asyncio.to_thread(am.post_alerts, [{**alert, "endsAt": now.isoformat()}])
    await _wait(agent, "full")

    assert raised["active_alerts"][0]["labels"]["alertname"] == "VigilLostWebhook"
    _, audit = await agent.send("GET", "/api/v1/audit")
    actors = {e["actor"]["id"] for e in audit["entries"] if e["action"] == "level_changed"}
    assert actors == {"reconcile"}
    _, metrics = await agent.get("/metrics")
    assert 'vigil_degradation_reconcile_runs_total{outcome="ok"}' in metrics


async def test_unreachable_alertmanager_is_counted_not_fatal(start_agent) -> None:
    """An Alertmanager that cannot be reached is counted; the agent and its level carry on."""
    agent = await start_agent(
        DISK,
        degradation=_degradation(
            alertmanager={
                "url": f"http://127.0.0.1:{free_port()}",
                "reconcile_seconds": 1,
                "timeout_seconds": 0.5,
            }
        ),
    )

    # A second failed run: the loop goes on after the first.
    async def failed_twice() -> bool:
        return await _unreachable_runs(agent) >= 2

    await poll_until(failed_twice, 20, what="two unreachable reconcile runs on /metrics")
    status = await _status(agent)

    assert status["level"] == "full"
    assert await _unreachable_runs(agent) >= 2


async def test_watchdog_heartbeat_check(start_agent) -> None:
    """No Watchdog: the heartbeat check is unhealthy; a delivered Watchdog makes it healthy and
    leaves the level alone."""
    checks = [
        *DISK,
        {
            "name": "alerting-pipeline",
            "kind": "heartbeat",
            "max_age_seconds": 30,
            "interval_seconds": 0.5,
            "critical": False,
        },
    ]
    agent = await start_agent(checks, degradation=_degradation())
    blind = await agent.wait_status("alerting-pipeline", "unhealthy")
    watchdog = json.loads((FIXTURES / "webhook_firing.json").read_text())["body"]
    watchdog["alerts"][0]["labels"] = {"alertname": "Watchdog", "severity": "critical"}

    status, _ = await agent.send("POST", "/webhooks/alertmanager", watchdog, token=TOKEN)
    seeing = await agent.wait_status("alerting-pipeline", "healthy")

    assert status == 200
    assert blind["reason"] == "heartbeat_missing"
    assert seeing["details"]["age_seconds"] < 30
    assert (await _status(agent))["level"] == "full"  # severity critical, yet no demand
    _, metrics = await agent.get("/metrics")
    assert 'vigil_heartbeat_last_timestamp_seconds{check="alerting-pipeline"}' in metrics


async def test_heartbeat_age_reads_the_agent_clock(start_agent) -> None:
    """The heartbeat's age is measured on the agent's clock: moving it past the maximum age
    turns a fresh Watchdog into a blind pipeline."""
    clock = FakeClock()
    checks = [
        *DISK,
        {
            "name": "alerting-pipeline",
            "kind": "heartbeat",
            "max_age_seconds": 30,
            "interval_seconds": 0.2,
            "critical": False,
        },
    ]
    agent = await start_agent(checks, degradation=_degradation(), clock=clock)
    watchdog = json.loads((FIXTURES / "webhook_firing.json").read_text())["body"]
    watchdog["alerts"][0]["labels"] = {"alertname": "Watchdog", "severity": "critical"}
    await agent.send("POST", "/webhooks/alertmanager", watchdog, token=TOKEN)
    await agent.wait_status("alerting-pipeline", "healthy")

    clock.advance(31)
    blind = await agent.wait_status("alerting-pipeline", "unhealthy")

    assert blind["reason"] == "heartbeat_missing"
    assert blind["details"]["age_seconds"] == pytest.approx(31, abs=1)
