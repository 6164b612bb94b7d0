"""The backups API never answers 5xx for what a request holds, and a request it does not accept
changes nothing: any query on the reads, any body, path piece and headers on the starts. And
the agent's stop waits for the runs the API started."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import aiohttp
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from agent.server.agent import Agent
from tests.harness.checks import quiet_disk
from tests.harness.wait import FakeClock
from tests.integration.conftest import agent_config
from tests.integration.test_admin_robust import bodies, json_values, pieces, times
from tests.integration.test_backup_api import (
    ADMIN,
    ADMIN_ENV,
    START,
    backup_settings,
    backups_agent,
    catalogue,
    client,
    idle,
)
from tests.integration.test_webhook_robust import (
    ONE_AGENT,
    Client,
    header_values,
    route_requests,
    weighted,
)
from tests.strategies import mostly, text

__all__ = ["backups_agent", "client"]  # the fixtures, shared with the behaviour tests
pytestmark = pytest.mark.integration


def _query(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{urllib.parse.quote(k, safe='%')}={v}" for k, v in pairs)


def _quoted(values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return values.map(lambda v: urllib.parse.quote(v, safe=""))


limits = st.integers(-5, 20_000).map(str) | pieces
job_names = _quoted(st.sampled_from(["src", "other", "Src", ""])) | pieces
backup_queries = st.lists(
    st.tuples(st.just("job"), job_names)
    | st.tuples(st.just("kind"), _quoted(st.sampled_from(["files", "postgres_logical", "tar"])))
    | st.tuples(st.sampled_from(["since", "until"]), times)
    | st.tuples(st.just("limit"), limits)
    | st.tuples(pieces, pieces),
    max_size=5,
).map(_query)
run_queries = st.lists(
    st.tuples(st.just("job"), job_names)
    | st.tuples(st.just("operation"), _quoted(st.sampled_from(["backup", "drill", "nap"])))
    | st.tuples(st.just("limit"), limits)
    | st.tuples(pieces, pieces),
    max_size=4,
).map(_query)
job_queries = st.lists(st.tuples(pieces, pieces), max_size=2).map(_query)
starts = st.fixed_dictionaries(
    {},
    optional={
        "type": mostly(st.sampled_from(["full", "incremental", "differential"]), json_values),
        "backup_id": mostly(st.sampled_from(["latest", "20270301T025900Z-F"]), text | json_values),
        "actor": mostly(st.sampled_from(["alice", "ops.bob@example"]), text | json_values),
        "unknown": json_values,
    },
)
start_bodies = st.just(b"") | bodies(starts)
start_paths = st.builds(
    "/api/v1/backups/jobs/{}/{}".format,
    mostly(st.just("src"), pieces),
    st.sampled_from(["backup", "verify", "drill"]),
)
starts_route = st.tuples(st.just("POST"), start_paths, start_bodies)
routes = weighted(
    st.tuples(st.just("GET"), backup_queries.map("/api/v1/backups?{}".format), st.just(b"")),
    st.tuples(st.just("GET"), run_queries.map("/api/v1/backups/runs?{}".format), st.just(b"")),
    st.tuples(st.just("GET"), job_queries.map("/api/v1/backups/jobs?{}".format), st.just(b"")),
    starts_route,  # the starts weigh as much as the reads together: they hold more to get wrong
    starts_route,
    starts_route,
)
authorizations = weighted(
    st.just(f"Bearer {ADMIN}"), st.just(f"Bearer {ADMIN}"), st.none(), header_values
)


@ONE_AGENT
@given(request=route_requests(routes, authorizations))
async def test_any_backups_request_gets_no_5xx_and_refusals_change_nothing(
    client: Client, request: tuple[str, str, dict[str, str], bytes]
) -> None:
    """Any headers, path piece, query and body on a backups route: never a 5xx; anything but a
    202 leaves the catalogue's runs and backups as they were; `/healthz` answers after."""
    method, path, headers, body = request
    before = await catalogue(client.agent)

    status, answer = await client.send(method, path, body, headers)

    event(f"{method} {path.split('?')[0].rsplit('/', 1)[-1]} {status}")
    assert status < 500, (status, answer)
    await idle(client.agent)
    if status != 202:
        assert await catalogue(client.agent) == before, (status, answer)
    else:
        assert set(answer) == {"job", "operation", "accepted_at"}
    await client.assert_alive()


async def test_stopping_the_agent_waits_for_runs_started_over_the_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backup started over the API just before the agent stops is awaited by the stop: no
    task is left, and its run is in the catalogue (done, or cancelled at its next chunk)."""
    monkeypatch.setenv(ADMIN_ENV, ADMIN)
    config = agent_config(
        quiet_disk(),
        tmp_path,
        degradation={"admin_token_env": ADMIN_ENV},
        backup=backup_settings(tmp_path),
    )
    agent = Agent(config, clock=FakeClock(START))
    await agent.start()
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{agent.port}/api/v1/backups/jobs/src/backup"
            headers = {"Authorization": f"Bearer {ADMIN}"}
            async with session.post(url, headers=headers) as response:
                assert response.status == 202, await response.text()
    finally:
        await agent.stop()

    assert agent.backup_api is not None
    assert agent.backups is not None
    assert not agent.backup_api._tasks
    runs = agent.backups.backups.runs()
    assert [(r.operation, r.actor, r.reason in (None, "cancelled")) for r in runs] == [
        ("backup", "api", True)
    ]
