"""The default state store: a snapshot, a journal and an audit log in the data directory.

A commit is one JSON line appended to the journal (`<state>.journal`: the new state and its audit
entries) and one `fdatasync`: that is what an acknowledged webhook waits for. Every
`COMPACT_EVERY` commits the journal is rotated (renamed to `<state>.journal.1`) and folded away
in the background, off the commit path: its audit entries are appended to the audit log, its
last state replaces the snapshot atomically (temp file, fsync, rename, fsync of the directory),
and the rotated file is removed. `load` does the same for whatever it finds. A crash at any
instant leaves a snapshot, journals whose complete lines are all durable (a torn last line was
never acknowledged), and an audit log; `load` recovers the newest state and never reports an
audit entry twice (entries carry unique ids) nor one whose version the state never reached.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.degradation.engine import ConflictError, StateError, StoreUnavailableError
from agent.degradation.storage import append_lines, atomic_write, fsync_directory, read_lines

COMPACT_EVERY = 1024
"""Commits between two compactions: bounds the journal and the work of a restart."""


class StateFileError(StateError):
    """The state file exists but cannot be used; the agent refuses to start over it."""


class FileStateStore:
    """State, journal and audit as files under the agent's data directory."""

    def __init__(self, state_path: Path, audit_path: Path) -> None:
        self.state_path = state_path
        self.audit_path = audit_path
        self.journal_path = state_path.with_name(state_path.name + ".journal")
        self.rotated_path = state_path.with_name(state_path.name + ".journal.1")
        self._version: int | None = None
        self._journaled = 0
        self._lock = asyncio.Lock()
        self._compaction: asyncio.Task[None] | None = None

    async def load(self) -> dict[str, Any] | None:
        """The newest stored state; folds the journals into the snapshot and the audit log."""
        async with self._lock:
            await self._finish_compaction()
            state = await asyncio.to_thread(self._recover)
            self._version = 0 if state is None else int(state["version"])
            self._journaled = 0
            return state

    async def commit(
        self, expected_version: int, state: dict[str, Any], audit: Sequence[dict[str, Any]]
    ) -> None:
        """Journal `state` and `audit` durably; ConflictError on a version mismatch."""
        async with self._lock:
            if self._version is None:
                self._version = 0
            if self._version != expected_version:
                msg = f"state is at version {self._version}, not {expected_version}"
                raise ConflictError(msg)
            record = {"version": state["version"], "state": state, "audit": list(audit)}
            idle = self._compaction is None or self._compaction.done()
            rotate = self._journaled + 1 >= COMPACT_EVERY and idle
            try:
                await asyncio.to_thread(self._journal, record, rotate)
            except OSError as exc:
                raise StoreUnavailableError(f"cannot write {exc.filename}: {exc.strerror}") from exc
            self._version = int(state["version"])
            self._journaled = 0 if rotate else self._journaled + 1
            if rotate:
                self._compaction = asyncio.create_task(
                    asyncio.to_thread(self._fold_rotated), name="degradation-compaction"
                )

    async def close(self) -> None:
        """Let a background compaction finish."""
        await self._finish_compaction()

    async def _finish_compaction(self) -> None:
        if self._compaction is not None:
            # A failed compaction is retried by the next load; the journals keep everything.
            await asyncio.gather(self._compaction, return_exceptions=True)
            self._compaction = None

    async def audit(self, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` audit entries, oldest first."""
        async with self._lock:  # no rotation while the journals are read
            entries = await asyncio.to_thread(self._all_audit)
        return entries[-limit:] if limit else []

    # --- blocking helpers, run in a thread ---------------------------------------------------
    def _journal(self, record: dict[str, Any], rotate: bool) -> None:
        line = json.dumps(record, separators=(",", ":"), sort_keys=True, default=str) + "\n"
        new = not self.journal_path.exists()
        if new:
            self.journal_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
            os.fdatasync(fd)
        finally:
            os.close(fd)
        if new:
            fsync_directory(self.journal_path.parent)
        if rotate:
            os.replace(self.journal_path, self.rotated_path)
            fsync_directory(self.journal_path.parent)

    def _fold_rotated(self) -> None:
        """Archive the rotated journal's audit, snapshot its last state, remove it."""
        records = read_lines(self.rotated_path)
        states = [r["state"] for r in records if isinstance(r.get("state"), dict)]
        if states:
            self._archive(records, int(states[-1]["version"]))
            atomic_write(self.state_path, _snapshot(states[-1]))
        self.rotated_path.unlink(missing_ok=True)
        fsync_directory(self.rotated_path.parent)

    def _recover(self) -> dict[str, Any] | None:
        self._remove_leftovers()
        state = self._read_snapshot()
        records = self._journal_records()
        for record in records:
            newest = 0 if state is None else int(state["version"])
            if int(record.get("version", 0)) > newest and isinstance(record.get("state"), dict):
                state = record["state"]
        if state is not None:
            self._archive(records, int(state["version"]))
            atomic_write(self.state_path, _snapshot(state))
            self.rotated_path.unlink(missing_ok=True)
            if self.journal_path.exists():
                atomic_write(self.journal_path, b"")
            self._trim_audit(int(state["version"]))
        return state

    def _journal_records(self) -> list[dict[str, Any]]:
        """Lines of the rotated journal, then of the current one: oldest first."""
        return read_lines(self.rotated_path) + read_lines(self.journal_path)

    def _archive(self, records: list[dict[str, Any]], version: int) -> None:
        """Append the audit entries of `records` up to `version` to the audit log, once."""
        pending = [
            entry
            for record in records
            if int(record.get("version", 0)) <= version
            for entry in record.get("audit", [])
        ]
        # Only a crash between archiving and removing a journal can archive entries twice, and
        # then they are the newest lines of the audit log: its tail is all that needs reading.
        archived = _tail_ids(self.audit_path, sum(len(json.dumps(e)) for e in pending) * 2)
        append_lines(self.audit_path, [e for e in pending if e.get("id") not in archived])

    def _all_audit(self) -> list[dict[str, Any]]:
        # Journals first, the log second: a background fold appends to the log before it removes
        # the rotated journal, so every entry is in what is read, whenever the fold runs.
        journaled = [e for record in self._journal_records() for e in record.get("audit", [])]
        entries = read_lines(self.audit_path)
        seen = {e.get("id") for e in entries}
        for entry in journaled:
            if entry.get("id") not in seen:
                seen.add(entry.get("id"))
                entries.append(entry)
        return entries

    def _remove_leftovers(self) -> None:
        # A crash between writing a temp file and renaming it leaves the temp file behind; what
        # it held was never the only copy, so it goes.
        for path in (self.state_path, self.audit_path, self.journal_path, self.rotated_path):
            for leftover in path.parent.glob(f".{path.name}.*.tmp"):
                leftover.unlink(missing_ok=True)

    def _read_snapshot(self) -> dict[str, Any] | None:
        try:
            raw = self.state_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateFileError(f"{self.state_path}: cannot read: {exc.strerror}") from exc
        try:
            state = json.loads(raw)
        except ValueError as exc:
            raise StateFileError(f"{self.state_path}: not valid JSON: {exc}") from None
        if not isinstance(state, dict) or not isinstance(state.get("version"), int):
            raise StateFileError(f"{self.state_path}: not a Vigil degradation state document")
        return state

    def _trim_audit(self, version: int) -> None:
        entries = read_lines(self.audit_path)
        kept = [e for e in entries if int(e.get("version", 0)) <= version]
        if len(kept) != len(entries) or (entries and self._has_torn_tail()):
            data = b"".join(
                json.dumps(e, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
                for e in kept
            )
            atomic_write(self.audit_path, data)

    def _has_torn_tail(self) -> bool:
        try:
            raw = self.audit_path.read_bytes()
        except FileNotFoundError:
            return False
        return bool(raw) and not raw.endswith(b"\n")


def _tail_ids(path: Path, size: int) -> set[Any]:
    """Audit ids in the last `size` bytes (and a little more) of `path`."""
    try:
        with path.open("rb") as file:
            file.seek(0, os.SEEK_END)
            end = file.tell()
            file.seek(max(0, end - size - 4096))
            tail = file.read()
    except FileNotFoundError:
        return set()
    ids = set()
    for line in tail.split(b"\n")[1:] if end > size + 4096 else tail.split(b"\n"):
        try:
            ids.add(json.loads(line).get("id"))
        except (ValueError, AttributeError):
            continue
    return ids


def _snapshot(state: dict[str, Any]) -> bytes:
    return (json.dumps(state, indent=1, sort_keys=True) + "\n").encode()
