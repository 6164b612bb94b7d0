"""A real Alertmanager 0.25 delivers to the agent's webhook: firing raises the level, a repeat
delivery changes nothing, and the resolve brings the level back after the hold."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.alertmanager import AlertmanagerServer
from tests.harness.checks import quiet_disk
from tests.integration.conftest import RunningAgent

pytestmark = pytest.mark.integration

TOKEN = "e2e-Hook-60214"
ALERT = "VigilE2EDown"
DISK = quiet_disk()
DEGRADATION = {
    "enabled": True,
    "webhook": {"bearer_token_env": "VIGIL_E2E_HOOK"},
    "hold_seconds": 1,
    "tick_seconds": 0.2,
    "rules": [{"name": "e2e", "matchers": [f'alertname="{ALERT}"'], "level": "minimal"}],
}


def alertmanager_config(agent_port: int, token_file: Path) -> str:
    """Everything to one webhook receiver: the agent, with its Bearer token from a file."""
    return yaml.safe_dump(
        {
            "route": {
                "receiver": "vigil",
                "group_by": ["alertname"],
                "group_wait": "0s",
                "group_interval": "1s",
                "repeat_interval": "1h",
            },
            "receivers": [
                {
                    "name": "vigil",
                    "webhook_configs": [
                        {
                            "url": f"http://127.0.0.1:{agent_port}/webhooks/alertmanager",
                            "send_resolved": True,
                            "http_config": {"authorization": {"credentials_file": str(token_file)}},
                        }
                    ],
                }
            ],
        }
    )


def rfc3339(when: dt.datetime) -> str:
    """Alertmanager's timestamp form."""
    return when.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def status(agent: RunningAgent) -> dict[str, Any]:
    """`GET /api/v1/degradation`."""
    code, body = await agent.send("GET", "/api/v1/degradation")
    assert code == 200
    return dict(body)


def observable(state: dict[str, Any]) -> dict[str, Any]:
    """What a user of the status sees change: all but the version and the staleness."""
    return {k: v for k, v in state.items() if k not in ("version", "stale_seconds")}


async def audit(agent: RunningAgent) -> list[dict[str, Any]]:
    """Every audit entry, oldest first."""
    code, body = await agent.send("GET", "/api/v1/audit?limit=1000")
    assert code == 200
    return list(body["entries"])[::-1]  # the API answers newest first


async def accepted_webhooks(agent: RunningAgent) -> float:
    """`vigil_degradation_webhook_requests_total{outcome="accepted"}` from `/metrics`."""
    _, text = await agent.get("/metrics")
    found = re.search(
        r'^vigil_degradation_webhook_requests_total\{outcome="accepted"\} (\S+)$', text, re.M
    )
    return float(found.group(1)) if found else 0.0


async def eventually(probe: Callable[[], Any], what: str, within: float = 10.0) -> None:
    """Poll the async `probe` until it returns true; fail naming `what` after `within` s."""
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        if await probe():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {within} s")


async def test_alertmanager_fire_repeat_and_resolve(
    start_agent: Callable[..., Any],
    alertmanager_factory: Callable[..., AlertmanagerServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fire -> minimal by Alertmanager's hand; a repeat delivery is a no-op; resolve -> full
    after the hold."""
    monkeypatch.setenv("VIGIL_E2E_HOOK", TOKEN)
    agent: RunningAgent = await start_agent(DISK, degradation=DEGRADATION)
    token_file = tmp_path / "webhook-token"
    token_file.write_text(TOKEN + "\n")  # Alertmanager trims the trailing newline
    config = alertmanager_config(agent.agent.port, token_file)
    primary = await asyncio.to_thread(alertmanager_factory, config)
    starts = rfc3339(dt.datetime.now(dt.UTC))
    alert = {
        "labels": {"alertname": ALERT, "severity": "critical", "instance": "e2e"},
        "annotations": {"summary": "End-to-end test alert."},
        "startsAt": starts,
    }

    await asyncio.to_thread(primary.post_alerts, [alert])

    await eventually(lambda: _level_is(agent, "minimal"), "Alertmanager's firing raising the level")
    raised = [e for e in await audit(agent) if e["action"] == "level_changed"]
    assert [(e["from"], e["to"], e["cause"]) for e in raised] == [("full", "minimal", "alert")]
    assert raised[0]["actor"] == {"kind": "alertmanager", "id": "vigil"}
    fired = await status(agent)
    assert [a["labels"]["alertname"] for a in fired["active_alerts"]] == [ALERT]

    # A second Alertmanager (an HA peer that cannot gossip) delivers the same firing alert.
    audit_before, accepted_before = await audit(agent), await accepted_webhooks(agent)
    peer = await asyncio.to_thread(alertmanager_factory, config)
    await asyncio.to_thread(peer.post_alerts, [alert])
    await eventually(lambda: _more_accepted(agent, accepted_before), "the peer's repeat delivery")
    await asyncio.to_thread(peer.stop)
    # The peer's copy only refreshes the alert's last_seen (what alert expiry reads), which is
    # stored as a new version; the level, its reasons, the alert and the audit stay as they were.
    assert observable(await status(agent)) == observable(fired)
    assert await audit(agent) == audit_before

    resolved = {**alert, "endsAt": rfc3339(dt.datetime.now(dt.UTC))}
    await asyncio.to_thread(primary.post_alerts, [resolved])

    await eventually(_resolved_in(agent), "Alertmanager's resolve reaching the agent")
    await eventually(lambda: _level_is(agent, "full"), "recovery after the hold")
    entries = await audit(agent)
    changed = [e for e in entries if e["action"] == "level_changed"]
    assert [(e["from"], e["to"], e["cause"]) for e in changed] == [
        ("full", "minimal", "alert"),
        ("minimal", "full", "recovery"),
    ]
    resolve = next(e for e in entries if e["action"] == "alert_resolved")
    assert (resolve["alertname"], resolve["actor"]["kind"]) == (ALERT, "alertmanager")
    assert resolve["version"] < changed[1]["version"]  # the hold: recovery came on a later tick
    assert (await status(agent))["active_alerts"] == []


async def _level_is(agent: RunningAgent, level: str) -> bool:
    return (await status(agent))["level"] == level


async def _more_accepted(agent: RunningAgent, than: float) -> bool:
    return await accepted_webhooks(agent) > than


def _resolved_in(agent: RunningAgent) -> Callable[[], Any]:
    async def probe() -> bool:
        return any(e["action"] == "alert_resolved" for e in await audit(agent))

    return probe
