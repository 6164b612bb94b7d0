"""The backups' admin API: the jobs with their schedules and last outcomes, the catalogue's
backups and runs, and backups, verifications and drills started on demand.

Served only when backup jobs are configured. Reads need nothing; starting an operation needs an
admin credential (`auth.py`), runs it on a worker thread through the agent's scheduler and
answers 202 once it holds the job's lock (409 when another run holds it). The run is recorded
with the actor who asked. This module imports the backup package only where it is used: the
OpenAPI document reads its request models in every agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import structlog
from aiohttp import web
from multidict import MultiMapping
from pydantic import BaseModel, ConfigDict, Field

from agent.config.backup import FilesJob, PostgresJob
from agent.server.auth import AdminAuth
from agent.server.plumbing import bad_request, read_model
from agent.server.requests import known_parameters, query_limit, query_time

if TYPE_CHECKING:
    from agent.backup.catalogue import JobStatus
    from agent.backup.errors import BackupError
    from agent.backup.scheduler import Scheduler

Job = FilesJob | PostgresJob

Audit = Callable[[str, Mapping[str, Any], str], Awaitable[None]]
"""Appends an entry to the agent's audit trail: action, fields, actor."""

log = structlog.get_logger("vigil.backup.api")

_ACTOR = r"^[\w.@:+-]{1,100}$"
_BACKUP_ID = r"^[0-9A-Za-z.:_-]{1,100}$"


class BackupRequest(BaseModel):
    """Body of `POST /api/v1/backups/jobs/{job}/backup` (optional)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["full", "differential", "incremental"] = "full"
    actor: str | None = Field(default=None, pattern=_ACTOR)


class VerifyRequest(BaseModel):
    """Body of `POST /api/v1/backups/jobs/{job}/verify` (optional): the newest backup unless
    `backup_id` names one."""

    model_config = ConfigDict(extra="forbid", strict=True)

    backup_id: str | None = Field(default=None, pattern=_BACKUP_ID)
    actor: str | None = Field(default=None, pattern=_ACTOR)


class DrillRequest(BaseModel):
    """Body of `POST /api/v1/backups/jobs/{job}/drill` (optional): the newest backup unless
    `backup_id` names one."""

    model_config = ConfigDict(extra="forbid", strict=True)

    backup_id: str | None = Field(default=None, pattern=_BACKUP_ID)
    actor: str | None = Field(default=None, pattern=_ACTOR)


_Request = BackupRequest | VerifyRequest | DrillRequest

BACKUP_PARAMETERS = ("job", "kind", "since", "until", "limit")
RUN_PARAMETERS = ("job", "operation", "limit")
KINDS = ("files", "postgres_logical", "postgres_physical")
OPERATIONS = ("backup", "verify", "restore", "drill", "prune")
_JOB = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")  # as agent.config.backup names a job


class BackupApi:
    """Route handlers over the agent's backup scheduler, with the shared admin check."""

    def __init__(self, scheduler: Scheduler, auth: AdminAuth, audit: Audit | None = None) -> None:
        self.scheduler = scheduler
        self.backups = scheduler.backups
        self.auth = auth
        self._audit = audit
        self._tasks: set[asyncio.Task[BackupError | None]] = set()
        self._stopping = False

    def register(self, app: web.Application) -> None:
        """Add the routes to `app`."""
        app[BACKUP_API] = self
        r = app.router
        r.add_get("/api/v1/backups", self.list_backups)
        r.add_get("/api/v1/backups/jobs", self.jobs)
        r.add_get("/api/v1/backups/runs", self.runs)
        for operation in ("backup", "verify", "drill"):
            r.add_post(f"/api/v1/backups/jobs/{{job}}/{operation}", self._starter(operation))

    async def stop(self, grace_seconds: float) -> None:
        """Refuse new operations, wait up to `grace_seconds` for those started here (the
        scheduler's stop has told them to stop at their next chunk), then cancel the rest."""
        self._stopping = True
        tasks = list(self._tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=grace_seconds)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # --- reads ------------------------------------------------------------------------------

    async def jobs(self, request: web.Request) -> web.Response:
        """Every configured job: schedules, what runs now, last outcomes, failure counts."""
        _only(request.query, ())
        statuses = await self._read(self.backups.status)
        now = self.scheduler.clock()
        return web.json_response(
            {"jobs": [self._job_json(job, statuses[job.name], now) for job in self._configured()]}
        )

    async def list_backups(self, request: web.Request) -> web.Response:
        """Catalogued backups, newest first, filtered (the fields of `vigil backup list --json`)."""
        query = request.query
        _only(query, BACKUP_PARAMETERS)
        job, kind = _name(query, "job"), _one_of(query, "kind", KINDS)
        since, until, limit = _time(query, "since"), _time(query, "until"), _limit(query)
        entries = await self._read(lambda: self.backups.listing(job, kind, since, until))
        newest = [e.as_json() for e in reversed(entries[-limit:])]
        return web.json_response({"backups": newest})

    async def runs(self, request: web.Request) -> web.Response:
        """Recorded runs, newest first, with who asked for each when known."""
        query = request.query
        _only(query, RUN_PARAMETERS)
        job, operation = _name(query, "job"), _one_of(query, "operation", OPERATIONS)
        limit = _limit(query)
        found = await self._read(lambda: self.backups.runs(job, operation, limit))
        return web.json_response({"runs": [run.as_json() for run in found]})

    async def _read(self, work: Callable[[], Any]) -> Any:
        """`work` on a worker thread; 503 when the agent's database cannot answer."""
        from agent.database.errors import DatabaseError

        try:
            return await asyncio.to_thread(work)
        except DatabaseError as exc:
            raise web.HTTPServiceUnavailable(
                text=json.dumps({"error": f"backup catalogue unavailable: {exc}"}),
                content_type="application/json",
            ) from None

    def _configured(self) -> list[Job]:
        return list(self.backups.settings.jobs)

    def _job_json(self, job: Job, status: JobStatus, now: float) -> dict[str, Any]:
        from agent.backup.scheduler import next_fire

        def schedule(expression: str | None) -> dict[str, str] | None:
            if not expression:
                return None
            return {"cron": expression, "next": _iso(next_fire(expression, now))}

        newest = max(
            status.last_backup.values(),
            key=lambda e: (e.manifest.ended, e.manifest.id),  # ids sort by start time
            default=None,
        )
        verify, drill = status.last_run.get("verify"), status.last_run.get("drill")
        failures: dict[str, dict[str, int]] = {}
        for (operation, reason), count in sorted(status.failures.items()):
            failures.setdefault(operation, {})[reason] = count
        return {
            "name": job.name,
            "kind": job.kind,
            "mode": job.mode if isinstance(job, PostgresJob) else None,
            "schedules": {
                "full": schedule(job.schedule.full),
                "differential": schedule(job.schedule.differential),
                "incremental": schedule(job.schedule.incremental),
                "drill": schedule(job.drill.schedule),
            },
            "running": self._running(job.name),
            "last_success": {op: _iso(at) for op, at in sorted(status.last_success.items())},
            "last_backup": None
            if newest is None
            else {
                "id": newest.manifest.id,
                "type": newest.manifest.type.value,
                "ended": _iso(newest.manifest.ended),
                "duration_seconds": round(newest.manifest.duration, 3),
                "plain_bytes": newest.manifest.plain_bytes,
                "stored_bytes": newest.manifest.stored_bytes,
            },
            "last_verification": None
            if verify is None
            else {
                "at": _iso(verify.ended),
                "ok": verify.ok,
                "reason": verify.reason,
                "backup_id": verify.backup_id,
            },
            "last_drill": None
            if drill is None
            else {
                "at": _iso(drill.ended),
                "ok": drill.ok,
                "reason": drill.reason,
                "backup_id": drill.backup_id,
                "rto_seconds": drill.details.get("rto_seconds"),
                "rpo_seconds": drill.details.get("rpo_seconds"),
            },
            "failures": failures,
            "backups": status.backups,
        }

    def _running(self, job: str) -> dict[str, Any] | None:
        """The operation of `job` running in this agent now, with its bytes done so far."""
        for (name, operation), tracker in list(self.backups.running.items()):
            if name == job:
                return {
                    "operation": operation,
                    "phase": tracker.current or None,
                    "done_bytes": tracker.done_bytes,
                }
        return None

    # --- operations -------------------------------------------------------------------------

    def _starter(
        self, operation: str
    ) -> Callable[[web.Request], Any]:  # a handler per operation, one body model each
        models: dict[str, type[_Request]] = {
            "backup": BackupRequest,
            "verify": VerifyRequest,
            "drill": DrillRequest,
        }
        model = models[operation]

        async def start(request: web.Request) -> web.Response:
            return await self._start(request, operation, model)

        start.__doc__ = f"Start a {operation} of the job now (admin; 202 once it has started)."
        return start

    async def _start(
        self, request: web.Request, operation: str, model: type[_Request]
    ) -> web.Response:
        principal = self.auth.authorize(request)
        name = request.match_info["job"]
        job = self.backups.settings.job(name)
        if job is None:
            known = ", ".join(j.name for j in self._configured())
            raise _error(web.HTTPNotFound, f"no backup job {name[:100]!r} (known: {known})")
        body = await read_model(request, model)
        actor = principal.acting_as(body.actor)
        arguments = await self._arguments(job, operation, body)
        if self._stopping:
            raise _error(web.HTTPServiceUnavailable, "the agent is stopping")
        running = self._running(job.name)
        if running is not None:
            raise _busy(job.name, running["operation"])
        accepted = self.scheduler.clock()
        error = await self._launch(job.name, operation, actor, arguments)
        if error is not None:  # another process (or a run not yet listed) holds the lock
            running = self._running(job.name)
            raise _busy(job.name, running["operation"] if running else None)
        log.info("backup operation started", job=job.name, operation=operation, actor=actor)
        await self._note(job.name, operation, actor, arguments)
        return web.json_response(
            {"job": job.name, "operation": operation, "accepted_at": _iso(accepted)}, status=202
        )

    async def _note(self, job: str, operation: str, actor: str, arguments: dict[str, Any]) -> None:
        """An audit entry `backup_started` for the operation, when the agent keeps an audit
        trail (degradation enabled). The operation has started either way: a trail that cannot
        take the entry now is logged, not answered as a failure."""
        if self._audit is None:
            return
        from agent.degradation.errors import ConflictError, StoreUnavailableError

        body: dict[str, Any] = {"job": job, "operation": operation}
        if "wanted" in arguments:
            body["type"] = arguments["wanted"].value
        if "backup" in arguments:
            body["backup"] = arguments["backup"]
        try:
            await self._audit("backup_started", body, actor)
        except (StoreUnavailableError, ConflictError) as exc:
            log.error("backup operation started but not audited", job=job, error=str(exc))

    async def _arguments(self, job: Job, operation: str, body: _Request) -> dict[str, Any]:
        """The scheduler's keyword arguments for `body`; 400, 404 or 409 when they cannot run."""
        from agent.backup.manifest import BackupType

        if isinstance(body, BackupRequest):
            if job.kind != "files" and body.type != "full":
                raise bad_request(f"job {job.name} is a {job.kind} job: its backups are full")
            return {"wanted": BackupType(body.type)}
        assert isinstance(body, VerifyRequest | DrillRequest)
        ids = {e.manifest.id for e in await self._read(lambda: self.backups.listing(job.name))}
        if body.backup_id is None:
            if not ids:
                raise _error(web.HTTPConflict, f"job {job.name} has no backup to {operation}")
            return {"backup": "latest"}
        if body.backup_id not in ids:
            raise _error(web.HTTPNotFound, f"job {job.name} has no backup {body.backup_id!r}")
        return {"backup": body.backup_id}

    async def _launch(
        self, job: str, operation: str, actor: str, arguments: dict[str, Any]
    ) -> BackupError | None:
        """Start the operation in the background; once it holds the job's lock, None; the
        BackupError (busy) when it could not take it."""
        from agent.backup.frame import Caller

        loop = asyncio.get_running_loop()
        started: asyncio.Future[None] = loop.create_future()

        def on_start() -> None:  # on the worker thread, once the lock is held
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                loop.call_soon_threadsafe(_settle, started)

        caller = Caller(actor, on_start)
        task = asyncio.create_task(
            self._run(job, operation, actor, {**arguments, "caller": caller}),
            name=f"backup-api-{operation}-{job}",
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        waited: list[asyncio.Future[Any]] = [started, task]
        await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
        if started.done() or task.cancelled():
            return None
        return task.result()  # finished before it started: busy (anything else: recorded)

    async def _run(
        self, job: str, operation: str, actor: str, arguments: dict[str, Any]
    ) -> BackupError | None:
        """Run one operation; a busy job's BackupError is returned, others are logged (the
        catalogue and the signals have them already)."""
        from agent.backup.errors import BackupError, Reason

        try:
            await self.scheduler.run(operation, job, **arguments)
        except BackupError as exc:
            if exc.reason is Reason.BUSY:
                return exc
            log.warning(
                "requested run failed",
                operation=operation,
                job=job,
                actor=actor,
                reason=exc.reason.value,
                error=str(exc),
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("requested run failed", operation=operation, job=job, actor=actor)
        return None


BACKUP_API = web.AppKey("backup_api", BackupApi)
"""The backups API of an app, when backups are configured (the OpenAPI document lists them)."""


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _iso(at: float) -> str:
    """Seconds since the epoch as ISO 8601 UTC, to the millisecond: `2027-03-01T03:00:00.000Z`."""
    moment = dt.datetime.fromtimestamp(at, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error(kind: type[web.HTTPException], message: str) -> web.HTTPException:
    return kind(text=json.dumps({"error": message}), content_type="application/json")


def _busy(job: str, operation: str | None) -> web.HTTPException:
    what = f"a {operation}" if operation else "(another process holds its lock)"
    return _error(web.HTTPConflict, f"job {job} is already running {what}")


def _only(query: MultiMapping[str], known: tuple[str, ...]) -> None:
    """400 for a parameter not in `known`, or one given twice."""
    try:
        known_parameters(query, known)
    except ValueError as exc:
        raise bad_request(str(exc)) from None


def _name(query: MultiMapping[str], key: str) -> str | None:
    value = query.get(key)
    if value is not None and not _JOB.fullmatch(value):
        raise bad_request(f"{key} must be a job name (lowercase letters, digits, _ . -)")
    return value


def _one_of(query: MultiMapping[str], key: str, allowed: Sequence[str]) -> str | None:
    value = query.get(key)
    if value is not None and value not in allowed:
        raise bad_request(f"{key} must be one of {', '.join(allowed)}")
    return value


def _limit(query: MultiMapping[str]) -> int:
    try:
        return query_limit(query)
    except ValueError as exc:
        raise bad_request(str(exc)) from None


def _time(query: MultiMapping[str], key: str) -> float | None:
    try:
        moment = query_time(query, key)
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    return None if moment is None else moment.timestamp()
