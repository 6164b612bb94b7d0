"""The backups API of a running agent with a files job on a temporary tree: jobs, backups and
runs read from the real catalogue; backups, verifications and drills started over HTTP, recorded
with who asked; refusals (401, 404, 409, 400) that start nothing."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import shutil
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from agent.server.auth import Principal
from agent.server.backup_api import BackupApi
from tests.harness.checks import quiet_disk
from tests.harness.wait import FakeClock, poll_until
from tests.integration.conftest import RunningAgent
from tests.integration.test_webhook_robust import Client

pytestmark = pytest.mark.integration

ADMIN = "backup-Admin-6113"
ADMIN_ENV = "VIGIL_BACKUP_API_ADMIN"
START = datetime(2027, 3, 1, 2, 59, 0, tzinfo=UTC).timestamp()


def backup_settings(tmp_path: Path) -> dict[str, Any]:
    """One files job over a small tree, a full every day at 03:00 and a drill at 04:30."""
    source = tmp_path / "src"
    (source / "dir").mkdir(parents=True, exist_ok=True)
    (source / "dir" / "file.txt").write_text("first\n")
    (source / "other.txt").write_text("x" * 5000)
    return {
        "repository": {"path": str(tmp_path / "repo")},
        "jobs": [
            {
                "name": "src",
                "kind": "files",
                "source": str(source),
                "schedule": {"full": "0 3 * * *"},
                "drill": {"schedule": "30 4 * * *", "files": ["dir/file.txt"]},
            }
        ],
    }


@pytest.fixture
async def backups_agent(
    start_agent: Callable[..., Awaitable[RunningAgent]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> RunningAgent:
    """An agent with the files job `src`, degradation off, the admin token set, on a fake clock
    that stays before the first scheduled fire (only the API starts runs)."""
    monkeypatch.setenv(ADMIN_ENV, ADMIN)
    return await start_agent(
        quiet_disk(),
        clock=FakeClock(START),
        degradation={"admin_token_env": ADMIN_ENV},
        backup=backup_settings(tmp_path),
    )


@pytest.fixture
async def client(backups_agent: RunningAgent) -> AsyncIterator[Client]:
    """A client opening a new connection per request (a refused body never reaches the next)."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield Client(backups_agent, session)


def api(agent: RunningAgent) -> BackupApi:
    """The agent's backups API."""
    assert agent.agent.backup_api is not None
    return agent.agent.backup_api


async def idle(agent: RunningAgent) -> None:
    """Wait until no operation started over the API is still running."""
    await poll_until(lambda: not api(agent)._tasks, 30, what="the API's runs to end")


async def catalogue(agent: RunningAgent) -> tuple[list[Any], list[Any]]:
    """Every recorded run and backup, straight from the service."""
    service = api(agent).backups
    return [r.as_json() for r in service.runs(limit=10_000)], [
        e.as_json() for e in service.listing()
    ]


@contextlib.contextmanager
def held_lock(path: Path) -> Iterator[None]:
    """Hold the lock file `path` as another process's run would (flock, exclusive)."""
    with path.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        yield


def admin(**more: str) -> dict[str, str]:
    """Headers with the admin token."""
    return {"Authorization": f"Bearer {ADMIN}", **more}


async def post(
    client: Client,
    job: str,
    operation: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """POST a JSON body (or none) to start `operation` of `job`."""
    data = None if body is None else json.dumps(body).encode()
    return await client.send(
        "POST",
        f"/api/v1/backups/jobs/{job}/{operation}",
        data,
        admin() if headers is None else headers,
    )


async def start_and_wait(client: Client, operation: str, body: Any = None) -> dict[str, Any]:
    """Start `operation` of `src` over the API, wait for it, and return its run."""
    status, answer = await post(client, "src", operation, body)
    assert status == 202, answer
    await idle(client.agent)
    _, runs = await client.send("GET", f"/api/v1/backups/runs?operation={operation}&limit=1")
    return dict(runs["runs"][0])


async def test_jobs_show_schedules_before_any_run(client: Client) -> None:
    """A job that never ran: its kind, its crons with their next fire in ISO 8601 UTC, nothing
    running, no outcomes."""
    status, answer = await client.send("GET", "/api/v1/backups/jobs")

    assert status == 200, answer
    assert answer == {
        "jobs": [
            {
                "name": "src",
                "kind": "files",
                "mode": None,
                "schedules": {
                    "full": {"cron": "0 3 * * *", "next": "2027-03-01T03:00:00.000Z"},
                    "differential": None,
                    "incremental": None,
                    "drill": {"cron": "30 4 * * *", "next": "2027-03-01T04:30:00.000Z"},
                },
                "running": None,
                "last_success": {},
                "last_backup": None,
                "last_verification": None,
                "last_drill": None,
                "failures": {},
                "backups": 0,
            }
        ]
    }


async def test_a_backup_started_over_the_api_is_catalogued_with_its_actor(client: Client) -> None:
    """POST .../backup answers 202 at once; the backup appears in /api/v1/backups with the CLI's
    fields, and its run in /api/v1/backups/runs with the actor the request named."""
    status, answer = await post(client, "src", "backup", {"type": "full", "actor": "alice"})

    assert status == 202, answer
    assert answer == {
        "job": "src",
        "operation": "backup",
        "accepted_at": "2027-03-01T02:59:00.000Z",
    }
    await idle(client.agent)
    _, listed = await client.send("GET", "/api/v1/backups")
    [entry] = api(client.agent).backups.listing("src")
    assert listed == {"backups": [entry.as_json()]}
    assert listed["backups"][0]["type"] == "full"
    _, runs = await client.send("GET", "/api/v1/backups/runs?job=src")
    [run] = runs["runs"]
    assert (run["operation"], run["ok"], run["backup_id"], run["actor"]) == (
        "backup",
        True,
        entry.manifest.id,
        "alice",
    )
    log = client.agent.log.getvalue()
    events = [json.loads(line) for line in log.splitlines()]
    started = [e for e in events if e["event"] == "backup operation started"]
    assert [(e["job"], e["operation"], e["actor"]) for e in started] == [("src", "backup", "alice")]
    assert ADMIN not in log


async def test_verify_and_drill_over_the_api_show_in_the_jobs(client: Client) -> None:
    """A backup, an incremental, a verification of the newest (no body) and a drill of the first
    (by id): each recorded with its actor (`api` for the token without one), and the job's last
    backup, verification, drill and successes say so."""
    first = await start_and_wait(client, "backup")
    (Path(api(client.agent).backups.settings.jobs[0].source) / "new.txt").write_text("new\n")
    second = await start_and_wait(client, "backup", {"type": "incremental", "actor": "bob"})
    verify = await start_and_wait(client, "verify")
    drill = await start_and_wait(client, "drill", {"backup_id": first["backup_id"]})

    assert [r["actor"] for r in (first, second, verify, drill)] == ["api", "bob", "api", "api"]
    assert (verify["ok"], verify["backup_id"]) == (True, second["backup_id"])
    assert (drill["ok"], drill["backup_id"]) == (True, first["backup_id"])
    _, listed = await client.send("GET", "/api/v1/backups?job=src&limit=1")
    assert [b["id"] for b in listed["backups"]] == [second["backup_id"]]
    assert listed["backups"][0]["type"] == "incremental"
    _, answer = await client.send("GET", "/api/v1/backups/jobs")
    [job] = answer["jobs"]
    newest = api(client.agent).backups.listing("src")[-1].manifest
    assert job["last_backup"] == {
        "id": newest.id,
        "type": "incremental",
        "ended": "2027-03-01T02:59:00.000Z",
        "duration_seconds": 0.0,
        "plain_bytes": newest.plain_bytes,
        "stored_bytes": newest.stored_bytes,
    }
    assert job["last_verification"] == {
        "at": "2027-03-01T02:59:00.000Z",
        "ok": True,
        "reason": None,
        "backup_id": second["backup_id"],
    }
    assert job["last_drill"]["ok"] is True
    assert job["last_drill"]["rto_seconds"] >= 0
    assert job["last_drill"]["rpo_seconds"] == 0
    assert set(job["last_success"]) == {"backup", "verify", "drill"}
    assert (job["backups"], job["running"], job["failures"]) == (2, None, {})


async def test_a_failed_run_is_counted_by_reason(client: Client) -> None:
    """A backup whose source is gone is accepted (202) and fails: the run says why and the job
    counts the failure by operation and reason."""
    source = Path(api(client.agent).backups.settings.jobs[0].source)
    await asyncio.to_thread(shutil.rmtree, source)

    run = await start_and_wait(client, "backup", {"actor": "carol"})

    assert (run["ok"], run["reason"], run["actor"]) == (False, "source", "carol")
    _, answer = await client.send("GET", "/api/v1/backups/jobs")
    assert answer["jobs"][0]["failures"] == {"backup": {"source": 1}}


@pytest.mark.parametrize("operation", ["backup", "verify", "drill"])
async def test_a_job_whose_lock_is_held_gets_409(client: Client, operation: str) -> None:
    """While another process holds the job's lock, starting anything gets 409 saying the job
    is running, and nothing is recorded."""
    await start_and_wait(client, "backup")  # something to verify and drill
    before = await catalogue(client.agent)
    locks = api(client.agent).backups.repository.root / "locks"

    with held_lock(locks / "src.lock"):
        status, answer = await post(client, "src", operation)

    assert status == 409, answer
    assert answer == {"error": "job src is already running (another process holds its lock)"}
    await idle(client.agent)
    assert await catalogue(client.agent) == before


async def test_a_run_in_progress_is_named_in_the_409(client: Client) -> None:
    """While a backup started over the API runs (held, without timing, where it records its
    run: the test occupies the database's one thread), another start gets 409 naming it."""
    service = api(client.agent).backups
    entered, gate = threading.Event(), threading.Event()

    def hold(db: Any) -> None:
        entered.set()
        gate.wait(30)

    holder = asyncio.create_task(asyncio.to_thread(service.database.call, hold))
    await asyncio.to_thread(entered.wait, 30)
    try:
        status, answer = await post(client, "src", "backup")  # reads no catalogue to start
        busy = await post(client, "src", "backup")
    finally:
        gate.set()
    await holder
    await idle(client.agent)

    assert status == 202, answer
    assert busy == (409, {"error": "job src is already running a backup"})
    assert [r.ok for r in service.runs()] == [True]


async def test_unauthorized_starts_get_401_and_start_nothing(client: Client) -> None:
    """No token, a wrong one, another scheme: 401 with the admin API's answer, nothing run."""
    before = await catalogue(client.agent)
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {ADMIN}"}):
        for operation in ("backup", "verify", "drill"):
            status, answer = await post(client, "src", operation, {}, headers)
            assert status == 401, answer
            assert answer == {
                "error": "admin API writes need degradation.admin_token_env and its Bearer token"
            }
    await idle(client.agent)
    assert await catalogue(client.agent) == before


@pytest.mark.parametrize(
    ("operation", "job", "body", "status", "error"),
    [
        ("backup", "ghost", None, 404, "no backup job 'ghost' (known: src)"),
        ("verify", "src", None, 409, "job src has no backup to verify"),
        ("drill", "src", None, 409, "job src has no backup to drill"),
        ("verify", "src", {"backup_id": "20270301T025900Z-F"}, 404, None),
        ("drill", "src", {"backup_id": "nope"}, 404, "job src has no backup 'nope'"),
        ("backup", "src", {"type": "weekly"}, 400, "invalid request body"),
        ("backup", "src", {"backup_id": "x"}, 400, "invalid request body"),
        ("verify", "src", {"type": "full"}, 400, "invalid request body"),
        ("backup", "src", {"actor": "a\nb"}, 400, "invalid request body"),
        ("backup", "src", {"actor": "ab\n"}, 400, "invalid request body"),
        ("backup", "src", {"actor": ""}, 400, "invalid request body"),
        ("backup", "src", [], 400, "invalid request body"),
        ("backup", "src", "full", 400, "invalid request body"),
    ],
)
async def test_refused_starts_say_why_and_start_nothing(
    client: Client, operation: str, job: str, body: Any, status: int, error: str | None
) -> None:
    """An unknown job or backup is 404, nothing to verify or drill is 409, a bad body is 400;
    each starts and records nothing."""
    before = await catalogue(client.agent)

    answer = await post(client, job, operation, body)

    assert answer[0] == status, answer
    if error is not None:
        assert answer[1]["error"] == error
    await idle(client.agent)
    assert await catalogue(client.agent) == before


@pytest.mark.parametrize(
    ("path", "error"),
    [
        (
            "/api/v1/backups?limt=5",
            "unknown parameter 'limt'; known: job, kind, since, until, limit",
        ),
        ("/api/v1/backups?limit=0", "limit must be an integer from 1 to 10000"),
        ("/api/v1/backups?limit=%C2%B2", "limit must be an integer from 1 to 10000"),
        ("/api/v1/backups?limit=1&limit=2", "limit given more than once"),
        (
            "/api/v1/backups?kind=tar",
            "kind must be one of files, postgres_logical, postgres_physical",
        ),
        (
            "/api/v1/backups?since=2027-03-01T00:00:00",
            "since must be an RFC 3339 time with an offset, e.g. 2026-12-06T23:30:00Z",
        ),
        (
            "/api/v1/backups?until=yesterday",
            "until must be an RFC 3339 time with an offset, e.g. 2026-12-06T23:30:00Z",
        ),
        ("/api/v1/backups?job=Src", "job must be a job name (lowercase letters, digits, _ . -)"),
        (
            "/api/v1/backups/runs?operation=nap",
            "operation must be one of backup, verify, restore, drill, prune",
        ),
        (
            "/api/v1/backups/runs?kind=files",
            "unknown parameter 'kind'; known: job, operation, limit",
        ),
        ("/api/v1/backups/jobs?job=src", "unknown parameter 'job'; known: none"),
    ],
)
async def test_bad_query_parameters_are_named_in_a_400(
    client: Client, path: str, error: str
) -> None:
    """Each bad, repeated or unknown parameter is a 400 naming it."""
    assert await client.send("GET", path) == (400, {"error": error})


async def test_backups_filter_by_time_and_kind(client: Client) -> None:
    """`since` and `until` bound the start time (with any offset), `kind` and `job` the rest."""
    await start_and_wait(client, "backup")

    cases = {
        "since=2027-03-01T02:59:00Z": 1,
        "since=2027-03-01T03:59:01%2B01:00": 0,
        "until=2027-03-01T02:59:00Z": 0,
        "until=2027-03-01T02:59:01Z&kind=files&job=src": 1,
        "kind=postgres_logical": 0,
        "job=other": 0,
    }
    for query, count in cases.items():
        status, answer = await client.send("GET", f"/api/v1/backups?{query}")
        assert (status, len(answer["backups"])) == (200, count), query


async def test_a_plugged_in_credential_sets_the_actor(client: Client) -> None:
    """Another kind of credential registered with the shared admin check (as a console's login
    session will be) authorizes starts as its operator, who may not be renamed by the body."""
    sessions = {"s3cret-session": "dora"}

    def session(request: web.Request) -> Principal | None:
        operator = sessions.get(request.headers.get("X-Session", ""))
        return None if operator is None else Principal(operator)

    api(client.agent).auth.register(session)
    headers = {"X-Session": "s3cret-session"}

    renamed = await post(client, "src", "backup", {"actor": "eve"}, headers)
    status, answer = await post(client, "src", "backup", {}, headers)

    assert renamed[0] == 400, renamed
    assert status == 202, answer
    await idle(client.agent)
    _, runs = await client.send("GET", "/api/v1/backups/runs")
    assert [r["actor"] for r in runs["runs"]] == ["dora"]
