"""An agent started over a data directory of the previous release (the file store's snapshot,
journal, audit log and flags file, written by that release's own agent: see
tests/fixtures/previous-release/make.py) imports it once into its database and renames the files
aside."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from agent.database import Database
from agent.degradation import legacy
from agent.degradation.flags import FlagDefinition
from agent.degradation.flagstore import upgrade_v1
from agent.degradation.sqlitestore import SCHEMA
from tests.harness.wait import FakeClock

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).parents[1] / "fixtures" / "previous-release"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())
FILES = {"audit.jsonl", "degradation.json", "degradation.json.journal", "flags.json"}
HOOK, ADMIN = "legacy-hook-7731", "legacy-admin-7731"
# What the previous release's status says that is not about time.
KEPT = ("active_alerts", "flags_off", "level", "pin", "pinned", "reasons", "version")


def settings() -> dict[str, Any]:
    """The degradation settings the fixture's agent ran with."""
    return {
        "enabled": True,
        "webhook": {"bearer_token_env": "LEGACY_HOOK"},
        "admin_token_env": "LEGACY_ADMIN",
        "hold_seconds": 0,
        "rules": [
            {
                "name": "demo",
                "matchers": ['alertname="DemoDown"'],
                "level": "minimal",
                "flags_off": ["recommendations"],
            }
        ],
    }


CHECKS = [{"name": "disk", "kind": "disk", "path": "/", "interval_seconds": 60}]


def at_fixture_time() -> FakeClock:
    """A clock just after the fixture's last level change: the engine's tick then finds nothing
    to prune (the flap guard's history ages out 30 minutes after a change) or expire, so the
    version it serves stays the fixture's, whenever the test runs."""
    return FakeClock(EXPECTED["status"]["since"] + 1)


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data directory holding the previous release's files (the agent's tokens set)."""
    monkeypatch.setenv("LEGACY_HOOK", HOOK)
    monkeypatch.setenv("LEGACY_ADMIN", ADMIN)
    target = tmp_path / "data"
    shutil.copytree(FIXTURE / "data", target)
    return target


async def _seen(agent: Any) -> dict[str, Any]:
    """What an agent serves: its status (the time-free part), its audit, its flags."""
    _, status = await agent.send("GET", "/api/v1/degradation")
    _, audit = await agent.send("GET", "/api/v1/audit?limit=1000")
    _, flags = await agent.send("GET", "/api/v1/flags")
    # Alerts gained `runbook_url` since that release; an imported alert has none.
    for alert in status["active_alerts"]:
        assert alert.pop("runbook_url") is None
    return {
        "status": {k: status[k] for k in KEPT},
        "audit": audit["entries"],
        "flags": flags["flags"],
    }


def _names(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def _events(agent: Any, event: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in agent.log.getvalue().splitlines()]
    return [line for line in lines if line["event"] == event]


IMPORTED = "imported the previous release's files into the database"
LEFT = "previous release's files left in place: the database holds other state already"


async def test_the_previous_release_files_are_imported_once(start_agent, data: Path) -> None:
    """The agent serves the level, alerts, pin, flags and the whole audit trail (newest first)
    that the previous release served; the files are renamed `<name>.imported`, the log says
    so, and a restart imports nothing again."""
    agent = await start_agent(CHECKS, degradation=settings(), clock=at_fixture_time())

    seen = await _seen(agent)
    assert seen["status"] == {k: EXPECTED["status"][k] for k in KEPT}
    # The previous release's flags as this release serves them: read as a version-1 document
    # (what the previous release wrote), with the fields added since at their defaults.
    assert seen["flags"] == [
        FlagDefinition.model_validate(upgrade_v1(flag)).model_dump(mode="json")
        for flag in EXPECTED["flags"]
    ]
    assert seen["audit"] == EXPECTED["audit"][::-1]
    names = _names(data)
    assert not names & FILES
    assert {f"{name}.imported" for name in FILES} <= names
    [event] = _events(agent, IMPORTED)
    assert (event["version"], event["audit_entries"], event["flags"]) == (8, 15, 1)
    assert sorted(Path(p).name for p in event["renamed"]) == sorted(f"{n}.imported" for n in FILES)

    # It goes on from the imported version, and a restart serves the same without importing.
    await agent.send("POST", "/api/v1/degradation/unpin", {"actor": "bob"}, token=ADMIN)
    await agent.agent.stop()
    again = await start_agent(CHECKS, degradation=settings(), clock=at_fixture_time())
    assert _events(again, IMPORTED) == []
    reseen = await _seen(again)
    assert reseen["status"] == seen["status"]  # unpinning without a pin changes nothing
    assert reseen["audit"] == seen["audit"]


async def test_a_crash_before_the_renames_finishes_them(start_agent, data: Path) -> None:
    """When the import committed but the files were not renamed yet (a crash between the
    two), the next start sees its own import: it renames the files and stores nothing twice."""
    database = Database(data / "vigil.db", [SCHEMA])
    database.acquire()
    try:
        await database.open()
        found = legacy.read(data)
        assert found is not None
        assert await database.run(lambda db: legacy._store(db, found)) is True
    finally:
        database.release()
    assert _names(data) >= FILES  # the files are still there

    agent = await start_agent(CHECKS, degradation=settings(), clock=at_fixture_time())

    [event] = _events(agent, IMPORTED)
    assert event["again"] is True
    assert not _names(data) & FILES
    seen = await _seen(agent)
    assert seen["audit"] == EXPECTED["audit"][::-1]  # each entry once


async def test_files_beside_a_database_with_other_state_are_left(
    start_agent, tmp_path: Path, data: Path
) -> None:
    """Files of the previous release that appear beside a database already holding other
    state are neither imported nor renamed, and the log says why."""
    aside = tmp_path / "aside"
    shutil.move(data, aside)
    first = await start_agent(CHECKS, degradation=settings(), clock=at_fixture_time())
    pin = {"level": "degraded", "reason": "drill", "ttl_seconds": None, "actor": "carol"}
    await first.send("POST", "/api/v1/degradation/pin", pin, token=ADMIN)
    before = await _seen(first)
    await first.agent.stop()
    shutil.copytree(aside, data, dirs_exist_ok=True)

    agent = await start_agent(CHECKS, degradation=settings(), clock=at_fixture_time())

    assert await _seen(agent) == before
    [event] = _events(agent, LEFT)
    assert sorted(Path(p).name for p in event["files"]) == sorted(FILES)
    assert _names(data) >= FILES
