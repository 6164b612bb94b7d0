"""The default state store: a snapshot, a journal and an audit log in the data directory.

A commit is one line appended to the journal (`<state>.journal`) and one `fdatasync`: that is what
an acknowledged webhook waits for. The line is the new state's JSON followed by each of the
commit's audit entries as JSON, separated by tabs (JSON text never holds a raw tab or newline), so
that folding a journal copies audit entries as bytes instead of parsing and re-encoding them.
Every `COMPACT_EVERY` commits the journal is rotated (renamed to `<state>.journal.1`) and folded
away in the background, off the commit path: its audit entries are appended to the audit log, its
last state replaces the snapshot atomically (temp file, fsync, rename, fsync of the directory),
and the rotated file is removed. `load` does the same for whatever it finds, parsing every line.

A crash at any instant leaves a snapshot, journals whose complete lines are all durable (a torn
last line was never acknowledged), and an audit log; `load` recovers the newest state and never
reports an audit entry twice (entries carry unique ids) nor one whose version the state never
reached. A write that fails part-way is cut off again before the next commit, so a torn fragment
never glues itself to an acknowledged line. The journal's space is allocated ahead, a chunk at a
time: after its lines the file holds zero bytes, which readers ignore.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import structlog

from agent.degradation.errors import ConflictError, StateError, StoreUnavailableError
from agent.degradation.storage import (
    append_bytes,
    append_lines,
    atomic_write,
    dump_line,
    fsync_directory,
    parse_lines,
    read_lines,
)

COMPACT_EVERY = 1024
"""Commits between two compactions: bounds the journal and the work of a restart."""

JOURNAL_CHUNK_BYTES = 1 << 20
"""Journal space allocated at a time (about a thousand commits of a small state)."""

SLOW_SYNC_SECONDS = 0.002
"""Journal writes slower than this (moving average) move off the event loop, into a thread.

On a disk whose `fdatasync` takes a fraction of a millisecond, writing on the event loop is
cheaper than handing the write to a thread and back (each hand-off waits behind every other
request the loop is serving). A slow disk must not hold up probes and `/metrics`, so once writes
get slow they go to a thread, and come back when the disk is fast again.
"""

SEPARATOR = b"\t"
"""Between the state and the audit entries of one journal line."""

log = structlog.get_logger("vigil.degradation.filestore")


class StateFileError(StateError):
    """The state file exists but cannot be used; the agent refuses to start over it."""


class Commit(NamedTuple):
    """One parsed journal line: the state it stored and its audit entries."""

    state: dict[str, Any]
    audit: list[dict[str, Any]]

    @property
    def version(self) -> int:
        """The version this commit stored."""
        return int(self.state["version"])


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
        self._fd: int | None = None  # the journal, open for appending between commits
        self._size = 0  # bytes of complete lines in the journal
        self._allocated = 0  # bytes of the journal file, zeros after `_size`
        self._clean = True  # the journal holds only complete lines this process wrote
        self._unfolded = False  # a rotated journal waits to be folded
        self._sync_seconds = 0.0  # moving average of a journal write, fdatasync included

    async def load(self) -> dict[str, Any] | None:
        """The newest stored state; folds the journals into the snapshot and the audit log."""
        async with self._lock:
            await self._finish_compaction()
            state = await asyncio.to_thread(self._recover)
            self._version = 0 if state is None else int(state["version"])
            self._journaled = 0
            self._unfolded = False
            return state

    async def commit(
        self, expected_version: int, state: dict[str, Any], audit: Sequence[dict[str, Any]]
    ) -> None:
        """Journal `state` and `audit` durably; ConflictError on a version mismatch."""
        line = _line(state, audit)  # serialised before the lock: concurrent callers overlap
        async with self._lock:
            if self._version is None:
                self._version = 0
            if self._version != expected_version:
                msg = f"state is at version {self._version}, not {expected_version}"
                raise ConflictError(msg)
            due = self._journaled + 1 >= COMPACT_EVERY
            idle = self._compaction is None or self._compaction.done()
            if due and idle and self._unfolded:
                # The last fold failed: retry it before rotating, which would overwrite its file.
                self._compaction = asyncio.create_task(
                    self._fold(fast=False), name="degradation-compaction"
                )
            rotate = due and idle and not self._unfolded
            cancelled = False
            try:
                if self._sync_seconds < SLOW_SYNC_SECONDS:
                    fast, rotated = self._append(line, rotate)
                else:
                    (fast, rotated), cancelled = await _finish(self._append, line, rotate)
            except OSError as exc:
                raise StoreUnavailableError(f"cannot write {exc.filename}: {exc.strerror}") from exc
            self._version = int(state["version"])
            self._journaled = 0 if rotated else self._journaled + 1
            if rotated:
                self._unfolded = True
                self._compaction = asyncio.create_task(
                    self._fold(fast), name="degradation-compaction"
                )
            if cancelled:  # the caller went away during the write: it is stored all the same
                raise asyncio.CancelledError

    async def close(self) -> None:
        """Let a background compaction finish; close the journal."""
        async with self._lock:
            await self._finish_compaction()
            self._close_journal()

    async def audit(self, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` audit entries, oldest first."""
        if limit <= 0:
            return []
        async with self._lock:  # no rotation while the journals are read
            return await asyncio.to_thread(self._newest_audit, limit)

    async def _fold(self, fast: bool) -> None:
        try:
            await asyncio.to_thread(self._fold_rotated, fast)
        except OSError as exc:  # the rotated journal keeps everything; the fold is retried
            log.warning("cannot fold the rotated journal yet", error=str(exc))
        else:
            self._unfolded = False

    async def _finish_compaction(self) -> None:
        if self._compaction is not None:
            await asyncio.gather(self._compaction, return_exceptions=True)
            self._compaction = None

    # --- blocking helpers, run in a thread (`_append` on the loop while the disk is fast) -----
    def _append(self, line: bytes, rotate: bool) -> tuple[bool, bool]:
        """Append one durable line; with `rotate`, rotate the journal after it.

        Returns whether the journal held only whole lines this process wrote (then its fold may
        copy bytes without parsing), and whether it was rotated.
        """
        fd = self._open_journal()
        start = self._size
        began = time.perf_counter()
        try:
            self._reserve(fd, start + len(line))
            _write_all(fd, line, start)
            os.fdatasync(fd)
        except OSError:
            self._cut(fd, start)
            raise
        finally:
            took = time.perf_counter() - began
            self._sync_seconds = 0.8 * self._sync_seconds + 0.2 * took
        self._size = start + len(line)
        clean = self._clean
        if rotate:
            try:
                os.replace(self.journal_path, self.rotated_path)
            except OSError as exc:  # the line is durable: the commit stands; rotate later
                log.warning("cannot rotate the journal yet", error=str(exc))
                return clean, False
            self._close_journal()  # the next commit starts a new journal (and syncs the rename)
        return clean, rotate

    def _reserve(self, fd: int, end: int) -> None:
        """Allocate journal space ahead of `end`, a chunk at a time.

        `fdatasync` after a write inside allocated space need not commit a new file size: on
        ext4 that made a commit's sync about a third faster. Where allocation fails or is not
        supported, writes extend the file as appends would.
        """
        if end <= self._allocated:
            return
        length = max(JOURNAL_CHUNK_BYTES, end - self._allocated)
        try:
            os.posix_fallocate(fd, self._allocated, length)
        except OSError:
            return
        self._allocated += length

    def _open_journal(self) -> int:
        if self._fd is not None:
            return self._fd
        self.journal_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.journal_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            allocated = os.fstat(fd).st_size
            fsync_directory(self.journal_path.parent)  # a new file (or a rename) made durable
            data = _read_all(fd, allocated).rstrip(b"\0") if allocated else b""
            size = data.rfind(b"\n") + 1
            if size < len(data):
                # A fragment after the last whole line (a failed write that could not be cut
                # then): never acknowledged, so it goes, and new lines start after the last one.
                os.ftruncate(fd, size)
                os.fsync(fd)
                allocated = size
            # Lines from before this process are folded by parsing them.
            self._clean = not size
        except OSError:
            os.close(fd)
            raise
        self._fd, self._size, self._allocated = fd, size, max(allocated, size)
        return fd

    def _cut(self, fd: int, size: int) -> None:
        """Remove what a failed write left after the last whole line."""
        try:
            os.ftruncate(fd, size)
        except OSError:
            # The fragment stays; reopening ends it with a newline and marks the journal unclean.
            self._close_journal()
        else:
            self._allocated = size

    def _close_journal(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def _fold_rotated(self, fast: bool) -> None:
        """Archive the rotated journal's audit, snapshot its last state, remove it.

        `fast`: every line is whole and was written by this process, nothing of it is archived
        yet; the audit entries are copied as bytes and only the last state is parsed.
        """
        try:
            raw = self.rotated_path.read_bytes()
        except FileNotFoundError:
            return
        if fast:
            lines = raw.rstrip(b"\0").split(b"\n")[:-1]  # after the last newline: nothing
            if lines:
                state = orjson.loads(lines[-1].partition(SEPARATOR)[0])
                entries = [part for line in lines for part in line.split(SEPARATOR)[1:]]
                append_bytes(self.audit_path, b"".join(e + b"\n" for e in entries))
                atomic_write(self.state_path, _snapshot(state))
        else:
            commits = _latest(_parse(raw))
            if commits:
                self._archive(commits, commits[-1].version)
                atomic_write(self.state_path, _snapshot(commits[-1].state))
        self.rotated_path.unlink(missing_ok=True)
        fsync_directory(self.rotated_path.parent)

    def _recover(self) -> dict[str, Any] | None:
        self._close_journal()
        self._remove_leftovers()
        state = self._read_snapshot()
        commits = self._journal_commits()
        for commit in commits:
            newest = 0 if state is None else int(state["version"])
            if commit.version > newest:
                state = commit.state
        if state is not None:
            _cut_torn_tail(self.audit_path)  # before archiving appends to it
            self._archive(commits, int(state["version"]))
            atomic_write(self.state_path, _snapshot(state))
            self.rotated_path.unlink(missing_ok=True)
            if self.journal_path.exists():
                atomic_write(self.journal_path, b"")
            self._trim_audit(int(state["version"]))
        return state

    def _journal_commits(self) -> list[Commit]:
        """Lines of the rotated journal, then of the current one: oldest first.

        Of two lines with one version only the later counts: the earlier one was refused to
        its caller (a write error after the line was written) and retried.
        """
        return _latest(
            [c for path in (self.rotated_path, self.journal_path) for c in _read_commits(path)]
        )

    def _archive(self, commits: list[Commit], version: int) -> None:
        """Append the audit entries of `commits` up to `version` to the audit log, once."""
        pending = [entry for c in commits if c.version <= version for entry in c.audit]
        # Only a crash between archiving and removing a journal can archive entries twice, and
        # then they are the newest lines of the audit log: its tail is all that needs reading.
        archived = {e.get("id") for e in parse_lines(_tail_lines(self.audit_path, len(pending)))}
        append_lines(self.audit_path, [e for e in pending if e.get("id") not in archived])

    def _newest_audit(self, limit: int) -> list[dict[str, Any]]:
        # Journals first, the log second: a background fold appends to the log before it removes
        # the rotated journal, so every entry is in what is read, whenever the fold runs. Only
        # the log's tail is read (it grows for the agent's life): its newest `limit` lines, plus
        # as many as the journals hold, which a fold may have copied there already.
        journaled = [e for c in self._journal_commits() for e in c.audit]
        entries = parse_lines(_tail_lines(self.audit_path, limit + len(journaled)))
        seen = {e.get("id") for e in entries}
        for entry in journaled:
            if entry.get("id") not in seen:
                seen.add(entry.get("id"))
                entries.append(entry)
        return entries[-limit:]

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
        """Drop audit entries of versions the state never reached.

        They can only be at the log's end (a snapshot restored from a backup older than the log),
        so only the end is read, and the whole log only when entries go.
        """
        count = 1024
        while True:
            lines = _tail_lines(self.audit_path, count)
            newest = parse_lines(lines)
            if len(lines) < count or (newest and int(newest[0].get("version", 0)) <= version):
                break
            count *= 8
        if all(int(e.get("version", 0)) <= version for e in newest):
            return
        kept = [e for e in read_lines(self.audit_path) if int(e.get("version", 0)) <= version]
        atomic_write(self.audit_path, b"".join(dump_line(e) + b"\n" for e in kept))


def _line(state: dict[str, Any], audit: Sequence[dict[str, Any]]) -> bytes:
    """One journal line: the state, then each audit entry, tab-separated."""
    return SEPARATOR.join([dump_line(state), *(dump_line(e) for e in audit)]) + b"\n"


async def _finish(
    work: Callable[[bytes, bool], tuple[bool, bool]], line: bytes, rotate: bool
) -> tuple[tuple[bool, bool], bool]:
    """`work(line, rotate)` in a thread, awaited to its end; and whether the wait was cancelled.

    A cancelled caller must not leave the store's lock while its write goes on in the thread:
    the next commit would write at the same offset. So the wait outlasts cancellation, and the
    caller re-raises it once its bookkeeping is done.
    """
    task = asyncio.ensure_future(asyncio.to_thread(work, line, rotate))
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            cancelled = True
    if cancelled and task.exception() is not None:
        raise asyncio.CancelledError  # nothing was stored: the cancellation is the news
    return task.result(), cancelled


def _latest(commits: list[Commit]) -> list[Commit]:
    """`commits` by version, the later of two lines with one version kept."""
    by_version = {c.version: c for c in commits}
    return sorted(by_version.values(), key=lambda c: c.version)


def _read_commits(path: Path) -> list[Commit]:
    try:
        return _parse(path.read_bytes())
    except FileNotFoundError:
        return []


def _parse(raw: bytes) -> list[Commit]:
    """Every whole journal line, oldest first; a torn one (a crash mid-append) is skipped.

    Only newline-terminated lines count: a line is acknowledged only once all of it, newline
    included, is durable. Lines of the earlier layout, one object `{"version", "state",
    "audit"}`, are read too, so a journal left by an older agent is folded, not lost.
    """
    commits = []
    for line in raw.rstrip(b"\0").split(b"\n")[:-1]:  # after the last newline: torn or nothing
        if not line.strip():
            continue
        try:
            parts = [orjson.loads(part) for part in line.split(SEPARATOR)]
        except ValueError:
            continue
        state, audit = parts[0], parts[1:]
        if len(parts) == 1 and isinstance(state, dict) and {"state", "audit"} <= state.keys():
            state, audit = state["state"], state["audit"]
        if (
            isinstance(state, dict)
            and isinstance(state.get("version"), int)
            and isinstance(audit, list)
            and all(isinstance(e, dict) for e in audit)
        ):
            commits.append(Commit(state, audit))
    return commits


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _read_all(fd: int, size: int) -> bytes:
    chunks, offset = [], 0
    while offset < size:
        chunk = os.pread(fd, size - offset, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _tail_lines(path: Path, count: int) -> list[bytes]:
    """The last `count` whole lines of `path`, read from its end (a torn last line is not one)."""
    if count <= 0:
        return []
    try:
        file = path.open("rb")
    except FileNotFoundError:
        return []
    with file:
        start = file.seek(0, os.SEEK_END)
        blocks: list[bytes] = []
        newlines = 0
        while start > 0 and newlines <= count:
            step = min(64 * 1024, start)
            start -= step
            file.seek(start)
            blocks.append(file.read(step))
            newlines += blocks[-1].count(b"\n")
    data = b"".join(reversed(blocks))
    lines = data.split(b"\n")[:-1]  # after the last newline: nothing, or a torn line
    if start > 0:
        lines = lines[1:]  # the first piece began before what was read
    return lines[-count:]


def _cut_torn_tail(path: Path) -> None:
    """Truncate `path` after its last newline: what follows is a line a crash tore."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return
    try:
        end = os.fstat(fd).st_size
        if not end or os.pread(fd, 1, end - 1) == b"\n":
            return
        keep, start = 0, end
        while start > 0:
            step = min(64 * 1024, start)
            start -= step
            newline = os.pread(fd, step, start).rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
        os.ftruncate(fd, keep)
        os.fsync(fd)
    finally:
        os.close(fd)


def _snapshot(state: dict[str, Any]) -> bytes:
    return (json.dumps(state, indent=1, sort_keys=True) + "\n").encode()
