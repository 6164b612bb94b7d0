"""The agent's side of backups: each job's cron schedules (backups of each type, drills), runs
on worker threads with one run per job at a time, retention after every scheduled backup, and the
snapshot the signals read, refreshed after each run and every `refresh_seconds`.

Schedules are evaluated in UTC against the injected clock; a fire time missed while the agent was
down is not caught up (as cron). The loop wakes at least every second, so a test moving the clock
sees the run start without waiting for the real minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from cronsim import CronSim

from agent.backup.errors import BackupError, Reason
from agent.backup.manifest import BackupType
from agent.backup.metrics import Archiver, Snapshot
from agent.backup.service import Backups, Job, kind_of
from agent.config.backup import PostgresJob, cron_fields

log = structlog.get_logger("vigil.backup")

WAKE_SECONDS = 1.0
"""The longest the loop sleeps before reading the clock again."""

# When several types fire at once, the one that stores most runs.
_ORDER = (BackupType.FULL, BackupType.DIFFERENTIAL, BackupType.INCREMENTAL)


def next_fire(expression: str, after: float) -> float:
    """The first time strictly after `after` (seconds since the epoch) that `expression`
    fires, in UTC."""
    start = datetime.fromtimestamp(after, UTC).replace(microsecond=0)
    for when in CronSim(cron_fields(expression), start):
        if when.timestamp() > after:
            return when.timestamp()
    raise ValueError(f"{expression!r} never fires")  # pragma: no cover - validated in config


def due(job: Job, since: float, now: float) -> tuple[BackupType | None, bool]:
    """What fired for `job` in (since, now]: the backup type that stores most (or None), and
    whether a drill did."""
    fired = None
    for backup_type in _ORDER:
        expression = getattr(job.schedule, backup_type.value)
        if expression and next_fire(expression, since) <= now:
            fired = backup_type
            break
    drill = bool(job.drill.schedule) and next_fire(str(job.drill.schedule), since) <= now
    return fired, drill


class Scheduler:
    """Runs the jobs' schedules and keeps the signals' snapshot."""

    def __init__(
        self,
        backups: Backups,
        clock: Callable[[], float],
        refresh_seconds: float = 30.0,
    ) -> None:
        self.backups = backups
        self.clock = clock
        self.refresh_seconds = refresh_seconds
        self._snapshot = Snapshot(kinds={j.name: kind_of(j).value for j in backups.settings.jobs})
        self._tasks: list[asyncio.Task[None]] = []
        self._refreshed = asyncio.Event()

    def snapshot(self) -> Snapshot:
        """The latest snapshot (for the observable instruments), with what runs right now."""
        return dataclasses.replace(self._snapshot, running=frozenset(self.backups.running))

    async def start(self) -> None:
        """Refresh once, then start one loop per job and the refresher."""
        await self.refresh()
        since = self.clock()  # schedules count from now, not from when each loop first runs
        for job in self.backups.settings.jobs:
            loop = self._job_loop(job, since)
            self._tasks.append(asyncio.create_task(loop, name=f"backup-{job.name}"))
        self._tasks.append(asyncio.create_task(self._refresh_loop(), name="backup-refresh"))

    async def stop(self, grace_seconds: float) -> None:
        """Cancel the loops; running operations stop at their next chunk (cancelled)."""
        for tracker in list(self.backups.running.values()):
            tracker.cancelled.set()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=grace_seconds)
        self._tasks.clear()

    async def run(self, operation: str, job: str, **kwargs: Any) -> Any:
        """Run one operation of `job` now, on a worker thread (BackupError as it is)."""
        method = getattr(self.backups, {"backup": "create"}.get(operation, operation))
        try:
            return await asyncio.to_thread(method, job, **kwargs)
        finally:
            await self.refresh()

    async def _job_loop(self, job: Job, since: float) -> None:
        while True:
            now = self.clock()
            backup_type, drill = due(job, since, now)
            if backup_type is None and not drill:
                await asyncio.sleep(WAKE_SECONDS)
                continue
            since = now
            if backup_type is not None:
                await self._scheduled(job, "backup", wanted=backup_type)
                await self._scheduled(job, "prune")
            if drill:
                await self._scheduled(job, "drill")

    async def _scheduled(self, job: Job, operation: str, **kwargs: Any) -> None:
        try:
            await self.run(operation, job.name, **kwargs)
        except BackupError as exc:
            # Recorded in the catalogue and the signals already; the schedule goes on.
            say = log.info if exc.reason is Reason.BUSY else log.warning
            say(
                "scheduled run failed",
                operation=operation,
                job=job.name,
                reason=exc.reason.value,
                error=str(exc),
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("scheduled run failed", operation=operation, job=job.name)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_seconds)
            with contextlib.suppress(Exception):
                await self.refresh()

    async def refresh(self) -> None:
        """Read the catalogue, the repository's space and the archivers into a new snapshot."""
        jobs = await asyncio.to_thread(self.backups.status)
        space = await asyncio.to_thread(self.backups.space)
        archivers = dict(self._snapshot.archivers)
        for job in self.backups.settings.jobs:
            if isinstance(job, PostgresJob) and job.mode == "physical":
                found = await self._archiver(job)
                if found is not None:
                    archivers[job.name] = found
        self._snapshot = Snapshot(
            kinds=self._snapshot.kinds,
            jobs=jobs,
            space=space,
            archivers=archivers,
            running=frozenset(self.backups.running),
        )

    async def _archiver(self, job: PostgresJob) -> Archiver | None:
        from agent.backup.pgtools import PgTarget
        from agent.backup.physical import archiver_status

        try:
            status = await asyncio.to_thread(archiver_status, PgTarget.of(job))
        except BackupError as exc:
            log.warning("cannot read pg_stat_archiver", job=job.name, error=str(exc))
            return None
        return Archiver(
            status.archived_count,
            status.failed_count,
            status.last_archived_age_seconds,
            status.pending,
        )
