"""The runner's promises, against a real in-process agent: bad checks harm only themselves."""

from __future__ import annotations

import asyncio

import pytest

from tests.harness.wait import FakeClock, poll_until
from tests.integration.conftest import HttpTarget, SilentServer

pytestmark = pytest.mark.integration


def _py(name: str, target: str, **extra: object) -> dict[str, object]:
    return {
        "name": name,
        "kind": "python",
        "target": f"tests.integration.pychecks:{target}",
        "interval_seconds": 1,
        "timeout_seconds": 0.5,
        **extra,
    }


async def test_bad_checks_do_not_delay_good_ones(start_agent, http_target: HttpTarget) -> None:
    """Hanging, raising, garbage and cancellation-ignoring checks never hold up a good one."""
    agent = await start_agent(
        [
            _py("hangs", "hangs"),
            _py("raises", "raises"),
            _py("garbage", "garbage"),
            _py("stubborn", "ignores_cancellation"),
            _py("not-async", "not_async"),
            {
                "name": "good",
                "kind": "http",
                "url": http_target.url,
                "interval_seconds": 0.2,
                "timeout_seconds": 0.2,
            },
        ]
    )

    good = await agent.wait_status("good", "healthy")
    hangs = await agent.wait_status("hangs", "unhealthy")
    raises = await agent.wait_status("raises", "unknown")
    garbage = await agent.wait_status("garbage", "unknown")
    stubborn = await agent.wait_status("stubborn", "unhealthy")
    not_async = await agent.wait_status("not-async", "unknown")
    first_requests = http_target.requests
    hung = agent.runs("hangs")
    # Two more runs of the hanging check, each cut off at its deadline, span at least one of its
    # 1 s intervals, in which five runs of the good one are due; one that waited for the bad
    # checks would manage one or two.
    await poll_until(lambda: agent.runs("hangs") >= hung + 2, 20, what="two more hung runs")

    assert good["reason"] is None
    assert (hangs["reason"], raises["reason"], garbage["reason"]) == (
        "timeout",
        "internal_error",
        "invalid_result",
    )
    assert "boom in the check" in raises["message"]
    assert stubborn["reason"] == "timeout"
    assert not_async["reason"] == "internal_error"
    assert http_target.requests >= first_requests + 3  # the good check kept its schedule
    status, _ = await agent.get("/healthz")
    assert status == 200
    _, metrics = await agent.get("/metrics")
    assert 'vigil_checks_abandoned_total{check="stubborn",kind="python"}' in metrics
    assert 'vigil_check_failures_total{check="raises",kind="python",reason="internal_error"}' in (
        metrics
    )


async def test_agent_answers_while_checks_hang(start_agent, silent_server: SilentServer) -> None:
    """With every check stuck on a silent server, /healthz, /health and /metrics still answer."""
    agent = await start_agent(
        [
            {
                "name": f"silent-{i}",
                "kind": "http",
                "url": f"http://127.0.0.1:{silent_server.port}/",
                "interval_seconds": 2,
                "timeout_seconds": 1.5,
            }
            for i in range(4)
        ],
        max_concurrency=2,
    )

    for _ in range(10):
        status, _ = await asyncio.wait_for(agent.get("/healthz"), timeout=1)
        assert status == 200
        await asyncio.sleep(0.1)
    entry = await agent.wait_status("silent-0", "unhealthy")

    assert entry["reason"] == "timeout"
    assert silent_server.connections  # the server really was reached and held the request


async def test_python_check_passes_args_and_details(start_agent) -> None:
    """A python check receives its args and its details reach /health and per-check status."""
    agent = await start_agent(
        [_py("orders", "ok", args={"service": "orders-x"}), _py("queue", "degraded")]
    )

    ok = await agent.wait_status("orders", "healthy")
    degraded = await agent.wait_status("queue", "degraded")

    assert ok["details"] == {"service": "orders-x", "queue_depth": 3}
    assert (degraded["reason"], degraded["message"]) == ("saturation", "queue 95% full")
    doc = await agent.health()
    assert doc["status"] == "degraded"


async def test_status_change_logged_once(start_agent) -> None:
    """Several runs with one status produce one 'status changed' log line, with a trace id."""
    agent = await start_agent([_py("queue", "degraded", interval_seconds=0.1, timeout_seconds=0.1)])
    await agent.wait_status("queue", "degraded")
    runs = agent.runs("queue")
    await poll_until(lambda: agent.runs("queue") >= runs + 4, 20, what="four more runs")

    lines = [
        line
        for line in agent.log.getvalue().splitlines()
        if '"check status changed"' in line and '"queue"' in line
    ]

    assert len(lines) == 1
    assert '"trace_id"' in lines[0]


async def test_readyz_follows_critical_checks(start_agent, http_target: HttpTarget) -> None:
    """/readyz is 503 while a critical check is unhealthy and 200 once it recovers."""
    http_target.status = 500
    agent = await start_agent(
        [
            {
                "name": "api",
                "kind": "http",
                "url": http_target.url,
                "interval_seconds": 0.5,
                "timeout_seconds": 0.4,
            }
        ]
    )
    await agent.wait_status("api", "unhealthy")

    status, body = await agent.get("/readyz")
    assert status == 503
    assert '"api"' in body
    http_target.status = 200
    await agent.wait_status("api", "healthy")
    status, _ = await agent.get("/readyz")
    assert status == 200


async def test_stale_result_turns_unknown(start_agent) -> None:
    """A check whose runs stop is reported unknown, reason stale, once its result is older than
    twice its interval, and not before."""
    clock = FakeClock()
    agent = await start_agent(
        [_py("quick", "ok", interval_seconds=0.2, timeout_seconds=0.2)], clock=clock
    )
    await agent.wait_status("quick", "healthy")
    await agent.agent.runner.stop(1.0)  # nothing runs any more
    # The frozen clock stamped the last result with the time it still shows.

    clock.advance(0.39)
    fresh = await agent.check("quick")
    clock.advance(0.02)
    stale = await agent.check("quick")

    assert (fresh["status"], fresh["reason"]) == ("healthy", None)
    assert (stale["status"], stale["reason"]) == ("unknown", "stale")


async def test_spans_per_run_with_client_children(start_agent, http_target: HttpTarget) -> None:
    """Each run is one span with a CLIENT child; failures set ERROR and error.type."""
    http_target.status = 503
    agent = await start_agent(
        [
            {
                "name": "api",
                "kind": "http",
                "url": http_target.url,
                "interval_seconds": 5,
                "timeout_seconds": 1,
            }
        ]
    )
    await agent.wait_status("api", "unhealthy")

    spans = agent.spans()
    run = next(s for s in spans if s.name == "check http")
    child = next(
        s for s in spans if s.parent is not None and s.parent.span_id == run.context.span_id
    )
    assert run.attributes["vigil.check.name"] == "api"
    assert run.status.status_code.name == "ERROR"
    assert run.attributes["error.type"] == "http_status"
    assert child.kind.name == "CLIENT"
    assert child.attributes["server.address"] == "127.0.0.1"
    assert child.attributes["server.port"] == http_target.port
    assert child.attributes["http.response.status_code"] == 503


async def test_readyz_tolerates_unknown_only_during_grace(start_agent, silent_server) -> None:
    """A critical check still unknown is tolerated inside the start-up grace, not after it."""
    slow = {
        "name": "slow",
        "kind": "http",
        "url": f"http://127.0.0.1:{silent_server.port}/",
        "interval_seconds": 30,
        "timeout_seconds": 20,
    }
    clock = FakeClock()
    agent = await start_agent([slow], startup_grace_seconds=60, clock=clock)

    clock.advance(59)
    status_in, body_in = await agent.get("/readyz")
    clock.advance(2)
    status_after, body_after = await agent.get("/readyz")

    assert (status_in, status_after) == (200, 503)
    assert '"in_startup_grace": true' in body_in
    assert '"in_startup_grace": false' in body_after
    assert '"slow"' in body_after
