"""What the backups API promises outside its handlers: its OpenAPI document (served with or
without the degradation API, one admin check for both), its page in docs/http-api.md, and the
catalogue's actor column migrating an older database."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from agent.backup import catalogue as tables
from agent.database import Schema
from agent.database.connection import connect
from agent.database.schema import versions
from agent.server.backup_api import BackupRequest, DrillRequest, VerifyRequest
from agent.server.openapi import document
from tests.harness.checks import quiet_disk
from tests.harness.wait import FakeClock, poll_until
from tests.integration.conftest import RunningAgent
from tests.integration.test_backup_api import ADMIN, ADMIN_ENV, START, api, backup_settings

pytestmark = pytest.mark.integration

DOCS = Path(__file__).parents[2] / "docs" / "http-api.md"


async def test_the_openapi_document_lists_the_backup_routes(
    start_agent: Callable[..., Awaitable[RunningAgent]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With degradation off the agent serves the backups' document; with it on, one document
    holds both, and one admin token (shared check) authorizes both APIs."""
    monkeypatch.setenv(ADMIN_ENV, ADMIN)
    monkeypatch.setenv("VIGIL_BACKUP_API_HOOK", "backup-Hook-2291")
    alone = await start_agent(
        quiet_disk(), clock=FakeClock(START), degradation={"admin_token_env": ADMIN_ENV},
        backup=backup_settings(tmp_path / "a"),
    )  # fmt: skip
    both = await start_agent(
        quiet_disk(),
        clock=FakeClock(START),
        degradation={
            "enabled": True,
            "admin_token_env": ADMIN_ENV,
            "webhook": {"bearer_token_env": "VIGIL_BACKUP_API_HOOK"},
        },
        backup=backup_settings(tmp_path / "b"),
        data_dir=str(tmp_path / "b-data"),
    )

    backup_paths = {
        "/api/v1/backups",
        "/api/v1/backups/jobs",
        "/api/v1/backups/runs",
        "/api/v1/backups/jobs/{job}/backup",
        "/api/v1/backups/jobs/{job}/verify",
        "/api/v1/backups/jobs/{job}/drill",
    }
    _, alone_doc = await alone.send("GET", "/api/v1/openapi.json")
    _, both_doc = await both.send("GET", "/api/v1/openapi.json")
    runtime_paths = {"/api/v1/checks/history", "/api/v1/limits", "/api/v1/queues"}
    assert set(alone_doc["paths"]) == backup_paths | runtime_paths
    assert backup_paths < set(both_doc["paths"])
    assert "/api/v1/degradation/pin" in both_doc["paths"]
    assert set(both_doc["components"]["schemas"]) >= {"BackupRequest", "PinRequest"}
    pin = {"level": "minimal", "reason": "drill"}
    assert (await both.send("POST", "/api/v1/degradation/pin", pin, token=ADMIN))[0] == 200
    assert (await both.send("POST", "/api/v1/backups/jobs/src/backup", token=ADMIN))[0] == 202
    await poll_until(lambda: not api(both)._tasks, 30, what="the backup to end")


def test_routes_and_fields_are_documented() -> None:
    """Every route of the backups' OpenAPI document and every request field appears in
    docs/http-api.md."""
    page = DOCS.read_text()
    routes = document(degradation=False, backups=True)["paths"]

    assert sorted(r for r in routes if f"`{r}`" not in page) == []
    for model in (BackupRequest, VerifyRequest, DrillRequest):
        assert [f for f in model.model_fields if f"`{f}`" not in page] == [], model.__name__


def test_runs_recorded_before_the_actor_column_read_as_null(tmp_path: Path) -> None:
    """A database whose backup schema predates the actor column is migrated in place: its runs
    stay, with actor null, and new runs record theirs."""
    path = tmp_path / "vigil.db"
    first = Schema(
        tables.SCHEMA.name, tables.SCHEMA.migrations[:1]
    )  # the schema as it shipped first
    old = connect(path, 5, [first])
    with old:
        old.execute(
            "INSERT INTO backup_runs (job, operation, started, ended, ok) VALUES"
            " ('src', 'backup', 1, 2, 1)"
        )
    old.close()

    db = connect(path, 5, [tables.SCHEMA])
    tables.record(db, tables.Run("src", "verify", 3, 4, True, actor="alice"))
    found = [(r.operation, r.actor) for r in tables.runs(db)]
    version = versions(db)[tables.SCHEMA.name]
    db.close()

    assert found == [("verify", "alice"), ("backup", None)]
    assert version == tables.SCHEMA.version == 2
