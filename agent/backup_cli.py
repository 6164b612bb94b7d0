"""`vigil backup ...`: create, list, verify, restore, drill and prune backups of the configured
jobs from the command line, with progress bars on a terminal, `--json` for machines and exit
codes a cron job can rely on: 0 done, 1 failed, 2 usage or a refused request (an unknown job or
backup, a non-empty destination), 3 configuration, 4 the job is busy."""

from __future__ import annotations

import functools
import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from agent.config import ConfigError, VigilConfig, load_config
from agent.config.loader import CONFIG_ERROR_EXIT

# The backup package (zstandard, pyrage, the database) loads with the command that uses it:
# `vigil run` imports this module to register the group (benchmarks/footprint.py).
if TYPE_CHECKING:
    from agent.backup.progress import Progress
    from agent.backup.retention import Decision
    from agent.backup.service import Backups

FAILED_EXIT = 1
REFUSED_EXIT = 2
BUSY_EXIT = 4
T = TypeVar("T")

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="VIGIL_CONFIG",
    help="The agent's YAML config: jobs, repository, keys (env VIGIL_CONFIG).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")


@click.group()
def backup() -> None:
    """Back up, verify, restore and drill the jobs of `backup.jobs`."""


def _service(config_path: Path | None) -> Backups:
    from agent import __version__
    from agent.backup.service import Backups
    from agent.database import Database
    from agent.server.agent import database_path, schemas

    config = _config(config_path)
    database = Database(database_path(config), schemas())
    database.acquire()
    return Backups(
        config.backup,
        database,
        Path(config.agent.data_dir),
        version=__version__,
        config_path=config_path.resolve() if config_path else None,
    )


def _config(path: Path | None) -> VigilConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(exc.render(), err=True)
        sys.exit(CONFIG_ERROR_EXIT)


class _Bars:
    """Progress as rich bars on stderr (bytes, throughput, elapsed), one per phase."""

    def __init__(self, progress: Any) -> None:
        self._progress = progress
        self._task: Any = None

    def phase(self, name: str, total_bytes: int | None) -> None:
        if self._task is not None:
            self._progress.update(self._task, visible=False)
        self._task = self._progress.add_task(name, total=total_bytes)

    def advance(self, done_bytes: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, done_bytes)


@contextmanager
def _bars(enabled: bool) -> Iterator[Progress | None]:
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        yield _Bars(progress)


def _run(what: str, as_json: bool, work: Callable[[Progress | None], T]) -> tuple[T, float]:
    """`work` with progress bars (unless `--json`); its result and seconds. Exits with the
    failure's code and message on a BackupError or a database error."""
    from agent.backup.errors import BackupError, Reason
    from agent.database import DatabaseError

    started = time.monotonic()
    try:
        with _bars(not as_json) as progress:
            result = work(progress)
    except BackupError as exc:
        seconds = time.monotonic() - started
        if as_json:
            click.echo(
                json.dumps(
                    {"ok": False, "reason": exc.reason.value, "error": str(exc), "seconds": seconds}
                )
            )
        click.echo(
            f"vigil: {what} failed ({exc.reason.value}) after {seconds:.1f} s: {exc}", err=True
        )
        codes = {Reason.BUSY: BUSY_EXIT, Reason.REFUSED: REFUSED_EXIT}
        sys.exit(codes.get(exc.reason, FAILED_EXIT))
    except DatabaseError as exc:
        click.echo(f"vigil: {what} failed: {exc}", err=True)
        sys.exit(FAILED_EXIT)
    return result, time.monotonic() - started


def _succeeded(**fields: Any) -> None:
    """The `--json` document of a command that succeeded."""
    click.echo(json.dumps({"ok": True, **fields}, default=str))


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _rate(n: float, seconds: float) -> str:
    return f"{_size(n / seconds)}/s" if seconds > 0 else "-"


@backup.command(name="create")
@config_option
@click.argument("job")
@click.option(
    "--type",
    "backup_type",
    type=click.Choice(["full", "differential", "incremental"]),
    default="full",
    show_default=True,
    help="What to store: everything, changes since the last full, or since the last backup.",
)
@json_option
def create_command(config_path: Path | None, job: str, backup_type: str, as_json: bool) -> None:
    """Take a backup of JOB now."""
    from agent.backup.manifest import BackupType

    service = _service(config_path)
    manifest, seconds = _run(
        f"backup of {job}",
        as_json,
        lambda progress: service.create(job, BackupType(backup_type), progress),
    )
    if as_json:
        _succeeded(seconds=seconds, backup=_manifest_json(manifest))
        return
    note = manifest.details.get("note")
    click.echo(
        f"{manifest.job}: {manifest.type.value} backup {manifest.id} in {manifest.duration:.1f} s:"
        f" {_size(manifest.plain_bytes)} read, {_size(manifest.stored_bytes)} stored"
        f" ({_rate(manifest.plain_bytes, manifest.duration)})"
        + (f", encrypted to {manifest.key_id}" if manifest.key_id else "")
        + (f"; {note}" if note else "")
    )


def _manifest_json(manifest: Any) -> dict[str, Any]:
    from agent.backup.catalogue import Entry

    return {**Entry(manifest).as_json(), "details": dict(manifest.details)}


_RELATIVE = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _when(value: str | None) -> float | None:
    """An ISO 8601 time (UTC unless it says otherwise) or an age such as `24h` or `7d`."""
    if value is None:
        return None
    match = _RELATIVE.match(value.strip())
    if match:
        return time.time() - int(match.group(1)) * _UNITS[match.group(2)]
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither an ISO 8601 time nor an age like 24h"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


@backup.command(name="list")
@config_option
@click.option("--job", help="Only this job.")
@click.option(
    "--kind",
    type=click.Choice(["files", "postgres_logical", "postgres_physical"]),
    help="Only this kind.",
)
@click.option("--since", help="Started at or after: ISO 8601, or an age (30m, 24h, 7d).")
@click.option("--until", help="Started before: ISO 8601, or an age.")
@click.option("--rescan", is_flag=True, help="Rebuild the catalogue from the repository first.")
@json_option
def list_command(
    config_path: Path | None,
    job: str | None,
    kind: str | None,
    since: str | None,
    until: str | None,
    rescan: bool,
    as_json: bool,
) -> None:
    """List catalogued backups, oldest first."""
    service = _service(config_path)
    since_at, until_at = _when(since), _when(until)
    bad: list[str] = []
    if rescan:
        (changed, bad), _ = _run("rescan", True, lambda _: service.rescan())
        if not as_json:
            click.echo(
                f"catalogue rebuilt from {service.repository.display}: {changed} changed", err=True
            )
            for line in bad:
                click.echo(f"vigil: unusable backup {line}", err=True)
    entries, _ = _run("list", True, lambda _: service.listing(job, kind, since_at, until_at))
    if as_json:
        click.echo(json.dumps({"backups": [e.as_json() for e in entries], "unusable": bad}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False)
    # Ids are what the other commands take: never cut, whatever the terminal's width.
    for column in ("job", "id", "type", "parent", "took", "read", "stored", "verified", "drill"):
        table.add_column(column, no_wrap=column in ("id", "parent"), overflow="fold")
    for entry in entries:
        m = entry.manifest
        table.add_row(
            m.job,
            m.id,
            m.type.value,
            m.parent or "",
            f"{m.duration:.1f} s",
            _size(m.plain_bytes),
            _size(m.stored_bytes),
            _verdict(entry.verified_ok, entry.verified_at),
            _verdict(entry.drill_ok, entry.drilled_at)
            + (f" rto {entry.drill_rto:.1f} s" if entry.drill_rto is not None else ""),
        )
    # A pipe gets the whole table, not one cut to 80 columns.
    Console(highlight=False, width=None if sys.stdout.isatty() else 200).print(table)


def _verdict(ok: bool | None, at: float | None) -> str:
    if ok is None or at is None:
        return "never"
    stamp = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M")
    return f"{'ok' if ok else 'FAILED'} {stamp}"


@backup.command(name="verify")
@config_option
@click.argument("job", required=False)
@click.option("--id", "backup_id", help="Only this backup (default: every backup of the job).")
@json_option
def verify_command(
    config_path: Path | None, job: str | None, backup_id: str | None, as_json: bool
) -> None:
    """Verify every artifact (checksum, decryption, the kind's own check) of JOB's backups, or
    of every job's."""
    service = _service(config_path)
    jobs = [job] if job else [j.name for j in service.settings.jobs]
    if backup_id and not job:
        raise click.UsageError("--id needs a JOB")
    report: dict[str, Any] = {}
    for name in jobs:
        outcomes, seconds = _run(
            f"verification of {name}",
            as_json,
            functools.partial(_verify, service, name, backup_id),
        )
        report[name] = outcomes
        if not as_json:
            click.echo(f"{name}: {len(outcomes)} backup(s) verified in {seconds:.1f} s")
    if as_json:
        _succeeded(jobs=report)


def _verify(
    service: Backups, job: str, backup_id: str | None, progress: Progress | None
) -> list[dict[str, Any]]:
    return service.verify(job, backup_id, progress)


@backup.command(name="restore")
@config_option
@click.argument("job")
@click.option("--id", "backup_id", help="The backup (default: the newest).")
@click.option(
    "--destination",
    type=click.Path(file_okay=False, path_type=Path),
    help="files and physical jobs: an empty directory to restore into.",
)
@click.option("--database", help="logical jobs: the database to restore into (created).")
@click.option("--force", is_flag=True, help="Restore into a non-empty destination or database.")
@json_option
def restore_command(
    config_path: Path | None,
    job: str,
    backup_id: str | None,
    destination: Path | None,
    database: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Restore a backup of JOB, verified first."""
    service = _service(config_path)
    details, seconds = _run(
        f"restore of {job}",
        as_json,
        lambda progress: service.restore(job, backup_id, destination, database, force, progress),
    )
    if as_json:
        _succeeded(seconds=seconds, restore=details)
        return
    where = details.get("destination") or details.get("database") or ""
    click.echo(f"{job}: restored into {where} in {seconds:.1f} s")


@backup.command(name="pitr")
@config_option
@click.argument("job")
@click.option("--target-time", help="Recover to this time (ISO 8601 with its UTC offset).")
@click.option("--target-lsn", help="Recover to this WAL position (e.g. 0/3000060).")
@click.option("--target-name", help="Recover to this restore point (pg_create_restore_point).")
@click.option(
    "--destination",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="An empty directory: the new cluster's data directory.",
)
@click.option("--force", is_flag=True, help="Empty a non-empty destination first.")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    help="Start the recovered cluster on 127.0.0.1:PORT and wait until it has promoted.",
)
@json_option
def pitr_command(
    config_path: Path | None,
    job: str,
    target_time: str | None,
    target_lsn: str | None,
    target_name: str | None,
    destination: Path,
    force: bool,
    port: int | None,
    as_json: bool,
) -> None:
    """Point-in-time recovery of a physical PostgreSQL JOB into a new data directory."""
    from agent.backup.errors import BackupError
    from agent.backup.pitr import RecoveryTarget

    if sum(v is not None for v in (target_time, target_lsn, target_name)) != 1:
        raise click.UsageError("give exactly one of --target-time, --target-lsn, --target-name")
    try:
        when = datetime.fromisoformat(target_time) if target_time else None
    except ValueError:
        raise click.BadParameter(f"{target_time!r} is not an ISO 8601 time") from None
    try:
        target = RecoveryTarget(time=when, lsn=target_lsn, name=target_name)
    except BackupError as exc:
        raise click.BadParameter(str(exc)) from None
    service = _service(config_path)
    details, seconds = _run(
        f"point-in-time recovery of {job}",
        as_json,
        lambda progress: service.pitr(job, target, destination, force, port, progress),
    )
    if as_json:
        _succeeded(seconds=seconds, pitr=details)
        return
    click.echo(f"{job}: backup {details['backup']} restored into {destination} in {seconds:.1f} s,")
    click.echo(f"  recovering to {details['target']} through: {details['restore_command']}")
    if port is None:
        click.echo(f"  start it with: pg_ctl -D {destination} -o '-p PORT' start (as postgres)")
        return
    click.echo(f"  running on 127.0.0.1:{details['port']}; the server log says:")
    for line in details.get("proof", []):
        click.echo(f"    {line}")


@backup.command(name="drill")
@config_option
@click.argument("job")
@json_option
def drill_command(config_path: Path | None, job: str, as_json: bool) -> None:
    """Restore JOB's newest backup into a scratch place, check it, measure RTO and RPO."""
    service = _service(config_path)
    details, seconds = _run(
        f"drill of {job}", as_json, lambda progress: service.drill(job, progress)
    )
    if as_json:
        _succeeded(seconds=seconds, drill=details)
        return
    click.echo(
        f"{job}: drill passed: recovered in {details['rto_seconds']:.1f} s (RTO),"
        f" data {details['rpo_seconds']:.0f} s old (RPO)"
    )


@backup.command(name="prune")
@config_option
@click.argument("job", required=False)
@click.option("--dry-run", is_flag=True, help="Show what would go; delete nothing.")
@json_option
def prune_command(config_path: Path | None, job: str | None, dry_run: bool, as_json: bool) -> None:
    """Delete the backups JOB's retention (or every job's) no longer keeps."""
    service = _service(config_path)
    jobs = [job] if job else [j.name for j in service.settings.jobs]
    report = {}
    for name in jobs:
        decision, _ = _run(
            f"prune of {name}", as_json, functools.partial(_prune, service, name, dry_run)
        )
        report[name] = decision.as_json()
        if not as_json:
            verb = "would delete" if dry_run else "deleted"
            gone = ", ".join(m.id for m in decision.delete) or "nothing"
            click.echo(f"{name}: {verb} {gone}; keeping {len(decision.keep)}")
            for manifest in decision.keep:
                click.echo(f"  keep {manifest.id}: {', '.join(decision.reasons[manifest.id])}")
    if as_json:
        _succeeded(dry_run=dry_run, jobs=report)


def _prune(service: Backups, job: str, dry_run: bool, progress: Progress | None) -> Decision:
    return service.prune(job, dry_run)
