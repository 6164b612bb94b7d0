"""`vigil state backup` while the agent runs and `vigil state restore` while it is stopped, as an
operator runs them: a restore brings back the level, alerts, pin, flags and audit trail."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.database import Database
from agent.degradation.sqlitestore import SCHEMA, SqliteStateStore
from tests.integration.test_degradation_api import ADMIN, DISK, TOKEN, degradation, reference

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    """Webhook and admin tokens in the environment, as `degradation()` names them."""
    monkeypatch.setenv("VIGIL_TEST_HOOK", TOKEN)
    monkeypatch.setenv("VIGIL_TEST_ADMIN", ADMIN)


def _config_file(tmp_path: Path) -> Path:
    """A config naming the data directory the `start_agent` fixture uses."""
    path = tmp_path / "vigil.yaml"
    document = {
        "agent": {"data_dir": str(tmp_path / "data")},
        "degradation": degradation(),
        "checks": DISK,
    }
    path.write_text(yaml.safe_dump(document))
    return path


async def vigil_state(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`vigil state ARGS --config CONFIG` in a fresh interpreter, off the agent's event loop."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "agent", "state", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )


async def _seen(agent: Any) -> dict[str, Any]:
    """The level, alerts, pin, flags and audit an agent serves (the time-free part)."""
    _, status = await agent.send("GET", "/api/v1/degradation")
    _, audit = await agent.send("GET", "/api/v1/audit?limit=1000")
    _, flags = await agent.send("GET", "/api/v1/flags")
    kept = ("level", "version", "active_alerts", "pin", "flags_off", "reasons")
    return {
        "status": {k: status[k] for k in kept},
        "audit": audit["entries"],
        "flags": flags["flags"],
    }


def _bytes(path: Path) -> bytes:
    return path.read_bytes()


async def test_a_restore_brings_back_what_the_backup_held(start_agent, tmp_path: Path) -> None:
    """A backup taken while the agent runs, restored after later changes with the agent
    stopped, gives the level, alerts, pin, flags and audit of the moment of the backup; the
    replaced database is kept, and a restore while an agent runs is refused."""
    config = _config_file(tmp_path)
    agent = await start_agent(DISK, degradation=degradation())
    await agent.send(
        "POST", "/webhooks/alertmanager", reference("webhook_firing.json"), token=TOKEN
    )
    pin = {"level": "maintenance", "reason": "failover", "ttl_seconds": None, "actor": "alice"}
    await agent.send("POST", "/api/v1/degradation/pin", pin, token=ADMIN)
    await agent.send("PUT", "/api/v1/flags/search", {"enabled": True}, token=ADMIN)
    at_backup = await _seen(agent)
    backup = tmp_path / "backups" / "vigil-state.db"
    backup.parent.mkdir()

    done = await vigil_state(config, "backup", str(backup))

    assert done.returncode == 0, done.stderr
    assert f"to {backup}: " in done.stdout
    assert "verified" in done.stdout
    assert "degradation schema 1" in done.stdout
    again = await vigil_state(config, "backup", str(backup))
    assert again.returncode == 1
    assert "exists already" in again.stderr

    await agent.send("POST", "/api/v1/degradation/unpin", {"actor": "bob"}, token=ADMIN)
    await agent.send("DELETE", "/api/v1/flags/search", token=ADMIN)
    await agent.send(
        "POST", "/webhooks/alertmanager", reference("webhook_resolved.json"), token=TOKEN
    )
    assert (await _seen(agent)) != at_backup
    refused = await vigil_state(config, "restore", str(backup))
    assert refused.returncode == 1
    assert "is in use by a running agent" in refused.stderr
    assert "stop it first" in refused.stderr
    await agent.agent.stop()

    done = await vigil_state(config, "restore", str(backup))

    assert done.returncode == 0, done.stderr
    assert f"from {backup}: " in done.stdout
    kept = [p for p in (tmp_path / "data").iterdir() if ".before-restore-" in p.name]
    assert len(kept) == 1
    assert f"kept as {kept[0]}" in done.stdout
    restored = await start_agent(DISK, degradation=degradation())
    assert await _seen(restored) == at_backup


async def test_a_backup_under_writes_is_one_consistent_moment(start_agent, tmp_path: Path) -> None:
    """While webhooks keep changing the state, the backup holds one state and exactly the
    audit entries up to its version, and passes SQLite's integrity check."""
    config = _config_file(tmp_path)
    agent = await start_agent(DISK, degradation=degradation(hold_seconds=0))
    firing, resolved = reference("webhook_firing.json"), reference("webhook_resolved.json")
    stop = asyncio.Event()

    async def churn() -> int:
        sent = 0
        while not stop.is_set():
            for body in (firing, resolved):
                status, _ = await agent.send("POST", "/webhooks/alertmanager", body, token=TOKEN)
                assert status == 200
                sent += 1
            firing["alerts"][0]["startsAt"] = (
                f"2026-12-06T20:{sent // 60 % 60:02d}:{sent % 60:02d}Z"
            )
            resolved["alerts"][0]["startsAt"] = firing["alerts"][0]["startsAt"]
        return sent

    writer = asyncio.create_task(churn())
    await asyncio.sleep(0.3)
    backup = tmp_path / "during-writes.db"
    done = await vigil_state(config, "backup", str(backup))
    stop.set()
    sent = await writer

    assert done.returncode == 0, done.stderr
    assert sent > 0
    db = sqlite3.connect(backup)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        versions = [row[0] for row in db.execute("SELECT version FROM audit")]
        ids = [json.loads(row[0])["id"] for row in db.execute("SELECT entry FROM audit")]
    finally:
        db.close()
    store = SqliteStateStore.at(backup)
    try:
        state = await store.load()
    finally:
        await store.close()
    assert state is not None
    assert max(versions) == state["version"]  # every entry of the state, none beyond it
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("kind", ["garbage", "foreign", "newer"])
async def test_a_backup_that_is_not_usable_is_refused(tmp_path: Path, kind: str) -> None:
    """A file that is not a SQLite database, a SQLite database that is not Vigil's, or one a
    newer Vigil wrote is refused with its reason (exit 1, or 3 for the newer one), and the
    database stays as it was."""
    config = _config_file(tmp_path)
    current = tmp_path / "data" / "vigil.db"
    store = SqliteStateStore.at(current)
    await store.commit(0, {"version": 1, "level": "full"}, [])
    await store.close()
    before = _bytes(current)
    candidate = tmp_path / "candidate.db"
    if kind == "garbage":
        candidate.write_bytes(b"not a database\n" * 500)
    else:
        db = sqlite3.connect(candidate)
        db.execute("CREATE TABLE other (x INTEGER)")
        db.commit()
        db.close()
        if kind == "newer":
            made = Database(candidate, [SCHEMA])
            made.call(lambda db: db.execute("UPDATE schema_versions SET version = 99"))
            made.release()

    done = await vigil_state(config, "restore", str(candidate))

    expected = {
        "garbage": (1, "not a usable SQLite database"),
        "foreign": (1, "not a Vigil database"),
        "newer": (3, "degradation schema 99 is newer than this agent knows (1)"),
    }[kind]
    assert (done.returncode, expected[1] in done.stderr) == (expected[0], True), done.stderr
    assert _bytes(current) == before
    assert not [p for p in current.parent.iterdir() if ".before-restore-" in p.name]
