"""The agent runs backup schedules on its clock and publishes what happened: backups of each
type when their cron fires, retention after each, drills, failures with their reason, spans, and
every backup family on /metrics with the labels the catalogue declares."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness.wait import FakeClock, poll_until
from tests.integration.conftest import RunningAgent

pytestmark = pytest.mark.integration

START = datetime(2027, 3, 1, 2, 59, 0, tzinfo=UTC).timestamp()
DISK = [{"name": "disk", "kind": "disk", "path": "/", "interval_seconds": 60}]


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def _value(text: str, name: str, **labels: str) -> float | None:
    return _samples(text).get((name, frozenset(labels.items())))


async def _backup_runs(agent: RunningAgent, operation: str) -> list[Any]:
    return [
        s
        for s in agent.spans()
        if s.name == f"backup {operation}" and (s.attributes or {}).get("vigil.backup.job") == "src"
    ]


async def test_schedules_run_on_the_agents_clock(
    start_agent: Callable[..., Awaitable[RunningAgent]], tmp_path: Path
) -> None:
    """A full at 03:00, an incremental at 04:00, a drill at 04:30, a failure when the source
    is gone: each lands in the catalogue, the spans and /metrics."""
    source = tmp_path / "src"
    (source / "dir").mkdir(parents=True)
    (source / "dir" / "file.txt").write_text("first\n")
    clock = FakeClock(START)
    backup = {
        "repository": {"path": str(tmp_path / "repo")},
        "jobs": [
            {
                "name": "src",
                "kind": "files",
                "source": str(source),
                "schedule": {"full": "0 3 * * *", "incremental": "0 * * * *"},
                "drill": {"schedule": "30 4 * * *", "files": ["dir/file.txt"]},
                "retention": {"keep_last": 5},
            }
        ],
    }
    agent = await start_agent(DISK, clock=clock, backup=backup)
    scheduler = agent.agent.backups
    assert scheduler is not None
    service = scheduler.backups

    clock.advance(61)  # 03:00:01: the full (and the hourly incremental) fire; the full runs
    await poll_until(lambda: len(service.listing("src")) == 1, 20, what="the scheduled full")
    [full] = service.listing("src")
    assert full.manifest.type.value == "full"

    (source / "dir" / "file.txt").write_text("second\n")
    clock.advance(3600)  # 04:00:01: the incremental
    await poll_until(lambda: len(service.listing("src")) == 2, 20, what="the incremental")
    incremental = service.listing("src")[-1].manifest
    assert (incremental.type.value, incremental.parent) == ("incremental", full.manifest.id)

    clock.advance(1800)  # 04:30:01: the drill
    await poll_until(
        lambda: service.listing("src")[-1].drill_ok is True, 20, what="the scheduled drill"
    )
    await poll_until(lambda: _backup_runs(agent, "drill"), 5, what="the drill's span")

    for child in sorted(source.rglob("*"), reverse=True):
        child.unlink() if child.is_file() else child.rmdir()
    source.rmdir()
    clock.advance(1800)  # 05:00:01: the incremental fails: no source
    await poll_until(
        lambda: ("backup", "source") in service.status()["src"].failures, 20, what="the failure"
    )
    await scheduler.refresh()

    _, text = await agent.get("/metrics")
    at = {"backup_job": "src"}
    assert _value(text, "vigil_backup_job_info", kind="files", **at) == 1
    assert _value(text, "vigil_backup_backups", **at) == 2
    assert _value(text, "vigil_backup_last_outcome", operation="backup", **at) == 0
    assert _value(text, "vigil_backup_last_outcome", operation="drill", **at) == 1
    assert _value(text, "vigil_backup_last_outcome", operation="prune", **at) == 1
    success = _value(text, "vigil_backup_last_success_timestamp_seconds", operation="backup", **at)
    assert success == pytest.approx(incremental.ended)
    assert (
        _value(text, "vigil_backup_failures_total", operation="backup", reason="source", **at) == 1
    )
    stored = _value(text, "vigil_backup_last_size_bytes", type="incremental", **at)
    assert stored == incremental.stored_bytes
    assert (
        _value(text, "vigil_backup_last_size_bytes", type="full", **at)
        == full.manifest.stored_bytes
    )
    assert (_value(text, "vigil_backup_drill_rto_seconds", **at) or -1) >= 0
    assert _value(text, "vigil_backup_drill_rpo_seconds", **at) == pytest.approx(
        START + 61 + 3600 + 1800 - incremental.started, abs=1
    )
    assert (_value(text, "vigil_backup_repository_free_bytes") or 0) > 0
    assert _value(text, "vigil_backup_in_progress", operation="backup", **at) == 0
    failed = [
        s for s in await _backup_runs(agent, "backup") if s.status.status_code.name == "ERROR"
    ]
    assert [s.attributes.get("vigil.backup.reason") for s in failed] == ["source"]
