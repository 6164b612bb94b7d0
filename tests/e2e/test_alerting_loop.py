"""The whole alerting loop on loopback: Redis down -> Prometheus -> Alertmanager -> PD and agent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.degradation.flags import FlagDefinition
from tests.contract.test_alertmanager_config import (
    AGENT,
    POLICY,
    RULE_FILES,
    RUNBOOK_BASE,
    _Capture,
    _test_config,
)
from tests.harness.alertmanager import AlertmanagerServer
from tests.harness.prometheus import PrometheusServer
from tests.harness.redis import RedisServer
from tests.integration.conftest import RunningAgent

pytestmark = pytest.mark.integration

TOKEN = "e2e-Loop-Token-7731"
CHECK = "session-cache"
FLAG = "recommendations"
ALERT = "VigilCriticalCheckUnhealthy"
KEEP_FOR = "VigilCheckErrorBudgetBurn"
RUNBOOK = RUNBOOK_BASE + "docs/runbooks/checks.md#vigilcriticalcheckunhealthy"


@pytest.fixture
def pagerduty() -> Iterator[_Capture]:
    """A loopback stand-in for PagerDuty's Events API (and the ticket bridge)."""
    with _Capture() as sink:
        yield sink


def _policy(redis_url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The example policy's degradation section and redis check, made fast and local."""
    example = yaml.safe_load(POLICY.read_text())
    degradation = dict(example["degradation"])
    degradation.pop("alertmanager")  # no reconciler against the production address
    degradation |= {"hold_seconds": 3, "tick_seconds": 0.2}
    check = next(c for c in example["checks"] if c["name"] == CHECK)
    check = {k: v for k, v in check.items() if k != "password_env"}
    check |= {"url": redis_url, "interval_seconds": 1, "timeout_seconds": 0.5}
    return degradation, check


def _alertmanager_config(sink: _Capture, secrets: Path, agent_port: int) -> str:
    """The shipped config (fast timers, PD -> sink), its agent webhook -> the real agent."""
    config = yaml.safe_load(_test_config(sink, secrets))
    (secrets / "webhook-token").write_text(TOKEN + "\n")
    webhook = next(r for r in config["receivers"] if r["name"] == AGENT)["webhook_configs"][0]
    webhook["url"] = f"http://127.0.0.1:{agent_port}/webhooks/alertmanager"
    return yaml.safe_dump(config, sort_keys=False)


def _rules_overlay() -> dict[str, str]:
    """Every shipped rule file, in memory, with each `for:` shortened to 0s.

    Except the error-budget burn alerts': over their 5m/30m windows a `for: 0s` burn alert fires
    seconds after Redis dies and keeps the level degraded for minutes after it returns, which is
    right in production and not what this test waits for. Their shipped `for` keeps them quiet.
    """
    overlay = {}
    for path in RULE_FILES:
        doc = yaml.safe_load(path.read_text())
        for group in doc["groups"]:
            for rule in group["rules"]:
                if "for" in rule and not rule.get("alert", "").startswith(KEEP_FOR):
                    rule["for"] = "0s"
        overlay[path.name] = yaml.safe_dump(doc, sort_keys=False)
    return overlay


def _prometheus_config(agent_port: int, am_url: str) -> str:
    """Scrape the agent every second, evaluate every second, alert to the private Alertmanager."""
    return yaml.safe_dump(
        {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [path.name for path in RULE_FILES],
            "alerting": {
                "alertmanagers": [
                    {"static_configs": [{"targets": [am_url.removeprefix("http://")]}]}
                ]
            },
            "scrape_configs": [
                {"job_name": "vigil", "static_configs": [{"targets": [f"127.0.0.1:{agent_port}"]}]}
            ],
        }
    )


async def _degradation(agent: RunningAgent) -> dict[str, Any]:
    """`GET /api/v1/degradation`."""
    code, body = await agent.send("GET", "/api/v1/degradation")
    assert code == 200, body
    return dict(body)


def _pd(sink: _Capture, action: str) -> Callable[[], Any]:
    """A probe: the PagerDuty events with `event_action` `action` for the session-cache alert."""

    async def probe() -> list[dict[str, Any]]:
        return [
            r["body"]
            for r in list(sink.requests)
            if r["path"] == "/pd"
            and r["body"].get("event_action") == action
            and r["body"].get("payload", {}).get("class") == ALERT
            and r["body"].get("payload", {}).get("component") == CHECK
        ]

    return probe


async def _until(probe: Callable[[], Any], what: str, within: float) -> Any:
    """Poll the async `probe` until it answers something true; that answer."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = await probe()
        if found:
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {within} s")


async def test_redis_down_pages_and_degrades_then_recovers(
    start_agent: Callable[..., Any],
    fresh_redis: Callable[..., RedisServer],
    prometheus_factory: Callable[..., PrometheusServer],
    alertmanager_factory: Callable[..., AlertmanagerServer],
    pagerduty: _Capture,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kill Redis -> PD trigger + degraded without recommendations; restart -> resolve + full."""
    monkeypatch.setenv("API_TOKEN", TOKEN)
    redis = await asyncio.to_thread(fresh_redis)
    degradation, check = _policy(redis.url())
    agent: RunningAgent = await start_agent([check], degradation=degradation)
    assert agent.agent.degradation is not None
    assert agent.agent.port is not None
    port: int = agent.agent.port
    flags = agent.agent.degradation.flags
    await flags.set(FlagDefinition(key=FLAG, enabled=True))
    assert flags.evaluate(FLAG, {}).value is True
    await agent.wait_status(CHECK, "healthy")

    secrets = tmp_path / "secrets"
    secrets.mkdir()
    am = await asyncio.to_thread(
        alertmanager_factory, _alertmanager_config(pagerduty, secrets, port)
    )
    prom = await asyncio.to_thread(
        prometheus_factory,
        _prometheus_config(port, am.url),
        _rules_overlay(),
        ["--rules.alert.resend-delay=1s"],
    )
    # Prometheus discovers its Alertmanager after ~6 s; the first scrape lands well before.
    await asyncio.to_thread(
        prom.wait_for, f'vigil_check_status{{check="{CHECK}", state="healthy"}} == 1', bool, 20.0
    )
    assert (await _degradation(agent))["level"] == "full"
    assert await _pd(pagerduty, "trigger")() == []

    killed = time.monotonic()
    await asyncio.to_thread(redis.kill)

    triggers = await _until(_pd(pagerduty, "trigger"), "PagerDuty trigger", 40.0)
    paged = time.monotonic() - killed
    trigger = triggers[0]
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["routing_key"] == "R0UT1NGKEY-from-file"
    assert trigger["payload"]["custom_details"]["runbook_url"] == RUNBOOK
    assert {"href": RUNBOOK, "text": "Runbook"} in trigger["links"]

    async def degraded() -> bool:
        return bool((await _degradation(agent))["level"] == "degraded")

    await _until(degraded, "the level rising to degraded", 20.0)
    raised = time.monotonic() - killed
    state = await _degradation(agent)
    assert FLAG in state["flags_off"]
    assert [a["labels"]["alertname"] for a in state["active_alerts"]] == [ALERT]
    alerts = await asyncio.to_thread(prom.alerts)
    burning = [a for a in alerts if a["labels"]["alertname"].startswith(KEEP_FOR)]
    assert all(a["state"] == "pending" for a in burning), burning
    assert flags.evaluate(FLAG, {}).value is False

    restarted = time.monotonic()
    await asyncio.to_thread(redis.start)

    resolves = await _until(_pd(pagerduty, "resolve"), "PagerDuty resolve", 40.0)
    resolved = time.monotonic() - restarted
    assert resolves[0]["dedup_key"] == trigger["dedup_key"]

    async def full() -> bool:
        return bool((await _degradation(agent))["level"] == "full")

    await _until(full, "the level recovering after the hold", 30.0)
    recovered = time.monotonic() - restarted
    assert recovered >= 3  # the hold
    state = await _degradation(agent)
    assert state["flags_off"] == []
    assert flags.evaluate(FLAG, {}).value is True
    print(
        f"kill->PD trigger {paged:.1f}s, kill->degraded {raised:.1f}s, "
        f"start->PD resolve {resolved:.1f}s, start->full {recovered:.1f}s"
    )
