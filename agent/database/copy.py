"""Copies of the database through SQLite's online backup API: a backup while the agent runs, a
restore while it is stopped; both verified before they count."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from agent.database.errors import DatabaseCorruptError, DatabaseUnavailableError
from agent.database.owner import OwnerLock
from agent.database.schema import Schema, check, versions

PAGES_PER_STEP = 256
"""Pages copied between two progress reports (1 MiB at SQLite's default page size)."""

Progress = Callable[[int, int], None]
"""Called with (pages copied, pages in all) as a copy goes on."""


@dataclasses.dataclass(frozen=True, slots=True)
class CopyResult:
    """A finished, verified copy."""

    path: Path
    pages: int
    size_bytes: int
    seconds: float
    versions: dict[str, int]
    kept: Path | None = None  # a restore: where the database it replaced was kept


def backup(source: Path, target: Path, progress: Progress | None = None) -> CopyResult:
    """Copy the database at `source` to the new file `target`, consistent as of one instant.

    The agent may go on writing meanwhile: the copy reads one snapshot (a read transaction held
    from the first page to the last; in WAL mode it blocks no writer). The copy is written to a
    temporary file, checked with `PRAGMA integrity_check`, synced and only then renamed to
    `target`, which must not exist yet.
    """
    started = time.monotonic()
    if not source.is_file():
        raise DatabaseUnavailableError(f"no database at {source}")
    if target.exists():
        raise DatabaseUnavailableError(f"{target} exists already; name a new file")
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with _open(source, read_only=True) as src, _open(temporary) as dst:
            src.execute("BEGIN")
            src.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the snapshot starts
            pages = _copy(src, dst, progress)
            src.execute("ROLLBACK")
            # A backup is one self-contained file: no write-ahead log beside it.
            dst.execute("PRAGMA journal_mode = DELETE")
            found = _verify(dst, temporary)
        _sync(temporary)
        os.replace(temporary, target)
        _sync_directory(target.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    return CopyResult(target, pages, target.stat().st_size, time.monotonic() - started, found)


def restore(
    source: Path,
    target: Path,
    schemas: Sequence[Schema],
    progress: Progress | None = None,
    now: Callable[[], float] = time.time,
) -> CopyResult:
    """Replace the database at `target` with the backup `source`, while no agent runs.

    The backup is verified first (a SQLite database that passes its integrity check, written
    by this Vigil or an older one); then, holding the owner lock an agent holds while it runs,
    the current database is kept as `<target>.before-restore-<time>` and the backup copied over
    it in one transaction, so a crash leaves the old database or the new one, never a mix.
    """
    started = time.monotonic()
    if not source.is_file():
        raise DatabaseUnavailableError(f"no backup at {source}")
    with _open(source, read_only=True) as src:
        found = _verify(src, source)
        check(src, source, schemas)
    owner = OwnerLock(target, "a restore")
    owner.acquire()
    try:
        kept = None
        if target.exists():
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now()))
            kept = backup(target, target.with_name(f"{target.name}.before-restore-{stamp}")).path
        with _open(source, read_only=True) as src, _open(target) as dst:
            dst.execute("PRAGMA journal_mode = WAL")
            dst.execute("PRAGMA synchronous = FULL")
            pages = _copy(src, dst, progress)
            _verify(dst, target)
    finally:
        owner.release()
    size = target.stat().st_size
    return CopyResult(target, pages, size, time.monotonic() - started, found, kept)


def _copy(src: sqlite3.Connection, dst: sqlite3.Connection, progress: Progress | None) -> int:
    """Every page of `src` into `dst`; the number of pages."""
    total = [0]

    def report(status: int, remaining: int, pages: int) -> None:
        total[0] = pages
        if progress is not None:
            progress(pages - remaining, pages)

    try:
        src.backup(dst, pages=PAGES_PER_STEP, progress=report)
    except sqlite3.Error as exc:
        raise DatabaseUnavailableError(f"the copy failed: {exc}") from exc
    return total[0]


def _verify(db: sqlite3.Connection, path: Path) -> dict[str, int]:
    """The schema versions of a database that passes SQLite's integrity check and is Vigil's."""
    try:
        problems = [row[0] for row in db.execute("PRAGMA integrity_check")]
        if problems != ["ok"]:
            raise DatabaseCorruptError(f"{path}: integrity check failed: {'; '.join(problems[:3])}")
        found = versions(db)
    except sqlite3.DatabaseError as exc:
        raise DatabaseCorruptError(f"{path}: not a usable SQLite database: {exc}") from exc
    if not found:
        raise DatabaseCorruptError(f"{path}: not a Vigil database (it has no schema versions)")
    return found


@contextlib.contextmanager
def _open(path: Path, read_only: bool = False) -> Iterator[sqlite3.Connection]:
    try:
        if read_only:
            db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        else:
            db = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error as exc:
        raise DatabaseUnavailableError(f"cannot open {path}: {exc}") from exc
    try:
        yield db
    except sqlite3.OperationalError as exc:
        raise DatabaseUnavailableError(f"{path}: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        raise DatabaseCorruptError(f"{path}: not a usable SQLite database: {exc}") from exc
    finally:
        db.close()


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_directory(directory: Path) -> None:
    _sync(directory)
