"""The runtime status API of a running agent: check history, its own limiters and work queues,
driven over real HTTP, and never a 5xx whatever the query and headers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.harness.checks import quiet_disk
from tests.harness.wait import poll_until
from tests.integration.conftest import RunningAgent
from tests.integration.test_webhook_robust import Client, header_names, header_values
from tests.strategies import mostly, text

pytestmark = pytest.mark.integration

StartAgent = Callable[..., Awaitable[RunningAgent]]
FIXTURES = Path(__file__).parents[1] / "fixtures" / "alertmanager"
TOKEN = "runtime-Hook-40913"
ROUTES = ("/api/v1/checks/history", "/api/v1/limits", "/api/v1/queues")


def _degradation(**queue: Any) -> dict[str, Any]:
    """An enabled engine over the agent's SQLite database, with webhook queue settings `queue`."""
    return {
        "enabled": True,
        "webhook": {"bearer_token_env": "VIGIL_RUNTIME_HOOK", "queue": queue},
        "rules": [{"name": "demo", "matchers": ['alertname="DemoDown"'], "level": "minimal"}],
    }


@pytest.fixture(autouse=True)
def hook_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """The webhook's token in the environment, as the config names it."""
    monkeypatch.setenv("VIGIL_RUNTIME_HOOK", TOKEN)


async def test_history_grows_as_checks_run_oldest_first(start_agent: StartAgent) -> None:
    """Each run of a check adds a point to its history, oldest first; `?check=` picks one."""
    agent = await start_agent(
        [*quiet_disk(0.1), {**quiet_disk(60)[0], "name": "slow"}],
    )

    async def three_runs() -> dict[str, Any] | None:
        status, body = await agent.send("GET", "/api/v1/checks/history")
        assert status == 200
        runs = {c["name"]: c["runs"] for c in body["checks"]}
        return body if len(runs["disk"]) >= 3 else None

    body = await poll_until(three_runs, 10, what="three runs of the disk check")

    assert body["size"] == 120
    disk = next(c for c in body["checks"] if c["name"] == "disk")
    assert disk["kind"] == "disk"
    assert disk["interval_seconds"] == 0.1
    times = [run["finished_at"] for run in disk["runs"]]
    assert times == sorted(times)
    # A run may time out on a busy machine: then it carries its reason.
    for run in disk["runs"]:
        assert run["status"] in ("healthy", "unhealthy")
        assert (run["reason"] is None) is (run["status"] == "healthy"), run
        assert run["duration_seconds"] >= 0
    assert [c["name"] for c in body["checks"]] == ["disk", "slow"]

    status, one = await agent.send("GET", "/api/v1/checks/history?check=slow")
    assert status == 200
    assert [c["name"] for c in one["checks"]] == ["slow"]
    assert len(one["checks"][0]["runs"]) <= 1  # a 60 s check runs once at start

    later = await poll_until(
        lambda: _more_runs(agent, len(disk["runs"])), 10, what="the disk history growing"
    )
    assert later[: len(disk["runs"])] == disk["runs"]  # far from the bound: nothing dropped


async def _more_runs(agent: RunningAgent, seen: int) -> list[dict[str, Any]] | None:
    _, body = await agent.send("GET", "/api/v1/checks/history?check=disk")
    runs: list[dict[str, Any]] = body["checks"][0]["runs"]
    return runs if len(runs) > seen else None


@pytest.mark.parametrize(
    ("query", "status", "error"),
    [
        ("check=nope", 404, "no check named 'nope'"),
        ("check=", 404, "no check named ''"),
        ("check=disk&check=disk", 400, "check given more than once"),
        ("name=disk", 400, "unknown parameter 'name'; known: check"),
    ],
)
async def test_history_refuses_what_it_does_not_know(
    start_agent: StartAgent, query: str, status: int, error: str
) -> None:
    """An unknown check is 404, a repeated or unknown parameter 400, each with a JSON error."""
    agent = await start_agent(quiet_disk(60))

    answer = await agent.send("GET", f"/api/v1/checks/history?{query}")

    assert answer == (status, {"error": error})


@pytest.mark.parametrize("path", ["/api/v1/limits?x=1", "/api/v1/queues?name=webhook"])
async def test_limits_and_queues_take_no_parameters(start_agent: StartAgent, path: str) -> None:
    """A query parameter on a route that takes none is a 400 naming it."""
    agent = await start_agent(quiet_disk(60))

    status, body = await agent.send("GET", path)

    assert status == 400
    assert "this route takes none" in body["error"]


async def test_limits_show_a_denial_after_the_limit_is_exceeded(start_agent: StartAgent) -> None:
    """One client past the API limit is denied; another reads the denial, the busiest key's
    full quota and both keys on `/api/v1/limits`."""
    agent = await start_agent(
        quiet_disk(60),
        # GCRA: no window boundary the test could straddle.
        api_rate_limit={"limit": 3, "period_seconds": 3600, "strategy": "gcra"},
    )
    assert [(await agent.get("/health"))[0] for _ in range(4)] == [200, 200, 200, 429]

    # The limit is per client address: 127.0.0.2 still has its own quota.
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0), force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as other,
        other.get(agent.base_url + "/api/v1/limits") as response,
    ):
        assert response.status == 200
        assert response.headers["RateLimit"].startswith('"api";r=2;')
        body = await response.json()

    (limiter,) = body["limiters"]
    assert limiter == {
        "name": "api",
        "limits": [
            {
                "name": "api",
                "strategy": "gcra",
                "limit": 3,
                "period_seconds": 3600.0,
                "burst": None,
                "capacity": 3,
            }
        ],
        "failure_policy": "open",
        "factor": 1.0,
        "decisions": {"allowed": 4, "denied": 1, "never": 0, "fail_open": 0, "fail_closed": 0},
        "rejections": 1,
        "storage_errors": 0,
        "keys": 2,
        "utilization": 1.0,
    }


async def test_limits_list_nothing_when_the_api_limit_is_off(start_agent: StartAgent) -> None:
    """With `api_rate_limit.enabled: false` the agent has no limiter to show."""
    agent = await start_agent(quiet_disk(60), api_rate_limit={"enabled": False})

    assert await agent.send("GET", "/api/v1/limits") == (200, {"limiters": []})


async def test_queues_list_nothing_without_the_degradation_engine(start_agent: StartAgent) -> None:
    """Without the degradation engine the agent runs no work queue."""
    agent = await start_agent(quiet_disk(60))

    assert await agent.send("GET", "/api/v1/queues") == (200, {"queues": []})


async def _queue(agent: RunningAgent) -> dict[str, Any]:
    """The webhook queue as `/api/v1/queues` shows it."""
    status, answer = await agent.send("GET", "/api/v1/queues")
    assert status == 200
    (queue,) = answer["queues"]
    return dict(queue)


async def _until_queue(agent: RunningAgent, what: str, **fields: int) -> dict[str, Any]:
    """Poll the webhook queue until each of `fields` (`depth`, `running`) has its value."""

    async def reached() -> dict[str, Any] | None:
        queue = await _queue(agent)
        return queue if all(queue[k] == v for k, v in fields.items()) else None

    return await poll_until(reached, 10, interval=0.02, what=what)


class _Notifications:
    """Alertmanager notifications sent in the background, each a distinct alert."""

    def __init__(self, agent: RunningAgent) -> None:
        self.agent = agent
        self.payload = json.loads((FIXTURES / "webhook_firing.json").read_text())["body"]
        self.sent: list[asyncio.Task[tuple[int, Any]]] = []

    def send(self) -> None:
        body = json.loads(json.dumps(self.payload))
        body["alerts"][0]["fingerprint"] = f"runtime{len(self.sent)}"
        self.sent.append(
            asyncio.create_task(
                self.agent.send("POST", "/webhooks/alertmanager", body, token=TOKEN)
            )
        )

    async def statuses(self) -> list[int]:
        return [status for status, _ in await asyncio.gather(*self.sent)]


def _hold(agent: RunningAgent) -> sqlite3.Connection:
    """Another writer holding the agent's database: every commit of the engine waits on it
    (up to the database's busy timeout, 5 s)."""
    database = agent.agent.database
    assert database is not None
    lock = sqlite3.connect(database.path, isolation_level=None, check_same_thread=False)
    lock.execute("BEGIN IMMEDIATE")
    return lock


def _release(lock: sqlite3.Connection) -> None:
    lock.execute("ROLLBACK")
    lock.close()


async def test_queues_show_depth_while_the_store_is_held(start_agent: StartAgent) -> None:
    """While another writer holds the database, notifications wait in the webhook queue: the
    route shows them queued and running, refusing at capacity, and all completed after."""
    agent = await start_agent(
        quiet_disk(60), degradation=_degradation(capacity=3, max_workers=1, deadline_seconds=60)
    )
    notifications = _Notifications(agent)
    lock = _hold(agent)
    try:
        notifications.send()
        await _until_queue(agent, "one notification running", running=1)
        for _ in range(3):
            notifications.send()
        queue = await _until_queue(agent, "three notifications queued", depth=3, running=1)
        assert queue["name"] == "webhook"
        assert queue["capacity"] == 3
        assert queue["depth_by_priority"] == {"high": 0, "normal": 3, "low": 0}
        assert queue["workers"] == {"current": 1, "min": 1, "max": 1}
        assert queue["backpressure"]["active"] is True  # depth_high defaults to capacity
        assert queue["backpressure"]["refusing"] is True
        assert queue["backpressure"]["depth_high"] == 3
        assert queue["backpressure"]["depth_low"] == 2
        assert queue["counts"]["accepted"] == 4
        assert queue["counts"]["completed"] == 0
    finally:
        _release(lock)
    assert await notifications.statuses() == [200, 200, 200, 200]

    queue = await _queue(agent)
    assert (queue["depth"], queue["running"]) == (0, 0)
    assert queue["backpressure"]["refusing"] is False
    assert queue["counts"] == {
        "accepted": 4,
        "refused": 0,
        "expired": 0,
        "failed": 0,
        "completed": 4,
        "cancelled": 0,
        "retried": 0,
    }


async def test_a_full_queue_counts_a_refusal(start_agent: StartAgent) -> None:
    """A notification turned away by the full queue is counted as refused, not accepted."""
    agent = await start_agent(
        quiet_disk(60), degradation=_degradation(capacity=1, max_workers=1, deadline_seconds=60)
    )
    notifications = _Notifications(agent)
    lock = _hold(agent)
    try:
        notifications.send()
        await _until_queue(agent, "one notification running", running=1)
        notifications.send()
        await _until_queue(agent, "one notification queued", depth=1, running=1)
        notifications.send()

        async def refused() -> dict[str, Any] | None:
            queue = await _queue(agent)
            return queue if queue["counts"]["refused"] else None

        queue = await poll_until(refused, 10, interval=0.02, what="a refusal counted")
        assert (queue["depth"], queue["running"], queue["counts"]["refused"]) == (1, 1, 1)
    finally:
        _release(lock)
    assert await notifications.statuses() == [200, 200, 503]

    counts = (await _queue(agent))["counts"]
    assert (counts["accepted"], counts["refused"], counts["completed"]) == (2, 1, 2)


async def test_an_active_alert_keeps_its_runbook_url(start_agent: StartAgent) -> None:
    """The captured Alertmanager notification's `runbook_url` is stored with its alert, in the
    engine's state and in the database's state document."""
    agent = await start_agent(quiet_disk(60), degradation=_degradation())
    payload = json.loads((FIXTURES / "webhook_firing.json").read_text())["body"]
    fingerprint = payload["alerts"][0]["fingerprint"]
    url = payload["alerts"][0]["annotations"]["runbook_url"]

    status, _ = await agent.send("POST", "/webhooks/alertmanager", payload, token=TOKEN)

    assert status == 200
    degradation = agent.agent.degradation
    assert degradation is not None
    assert degradation.engine.state.book.active[fingerprint].runbook_url == url
    database = agent.agent.database
    assert database is not None
    with contextlib.closing(sqlite3.connect(database.path)) as reader:
        (document,) = reader.execute("SELECT document FROM state").fetchone()
    (stored,) = json.loads(document)["book"]["active"]
    assert stored["runbook_url"] == url


# Query strings: each route's own parameter valid or close, repeated, unknown ones, raw pieces.
pieces = text.map(lambda t: urllib.parse.quote(t, safe="")) | st.sampled_from(
    ["%ff", "%", "%zz", "disk", "%C2%B2", "9" * 3000, "api%0A", "&", "=", ";"]
)
parameters = st.lists(
    st.tuples(st.just("check"), mostly(st.sampled_from(["disk", "DISK", ""]), pieces))
    | st.tuples(pieces, pieces),
    max_size=4,
)
# Under aiohttp's 8190-byte request line, which answers longer ones itself.
queries = (parameters.map(lambda pairs: "&".join(f"{k}={v}" for k, v in pairs)) | pieces).filter(
    lambda query: len(query) < 7000
)


@pytest.fixture
async def runtime_client(start_agent: StartAgent) -> AsyncIterator[Client]:
    """An agent with a limiter (too large to refuse the examples) and a webhook queue."""
    agent = await start_agent(
        quiet_disk(0.2), degradation=_degradation(), api_rate_limit={"limit": 10_000_000}
    )
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield Client(agent, session)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    route=st.sampled_from(ROUTES),
    query=st.none() | queries,
    headers=st.dictionaries(header_names, header_values, max_size=4),
    method=mostly(st.just("GET"), st.sampled_from(["HEAD", "POST", "PUT", "DELETE"])),
)
async def test_any_query_and_headers_get_no_5xx(
    runtime_client: Client,
    route: str,
    query: str | None,
    headers: dict[str, str],
    method: str,
) -> None:
    """Any query string and headers on a runtime route: a 2xx or 4xx with a JSON error, never
    a 5xx, and the agent still answers after."""
    path = route if query is None else f"{route}?{query}"

    status, answer = await runtime_client.send(method, path, None, headers)

    event(f"{method} {route} {status}")
    assert status < 500, (status, answer)
    if method == "GET" and 400 <= status < 500:
        assert isinstance(answer, dict)
        assert isinstance(answer["error"], str)
    if method == "GET" and status == 200:
        assert isinstance(answer, dict)
    await runtime_client.assert_alive()
