"""The backup catalogue in the agent's database: every backup with its sizes, SHA-256, key and
its last verification and drill, and every run of every operation (failures with their reason).

The repository stays the truth about which backups exist: `sync` makes the catalogue match the
repository's manifests (`vigil backup list --rescan`), so a lost database loses only the history of
runs, never the backups.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from agent.backup.manifest import Manifest
from agent.database import Schema, transaction

SCHEMA = Schema(
    "backup",
    (
        (
            """CREATE TABLE backup_backups (
                job TEXT NOT NULL,
                id TEXT NOT NULL,
                kind TEXT NOT NULL,
                type TEXT NOT NULL,
                parent TEXT,
                started REAL NOT NULL,
                ended REAL NOT NULL,
                plain_bytes INTEGER NOT NULL,
                stored_bytes INTEGER NOT NULL,
                sha256 TEXT NOT NULL,
                key_id TEXT,
                manifest BLOB NOT NULL,
                verified_at REAL,
                verified_ok INTEGER,
                verify_message TEXT,
                drilled_at REAL,
                drill_ok INTEGER,
                drill_rto REAL,
                drill_rpo REAL,
                drill_message TEXT,
                PRIMARY KEY (job, id)
            )""",
            "CREATE INDEX backup_backups_by_time ON backup_backups (job, started)",
            """CREATE TABLE backup_runs (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                job TEXT NOT NULL,
                operation TEXT NOT NULL,
                backup_id TEXT,
                type TEXT,
                started REAL NOT NULL,
                ended REAL NOT NULL,
                ok INTEGER NOT NULL,
                reason TEXT,
                message TEXT,
                details BLOB
            )""",
            "CREATE INDEX backup_runs_by_job ON backup_runs (job, operation, seq)",
        ),
        # 2: who asked for a run (an operator through the admin API); NULL for the schedule,
        # the command line and every run recorded before.
        ("ALTER TABLE backup_runs ADD COLUMN actor TEXT",),
    ),
)


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """One backup as the catalogue knows it."""

    manifest: Manifest
    verified_at: float | None = None
    verified_ok: bool | None = None
    verify_message: str | None = None
    drilled_at: float | None = None
    drill_ok: bool | None = None
    drill_rto: float | None = None
    drill_rpo: float | None = None
    drill_message: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The entry for `--json` output and the API."""
        m = self.manifest
        return {
            "id": m.id,
            "job": m.job,
            "kind": m.kind.value,
            "type": m.type.value,
            "parent": m.parent,
            "started": m.started,
            "ended": m.ended,
            "duration_seconds": round(m.duration, 3),
            "plain_bytes": m.plain_bytes,
            "stored_bytes": m.stored_bytes,
            "sha256": m.artifacts[0].sha256 if m.artifacts else "",
            "key_id": m.key_id,
            "verified_at": self.verified_at,
            "verified_ok": self.verified_ok,
            "drilled_at": self.drilled_at,
            "drill_ok": self.drill_ok,
            "drill_rto_seconds": self.drill_rto,
            "drill_rpo_seconds": self.drill_rpo,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Run:
    """One run of an operation: backup, verify, restore, drill, prune."""

    job: str
    operation: str
    started: float
    ended: float
    ok: bool
    backup_id: str | None = None
    type: str | None = None
    reason: str | None = None
    message: str | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    actor: str | None = None
    """Who asked for it through the admin API; None for the schedule and the command line."""

    def as_json(self) -> dict[str, Any]:
        """The run for `--json` output and the API."""
        return {
            **dataclasses.asdict(self),
            "duration_seconds": round(self.ended - self.started, 3),
        }


def _manifest_row(m: Manifest) -> tuple[Any, ...]:
    sha = m.artifacts[0].sha256 if m.artifacts else ""
    return (
        m.job,
        m.id,
        m.kind.value,
        m.type.value,
        m.parent,
        m.started,
        m.ended,
        m.plain_bytes,
        m.stored_bytes,
        sha,
        m.key_id,
        m.to_json(),
    )


_INSERT = """INSERT INTO backup_backups
    (job, id, kind, type, parent, started, ended, plain_bytes, stored_bytes, sha256, key_id,
     manifest)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (job, id) DO UPDATE SET manifest = excluded.manifest"""


def add(db: sqlite3.Connection, manifest: Manifest, run: Run) -> None:
    """Record a new backup and the run that made it, in one transaction."""
    with transaction(db):
        db.execute(_INSERT, _manifest_row(manifest))
        _insert_run(db, run)


def record(db: sqlite3.Connection, run: Run) -> None:
    """Record a run that made no backup (a failure, a verification, a drill...)."""
    with transaction(db):
        _insert_run(db, run)


def _insert_run(db: sqlite3.Connection, run: Run) -> None:
    db.execute(
        "INSERT INTO backup_runs (job, operation, backup_id, type, started, ended, ok, reason,"
        " message, details, actor) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            run.job,
            run.operation,
            run.backup_id,
            run.type,
            run.started,
            run.ended,
            int(run.ok),
            run.reason,
            run.message,
            orjson.dumps(run.details),
            run.actor,
        ),
    )


def verified(
    db: sqlite3.Connection, job: str, backup_id: str, at: float, ok: bool, message: str | None
) -> None:
    """Store a backup's verification result."""
    db.execute(
        "UPDATE backup_backups SET verified_at = ?, verified_ok = ?, verify_message = ?"
        " WHERE job = ? AND id = ?",
        (at, int(ok), message, job, backup_id),
    )


def drilled(
    db: sqlite3.Connection,
    job: str,
    backup_id: str,
    at: float,
    ok: bool,
    rto: float | None,
    rpo: float | None,
    message: str | None,
) -> None:
    """Store a backup's drill result."""
    db.execute(
        "UPDATE backup_backups SET drilled_at = ?, drill_ok = ?, drill_rto = ?, drill_rpo = ?,"
        " drill_message = ? WHERE job = ? AND id = ?",
        (at, int(ok), rto, rpo, message, job, backup_id),
    )


def remove(db: sqlite3.Connection, job: str, backup_id: str) -> None:
    """Forget a deleted backup."""
    db.execute("DELETE FROM backup_backups WHERE job = ? AND id = ?", (job, backup_id))


def sync(db: sqlite3.Connection, manifests: Sequence[Manifest], jobs: Sequence[str] | None) -> int:
    """Make the catalogue's backups (of `jobs`, or all) exactly the repository's `manifests`,
    keeping verification and drill results of backups that stay. Returns how many changed."""
    with transaction(db):
        wanted = {(m.job, m.id): m for m in manifests}
        rows = db.execute("SELECT job, id FROM backup_backups").fetchall()
        changed = 0
        for job, backup_id in rows:
            if (jobs is None or job in jobs) and (job, backup_id) not in wanted:
                remove(db, job, backup_id)
                changed += 1
        known = {(j, i) for j, i in rows}
        for key, manifest in wanted.items():
            if key not in known:
                changed += 1
            db.execute(_INSERT, _manifest_row(manifest))
        return changed


_COLUMNS = (
    "manifest, verified_at, verified_ok, verify_message, drilled_at, drill_ok, drill_rto,"
    " drill_rpo, drill_message"
)


def _entry(row: Sequence[Any]) -> Entry:
    def flag(value: Any) -> bool | None:
        return None if value is None else bool(value)

    return Entry(
        Manifest.from_json(bytes(row[0])),
        row[1],
        flag(row[2]),
        row[3],
        row[4],
        flag(row[5]),
        row[6],
        row[7],
        row[8],
    )


def backups(
    db: sqlite3.Connection,
    job: str | None = None,
    kind: str | None = None,
    since: float | None = None,
    until: float | None = None,
) -> list[Entry]:
    """Catalogued backups, oldest first, filtered by job, kind and start time."""
    clauses, params = [], []
    for column, op, value in (
        ("job", "=", job),
        ("kind", "=", kind),
        ("started", ">=", since),
        ("started", "<", until),
    ):
        if value is not None:
            clauses.append(f"{column} {op} ?")
            params.append(value)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = db.execute(
        f"SELECT {_COLUMNS} FROM backup_backups{where} ORDER BY started, id",  # noqa: S608 - fixed columns
        params,
    ).fetchall()
    return [_entry(r) for r in rows]


def runs(
    db: sqlite3.Connection, job: str | None = None, operation: str | None = None, limit: int = 100
) -> list[Run]:
    """The newest runs first, filtered by job and operation."""
    clauses, params = [], []
    for column, value in (("job", job), ("operation", operation)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    # Only fixed column names are joined in; every value is a parameter.
    columns = "job, operation, started, ended, ok, backup_id, type, reason, message, details, actor"
    query = f"SELECT {columns} FROM backup_runs{where} ORDER BY seq DESC LIMIT ?"  # noqa: S608
    rows = db.execute(query, [*params, limit]).fetchall()
    return [
        Run(
            job=r[0],
            operation=r[1],
            started=r[2],
            ended=r[3],
            ok=bool(r[4]),
            backup_id=r[5],
            type=r[6],
            reason=r[7],
            message=r[8],
            details=orjson.loads(r[9] or b"{}"),
            actor=r[10],
        )
        for r in rows
    ]


@dataclasses.dataclass(frozen=True, slots=True)
class JobStatus:
    """What the signals say of one job: last runs per operation, last backups per type,
    failures per operation and reason, the last drill's RTO and RPO, and the backup count."""

    last_run: dict[str, Run]
    last_success: dict[str, float]
    last_backup: dict[str, Entry]
    failures: dict[tuple[str, str], int]
    drill_rto: float | None
    drill_rpo: float | None
    backups: int


def status(db: sqlite3.Connection, job: str) -> JobStatus:
    """The current status of `job` for the signals, from a few indexed queries."""
    last_run: dict[str, Run] = {}
    last_success: dict[str, float] = {}
    for operation in ("backup", "verify", "restore", "drill", "prune"):
        found = runs(db, job, operation, limit=1)
        if found:
            last_run[operation] = found[0]
        row = db.execute(
            "SELECT max(ended) FROM backup_runs WHERE job = ? AND operation = ? AND ok = 1",
            (job, operation),
        ).fetchone()
        if row[0] is not None:
            last_success[operation] = float(row[0])
    # The backups themselves say when the last one ended, even after the runs were lost.
    newest = db.execute("SELECT max(ended) FROM backup_backups WHERE job = ?", (job,)).fetchone()
    if newest[0] is not None:
        last_success["backup"] = max(float(newest[0]), last_success.get("backup", 0.0))
    last_backup: dict[str, Entry] = {}
    for entry in backups(db, job):
        last_backup[entry.manifest.type.value] = entry
    failures = {
        (op, reason or "internal"): int(n)
        for op, reason, n in db.execute(
            "SELECT operation, reason, count(*) FROM backup_runs WHERE job = ? AND ok = 0"
            " GROUP BY operation, reason",
            (job,),
        )
    }
    drill = db.execute(
        "SELECT drill_rto, drill_rpo FROM backup_backups WHERE job = ? AND drill_ok = 1"
        " ORDER BY drilled_at DESC LIMIT 1",
        (job,),
    ).fetchone()
    count = db.execute("SELECT count(*) FROM backup_backups WHERE job = ?", (job,)).fetchone()[0]
    return JobStatus(
        last_run,
        last_success,
        last_backup,
        failures,
        drill[0] if drill else None,
        drill[1] if drill else None,
        int(count),
    )
