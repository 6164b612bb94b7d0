"""The previous release's files in the data directory (the file store's snapshot, journals and
audit log, and the flags file), imported once into the agent's database, then renamed aside.

The import is one transaction: the state the files hold (the newest of the snapshot and the
journals' whole lines, as the file store recovered it), every audit entry of a version that state
reached (each once), and the flag definitions. Only then is each file renamed to
`<name>.imported`, so a crash at any instant leaves either the files to import again or the
database holding them (the next start sees its own import and finishes the renames). A database
that already holds other state is never overwritten: the files stay, and the log says why.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import structlog

from agent.database import Database, DatabaseError, DatabaseUnavailableError, transaction
from agent.degradation.errors import FlagStoreError, StateError, StoreUnavailableError
from agent.degradation.flags import FlagDocument
from agent.degradation.flagstore import parse_document, render_document
from agent.degradation.sqlitestore import (
    audit_row,
    dump_json,
    read_flags,
    read_state,
    state_document,
    write_flags,
    write_state,
)

log = structlog.get_logger("vigil.degradation.legacy")

STATE = "degradation.json"
JOURNALS = ("degradation.json.journal.1", "degradation.json.journal")  # oldest first
AUDIT = "audit.jsonl"
FLAGS = "flags.json"
ASIDE = ".imported"
"""What an imported file's name gets appended."""


@dataclasses.dataclass(frozen=True, slots=True)
class LegacyFiles:
    """What the previous release's files hold."""

    paths: tuple[Path, ...]
    state: dict[str, Any] | None
    audit: tuple[dict[str, Any], ...]
    flags: FlagDocument | None


async def import_files(database: Database, data_dir: Path) -> LegacyFiles | None:
    """Import the files under `data_dir` into `database` once; None when there are none.

    StateError or FlagStoreError (naming the file) when a file exists but cannot be used, as
    the previous release refused to start over it; nothing is imported or renamed then.
    """
    found = await asyncio.to_thread(read, data_dir)
    if found is None:
        return None
    try:
        imported = await database.run(lambda db: _store(db, found))
    except DatabaseUnavailableError as exc:
        raise StoreUnavailableError(str(exc)) from exc
    except DatabaseError as exc:
        raise StateError(str(exc)) from exc
    if imported is None:
        log.warning(
            "previous release's files left in place: the database holds other state already",
            files=[str(p) for p in found.paths],
            database=str(database.path),
        )
        return None
    aside = await asyncio.to_thread(_rename_aside, found.paths)
    log.info(
        "imported the previous release's files into the database",
        database=str(database.path),
        version=None if found.state is None else found.state["version"],
        audit_entries=len(found.audit),
        flags=None if found.flags is None else len(found.flags.flags),
        renamed=[str(p) for p in aside],
        again=not imported,
    )
    return found


def read(data_dir: Path) -> LegacyFiles | None:
    """The previous release's files under `data_dir`, recovered as its file store did."""
    paths = [data_dir / name for name in (STATE, *JOURNALS, AUDIT, FLAGS)]
    present = tuple(p for p in paths if p.exists())
    if not present:
        return None
    state = _snapshot(data_dir / STATE)
    commits = _latest([c for name in JOURNALS for c in _commits(_read(data_dir / name))])
    for commit_state, _ in commits:
        if state is None or commit_state["version"] > state["version"]:
            state = commit_state
    reached = -1 if state is None else int(state["version"])
    audit: dict[object, dict[str, Any]] = {}
    journaled = [e for _, entries in commits for e in entries]
    for entry in [*_lines(_read(data_dir / AUDIT)), *journaled]:
        version = entry.get("version", 0)
        # An entry of a version the state never reached was never acknowledged; one without a
        # whole-number version was not written by Vigil.
        if isinstance(version, int) and version <= reached:
            audit.setdefault(entry.get("id", len(audit)), entry)
    flags = None
    if (data_dir / FLAGS).exists():
        flags = parse_document(_read(data_dir / FLAGS), f"flag file {data_dir / FLAGS}")
    return LegacyFiles(present, state, tuple(audit.values()), flags)


def _store(db: sqlite3.Connection, found: LegacyFiles) -> bool | None:
    """Import `found` in one transaction: True when imported now, False when the database
    holds exactly this import already (a crash before the renames), None when it holds other
    state and nothing was written."""
    with transaction(db):
        stored_state, stored_flags = read_state(db), read_flags(db)
        if stored_state is None and stored_flags is None:
            if found.state is not None:
                rows = [audit_row(e) for e in found.audit]
                write_state(db, int(found.state["version"]), dump_json(found.state), rows)
            if found.flags is not None:
                write_flags(db, render_document(found.flags).decode())
            return True
    same_state = found.state is None or (
        stored_state is not None and json.loads(stored_state) == found.state
    )
    same_flags = found.flags is None or (
        stored_flags is not None and _flags_equal(stored_flags, found.flags)
    )
    return False if same_state and same_flags else None


def _flags_equal(stored: str, flags: FlagDocument) -> bool:
    try:
        return parse_document(stored, "stored flags") == flags
    except FlagStoreError:
        return False


def _rename_aside(paths: tuple[Path, ...]) -> list[Path]:
    """Rename each file to `<name>.imported` (`.imported.N` if that is taken), durably."""
    renamed = []
    for path in paths:
        target = path.with_name(path.name + ASIDE)
        n = 0
        while target.exists():
            n += 1
            target = path.with_name(f"{path.name}{ASIDE}.{n}")
        os.replace(path, target)
        renamed.append(target)
    directory = os.open(paths[0].parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return renamed


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""
    except OSError as exc:
        raise StateError(f"{path}: cannot read: {exc.strerror}") from exc


def _snapshot(path: Path) -> dict[str, Any] | None:
    return state_document(_read(path), str(path)) if path.exists() else None


Commit = tuple[dict[str, Any], list[dict[str, Any]]]


def _commits(raw: bytes) -> list[Commit]:
    """A journal's whole lines, oldest first: the state, then its audit entries, tab-separated
    (or, from an older release, one object with `state` and `audit`). The space after the last
    line is zeros; a line without its newline was torn by a crash and never acknowledged."""
    commits = []
    for line in raw.rstrip(b"\0").split(b"\n")[:-1]:
        try:
            parts = [orjson.loads(part) for part in line.split(b"\t")]
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
            commits.append((state, audit))
    return commits


def _latest(commits: list[Commit]) -> list[Commit]:
    """`commits` by version; of two with one version the later counts (the earlier one's
    write was refused to its caller and retried)."""
    by_version = {int(c[0]["version"]): c for c in commits}
    return [by_version[v] for v in sorted(by_version)]


def _lines(raw: bytes) -> list[dict[str, Any]]:
    """The audit log's JSON objects; a torn or blank line is skipped."""
    records = []
    for line in raw.split(b"\n"):
        try:
            record = orjson.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
