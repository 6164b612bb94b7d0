"""The file store's journal: what a restart recovers after a crash at any step."""

from __future__ import annotations

import json
from pathlib import Path

from agent.degradation.filestore import FileStateStore
from agent.degradation.storage import append_lines, read_lines


def _store(tmp_path: Path) -> FileStateStore:
    return FileStateStore(tmp_path / "degradation.json", tmp_path / "audit.jsonl")


async def _commit_versions(store: FileStateStore, versions: range) -> None:
    await store.load()
    for v in versions:
        await store.commit(
            v - 1,
            {"version": v, "level": "full"},
            [{"id": f"e{v}", "version": v, "action": "level_changed"}],
        )


async def test_restart_recovers_the_journal_and_archives_its_audit(tmp_path: Path) -> None:
    """Commits live in the journal; a load folds them into snapshot and audit, exactly once."""
    await _commit_versions(_store(tmp_path), range(1, 6))

    state = await _store(tmp_path).load()

    assert state is not None
    assert state["version"] == 5
    assert json.loads((tmp_path / "degradation.json").read_text())["version"] == 5
    assert (tmp_path / "degradation.json.journal").read_bytes() == b""
    assert [e["id"] for e in read_lines(tmp_path / "audit.jsonl")] == [f"e{v}" for v in range(1, 6)]


async def test_crash_between_archive_and_journal_reset_archives_once(tmp_path: Path) -> None:
    """Audit entries already appended before a crash are not appended again on recovery."""
    store = _store(tmp_path)
    await _commit_versions(store, range(1, 4))
    journal = read_lines(tmp_path / "degradation.json.journal")
    append_lines(tmp_path / "audit.jsonl", [e for r in journal for e in r["audit"]])

    await _store(tmp_path).load()

    ids = [e["id"] for e in read_lines(tmp_path / "audit.jsonl")]
    assert ids == ["e1", "e2", "e3"]


async def test_torn_journal_line_is_ignored(tmp_path: Path) -> None:
    """A half-written last journal line (never acknowledged) does not count."""
    await _commit_versions(_store(tmp_path), range(1, 3))
    with (tmp_path / "degradation.json.journal").open("ab") as file:
        file.write(b'{"version": 3, "state": {"version": 3')

    state = await _store(tmp_path).load()

    assert state is not None
    assert state["version"] == 2
    assert await _store(tmp_path).audit(10) == read_lines(tmp_path / "audit.jsonl")


async def test_audit_reads_journal_before_compaction(tmp_path: Path) -> None:
    """Entries still only in the journal are part of the audit trail."""
    store = _store(tmp_path)
    await _commit_versions(store, range(1, 4))

    entries = await store.audit(10)

    assert [e["id"] for e in entries] == ["e1", "e2", "e3"]


async def test_rotation_folds_in_the_background(tmp_path: Path, monkeypatch) -> None:
    """Past COMPACT_EVERY the journal rotates and is folded off the commit path, losing nothing."""
    monkeypatch.setattr("agent.degradation.filestore.COMPACT_EVERY", 4)
    store = _store(tmp_path)
    await _commit_versions(store, range(1, 11))
    await store.close()

    assert not (tmp_path / "degradation.json.journal.1").exists()
    assert json.loads((tmp_path / "degradation.json").read_text())["version"] >= 4
    assert [e["id"] for e in await store.audit(100)] == [f"e{v}" for v in range(1, 11)]
    state = await _store(tmp_path).load()
    assert state is not None
    assert state["version"] == 10
    assert [e["id"] for e in read_lines(tmp_path / "audit.jsonl")] == [
        f"e{v}" for v in range(1, 11)
    ]


async def test_crash_with_a_rotated_journal_recovers_both(tmp_path: Path) -> None:
    """A rotated journal left by a crash is folded on load together with the current one."""
    store = _store(tmp_path)
    await _commit_versions(store, range(1, 4))
    (tmp_path / "degradation.json.journal").rename(tmp_path / "degradation.json.journal.1")
    for v in range(4, 6):
        await store.commit(
            v - 1,
            {"version": v, "level": "full"},
            [{"id": f"e{v}", "version": v, "action": "level_changed"}],
        )

    state = await _store(tmp_path).load()

    assert state is not None
    assert state["version"] == 5
    assert [e["id"] for e in read_lines(tmp_path / "audit.jsonl")] == [f"e{v}" for v in range(1, 6)]
