"""`kind: tcp` and `kind: disk` against a real socket and the real file system."""

from __future__ import annotations

import pytest

from tests.harness.ports import free_port
from tests.integration.conftest import HttpTarget

pytestmark = pytest.mark.integration


async def test_tcp_connect(start_agent, http_target: HttpTarget) -> None:
    """A listening port is healthy with its connect time; a closed one is refused."""
    agent = await start_agent(
        [
            {
                "name": "up",
                "kind": "tcp",
                "host": "127.0.0.1",
                "port": http_target.port,
                "interval_seconds": 1,
                "timeout_seconds": 0.5,
            },
            {
                "name": "down",
                "kind": "tcp",
                "host": "127.0.0.1",
                "port": free_port(),
                "interval_seconds": 1,
                "timeout_seconds": 0.5,
            },
        ]
    )

    up = await agent.wait_status("up", "healthy")
    down = await agent.wait_status("down", "unhealthy")

    assert up["details"]["connect_seconds"] > 0
    assert down["reason"] == "connection_refused"


async def test_disk_free_space_thresholds(start_agent, tmp_path) -> None:
    """Free ratio below the thresholds is degraded/unhealthy; a missing path is unhealthy."""
    agent = await start_agent(
        [
            {
                "name": "fine",
                "kind": "disk",
                "path": str(tmp_path),
                "degraded_free_ratio": 0.0,
                "unhealthy_free_ratio": 0.0,
                "interval_seconds": 1,
            },
            {
                "name": "tight",
                "kind": "disk",
                "path": str(tmp_path),
                "degraded_free_ratio": 1.0,
                "unhealthy_free_ratio": 0.0,
                "interval_seconds": 1,
            },
            {
                "name": "full",
                "kind": "disk",
                "path": str(tmp_path),
                "degraded_free_ratio": 1.0,
                "unhealthy_free_ratio": 1.0,
                "interval_seconds": 1,
            },
            {
                "name": "bytes",
                "kind": "disk",
                "path": str(tmp_path),
                "degraded_free_ratio": 0.0,
                "unhealthy_free_ratio": 0.0,
                "min_free_bytes": 2**62,
                "interval_seconds": 1,
            },
            {"name": "gone", "kind": "disk", "path": str(tmp_path / "nope"), "interval_seconds": 1},
        ]
    )

    fine = await agent.wait_status("fine", "healthy")
    assert (await agent.wait_status("tight", "degraded"))["reason"] == "disk_low"
    assert (await agent.wait_status("full", "unhealthy"))["reason"] == "disk_low"
    assert (await agent.wait_status("bytes", "degraded"))["reason"] == "disk_low"
    await agent.wait_status("gone", "unhealthy")

    assert 0 < fine["details"]["free_ratio"] <= 1
    assert fine["details"]["free_bytes"] <= fine["details"]["total_bytes"]
    _, metrics = await agent.get("/metrics")
    assert 'vigil_disk_free_bytes{check="fine"}' in metrics
    assert 'vigil_disk_free_ratio{check="fine"}' in metrics
