"""The file store's journal: what a restart recovers after a crash at any step."""

from __future__ import annotations

import asyncio
import json
import resource
import signal
from pathlib import Path

import pytest

from agent.degradation.errors import StoreUnavailableError
from agent.degradation.filestore import FileStateStore, _cut_torn_tail, _read_commits
from agent.degradation.storage import append_lines, read_lines


@pytest.fixture(autouse=True, params=["on the loop", "in a thread"])
def _write_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs with journal writes on the event loop and with them in a thread."""
    limit = 60.0 if request.param == "on the loop" else 0.0
    monkeypatch.setattr("agent.degradation.filestore.SLOW_SYNC_SECONDS", limit)


def _store(tmp_path: Path) -> FileStateStore:
    return FileStateStore(tmp_path / "degradation.json", tmp_path / "audit.jsonl")


def _unwritable_audit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, every: int) -> Path:
    """Rotate every `every` commits, with an audit log no fold can append to (a directory)."""
    monkeypatch.setattr("agent.degradation.filestore.COMPACT_EVERY", every)
    audit = tmp_path / "audit.jsonl"
    audit.mkdir()
    return audit


async def _assert_recovered(tmp_path: Path, version: int) -> None:
    """A fresh store loads `version`, and the audit log holds e1..e<version>, each once."""
    state = await _store(tmp_path).load()
    assert state is not None
    assert state["version"] == version
    ids = [e["id"] for e in read_lines(tmp_path / "audit.jsonl")]
    assert ids == [f"e{v}" for v in range(1, version + 1)]


async def _commit_versions(store: FileStateStore, versions: range) -> None:
    await store.load()
    await _commit_more(store, versions)


async def _commit_more(store: FileStateStore, versions: range) -> None:
    """Commit `versions` in order, one audit entry `e<version>` each, without loading first."""
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
    journal = _read_commits(tmp_path / "degradation.json.journal")
    append_lines(tmp_path / "audit.jsonl", [e for c in journal for e in c.audit])

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
    await _assert_recovered(tmp_path, 10)


async def test_crash_with_a_rotated_journal_recovers_both(tmp_path: Path, monkeypatch) -> None:
    """A rotated journal not yet folded when the agent dies is folded on load with the new one."""
    audit = _unwritable_audit(tmp_path, monkeypatch, every=3)
    store = _store(tmp_path)
    await _commit_versions(store, range(1, 6))
    await store.close()  # the failed fold has run
    assert (tmp_path / "degradation.json.journal.1").exists()
    assert (tmp_path / "degradation.json.journal").exists()
    audit.rmdir()

    await _assert_recovered(tmp_path, 5)


async def test_failed_fold_is_retried_before_the_next_rotation(tmp_path: Path, monkeypatch) -> None:
    """A fold that failed keeps its journal: the next rotation waits for a successful retry."""
    audit = _unwritable_audit(tmp_path, monkeypatch, every=4)
    store = _store(tmp_path)
    await _commit_versions(store, range(1, 13))
    audit.rmdir()
    await store.load()  # nothing of the first 12 commits may be lost
    await _commit_more(store, range(13, 30))
    await store.close()

    assert [e["id"] for e in await store.audit(100)] == [f"e{v}" for v in range(1, 30)]
    await _assert_recovered(tmp_path, 29)


async def test_failed_fold_retry_succeeds_without_a_restart(tmp_path: Path, monkeypatch) -> None:
    """Once the audit log is writable again, the retried fold archives every entry exactly once."""
    audit = _unwritable_audit(tmp_path, monkeypatch, every=4)
    store = _store(tmp_path)
    await _commit_versions(store, range(1, 6))  # rotated at 4; its fold failed
    await store.close()
    audit.rmdir()
    await _commit_more(store, range(6, 9))  # the retry at 8 folds 1-4
    await store.close()
    await _commit_more(store, range(9, 20))  # rotations resume at 9
    await store.close()

    assert not (tmp_path / "degradation.json.journal.1").exists()
    archived = [e["id"] for e in read_lines(audit)]
    assert archived == [f"e{v}" for v in range(1, len(archived) + 1)]
    assert len(archived) >= 9
    assert [e["id"] for e in await store.audit(100)] == [f"e{v}" for v in range(1, 20)]


async def test_a_failed_write_leaves_no_fragment(tmp_path: Path) -> None:
    """A commit whose write fails part-way is refused and cut off; the next one stays whole."""
    store = _store(tmp_path)
    await _commit_versions(store, range(1, 3))
    journal = tmp_path / "degradation.json.journal"
    lines = journal.read_bytes().rstrip(b"\0")  # the rest is space allocated ahead
    limit = journal.stat().st_size + 64
    big = {"version": 3, "padding": "x" * (2 * limit)}  # past what is allocated
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        with pytest.raises(StoreUnavailableError):
            await store.commit(2, big, [{"id": "e3", "version": 3}])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert journal.read_bytes() == lines  # what got through was cut off

    await store.commit(2, {"version": 3}, [{"id": "e3b", "version": 3}])
    await store.close()

    state = await _store(tmp_path).load()
    assert state == {"version": 3}
    assert [e["id"] for e in read_lines(tmp_path / "audit.jsonl")] == ["e1", "e2", "e3b"]


async def test_journal_lines_copy_audit_entries_verbatim(tmp_path: Path, monkeypatch) -> None:
    """A background fold archives entries byte for byte as a parsing fold would write them."""
    monkeypatch.setattr("agent.degradation.filestore.COMPACT_EVERY", 2)
    store = _store(tmp_path)
    await store.load()
    odd = {"id": "e1", "version": 1, "note": "tab\there, newline\nthere, \u00e9\u2028"}
    await store.commit(0, {"version": 1}, [odd, {"id": "e1b", "version": 1}])
    await store.commit(1, {"version": 2}, [])
    await store.close()

    assert not (tmp_path / "degradation.json.journal.1").exists()
    assert read_lines(tmp_path / "audit.jsonl") == [odd, {"id": "e1b", "version": 1}]


async def _yields(store: FileStateStore, version: int) -> bool:
    """Whether a commit of `version` let another task run before it returned."""
    ran: list[bool] = []

    async def other() -> None:
        ran.append(True)

    task = asyncio.ensure_future(other())
    await store.commit(version - 1, {"version": version}, [{"id": f"e{version}"}])
    yielded = bool(ran)
    await task
    return yielded


async def test_slow_writes_move_off_the_event_loop(tmp_path: Path, monkeypatch) -> None:
    """Fast journal writes run on the loop; once they are slower than the limit, in a thread."""
    store = _store(tmp_path)
    await store.load()
    monkeypatch.setattr("agent.degradation.filestore.SLOW_SYNC_SECONDS", 1e-12)
    assert not await _yields(store, 1)  # no write measured yet: on the loop
    assert await _yields(store, 2)  # the first one took longer than 1e-12 s: a thread
    monkeypatch.setattr("agent.degradation.filestore.SLOW_SYNC_SECONDS", 60.0)
    assert not await _yields(store, 3)  # fast again
    await store.close()

    state = await _store(tmp_path).load()
    assert state == {"version": 3}


async def test_what_orjson_refuses_is_still_stored(tmp_path: Path) -> None:
    """An integer past 64 bits in an audit entry is written (by the standard library), not lost."""
    store = _store(tmp_path)
    await store.load()
    await store.commit(0, {"version": 1}, [{"id": "e1", "version": 1, "count": 2**70}])
    await store.close()

    assert [e["id"] for e in await _store(tmp_path).audit(10)] == ["e1"]


async def test_archiving_after_a_torn_audit_line_loses_nothing(tmp_path: Path) -> None:
    """After a crash tore the audit log's last line, the restart cuts it and archives intact."""
    await _commit_versions(_store(tmp_path), range(1, 4))
    (tmp_path / "audit.jsonl").write_bytes(b'{"id": "e0", "version": 0}\n{"id": "torn", "ver')

    await _store(tmp_path).load()

    lines = (tmp_path / "audit.jsonl").read_bytes().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["e0", "e1", "e2", "e3"]  # all whole


async def test_audit_reads_only_the_newest_entries(tmp_path: Path, monkeypatch) -> None:
    """The newest `limit` entries come from the log's tail and the journals, each once."""
    monkeypatch.setattr("agent.degradation.filestore.COMPACT_EVERY", 7)
    store = _store(tmp_path)
    await _commit_versions(store, range(1, 301))
    await store.close()
    every = [f"e{v}" for v in range(1, 301)]

    for limit in (1, 5, 50, 299, 300, 1000):
        assert [e["id"] for e in await store.audit(limit)] == every[-limit:]
    # An entry a fold copied to the log before the crash that kept its journal is read once.
    journal = _read_commits(tmp_path / "degradation.json.journal")
    append_lines(tmp_path / "audit.jsonl", [e for c in journal for e in c.audit])
    assert [e["id"] for e in await store.audit(20)] == every[-20:]


async def test_entries_of_versions_never_reached_are_dropped(tmp_path: Path) -> None:
    """A snapshot restored from an older backup: the log's entries past its version go at start."""
    await _commit_versions(_store(tmp_path), range(1, 6))
    await _store(tmp_path).load()  # all five archived, snapshot at 5
    snapshot = tmp_path / "degradation.json"
    older = json.loads(snapshot.read_text()) | {"version": 3}
    snapshot.write_text(json.dumps(older))  # the restored backup

    state = await _store(tmp_path).load()

    assert state is not None
    assert state["version"] == 3
    assert [e["id"] for e in read_lines(tmp_path / "audit.jsonl")] == ["e1", "e2", "e3"]


def test_only_a_torn_last_line_is_cut(tmp_path: Path) -> None:
    """Cutting keeps every whole line, however far back the last newline is."""
    log = tmp_path / "audit.jsonl"
    whole = b"".join(b'{"id": "e%d"}\n' % i for i in range(10_000))
    log.write_bytes(whole + b"x" * 100_000)  # a torn line longer than one read block

    _cut_torn_tail(log)
    assert log.read_bytes() == whole
    _cut_torn_tail(log)  # nothing torn: nothing changes
    assert log.read_bytes() == whole


async def test_a_journal_of_the_earlier_layout_is_folded(tmp_path: Path) -> None:
    """Lines `{"version", "state", "audit"}` left by an older agent are recovered, not lost."""
    state = {"format": 1, "version": 2, "level": "full"}
    old = [
        {"version": 1, "state": state | {"version": 1}, "audit": [{"id": "e1", "version": 1}]},
        {"version": 2, "state": state, "audit": [{"id": "e2", "version": 2}]},
    ]
    journal = tmp_path / "degradation.json.journal"
    journal.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in old))

    assert await _store(tmp_path).load() == state
    assert [e["id"] for e in read_lines(tmp_path / "audit.jsonl")] == ["e1", "e2"]


async def test_a_line_torn_at_a_separator_is_not_a_commit(tmp_path: Path) -> None:
    """A last line cut exactly between its parts parses, yet it was never acknowledged."""
    await _commit_versions(_store(tmp_path), range(1, 3))
    journal = tmp_path / "degradation.json.journal"
    lines = journal.read_bytes().rstrip(b"\0")
    journal.write_bytes(lines + b'{"version": 3}\t{"id": "e3", "version": 3}')

    state = await _store(tmp_path).load()

    assert state == {"version": 2, "level": "full"}
    assert [e["id"] for e in read_lines(tmp_path / "audit.jsonl")] == ["e1", "e2"]


async def test_a_cancelled_commit_in_a_thread_still_finishes_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller cancelled mid-write does not let the next commit write over its line."""
    monkeypatch.setattr("agent.degradation.filestore.SLOW_SYNC_SECONDS", 0.0)  # in a thread
    store = _store(tmp_path)
    await _commit_versions(store, range(1, 2))
    first = asyncio.ensure_future(store.commit(1, {"version": 2}, [{"id": "e2", "version": 2}]))
    await asyncio.sleep(0)  # the write is under way in its thread
    first.cancel()
    second = asyncio.ensure_future(store.commit(2, {"version": 3}, [{"id": "e3", "version": 3}]))

    with pytest.raises(asyncio.CancelledError):
        await first
    await second
    await store.close()

    await _assert_recovered(tmp_path, 3)


async def test_a_failed_rotation_keeps_the_commit(tmp_path: Path, monkeypatch) -> None:
    """The line is durable before the rotation: a rename that fails does not refuse it."""
    monkeypatch.setattr("agent.degradation.filestore.COMPACT_EVERY", 2)
    store = _store(tmp_path)
    await _commit_versions(store, range(1, 2))
    rotated = tmp_path / "degradation.json.journal.1"
    rotated.mkdir()  # a rename over a directory fails
    (rotated / "blocker").touch()

    await _commit_more(store, range(2, 4))  # both due to rotate; neither refused
    (rotated / "blocker").unlink()
    rotated.rmdir()
    await _commit_more(store, range(4, 6))  # rotation happens now
    await store.close()

    await _assert_recovered(tmp_path, 5)
