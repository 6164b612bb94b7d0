"""The frame of every backup operation: the job's lock, a span, a deadline, what is running, and
the run recorded in the catalogue with its outcome (a failure with its reason and message)."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Iterator
from typing import Any

from opentelemetry import trace

from agent.backup import catalogue
from agent.backup.catalogue import Run
from agent.backup.errors import BackupError, Reason
from agent.backup.progress import Progress, Quiet, Tracker
from agent.backup.repository import Repository
from agent.database import Database, transaction
from agent.telemetry.redact import redactor
from agent.telemetry.spans import mark_error


@dataclasses.dataclass(frozen=True, slots=True)
class Caller:
    """Who asked for an operation, recorded with its run, and what to call (on the worker
    thread) once it holds the job's lock: the admin API answers 202 only then, and 409 when the
    lock is another run's."""

    actor: str | None = None
    on_start: Callable[[], None] | None = None


class Frame:
    """Runs operations in their frame and records them."""

    def __init__(
        self,
        repository: Repository,
        database: Database,
        clock: Callable[[], float],
        tracer: trace.Tracer,
    ) -> None:
        self.repository = repository
        self.database = database
        self.clock = clock
        self.tracer = tracer
        self.running: dict[tuple[str, str], Tracker] = {}
        self._running_lock = threading.Lock()

    @contextlib.contextmanager
    def operation(
        self,
        job: str,
        operation: str,
        progress: Progress | None,
        timeout: float | None,
        caller: Caller | None = None,
    ) -> Iterator[tuple[Tracker, dict[str, Any]]]:
        """Lock, span, deadline and the recorded run around one operation. The block fills the
        dict with `backup_id`, `type`, `details` (and `record: False` for a dry run); a
        BackupError it raises is recorded with its reason and goes on, as does a bug (recorded
        as `internal`). A busy job is not recorded: the run that holds the lock is. `caller`
        names who asked (recorded with the run) and is told once the lock is held."""
        asked = caller or Caller()
        tracker = Tracker(progress or Quiet(), timeout)
        result: dict[str, Any] = {"details": {}}
        started = self.clock()
        attributes = {"vigil.backup.job": job, "vigil.backup.operation": operation}
        with self.tracer.start_as_current_span(
            f"backup {operation}",
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                self.repository.ensure()
                with self.repository.lock(job):
                    with self._running_lock:
                        self.running[(job, operation)] = tracker
                    try:
                        if asked.on_start is not None:
                            asked.on_start()
                        yield tracker, result
                    finally:
                        with self._running_lock:
                            self.running.pop((job, operation), None)
            except BackupError as exc:
                mark_error(span, exc.reason.value, str(exc))
                span.set_attribute("vigil.backup.reason", exc.reason.value)
                if exc.reason is not Reason.BUSY:
                    self._record(job, operation, started, result, exc.reason, str(exc), asked)
                raise
            except Exception as exc:
                mark_error(span, type(exc).__name__, repr(exc))
                self._record(job, operation, started, result, Reason.INTERNAL, repr(exc), asked)
                raise
            span.set_attribute("vigil.backup.outcome", "success")
            if result.pop("record", True):
                self._record(job, operation, started, result, None, None, asked)

    def _record(
        self,
        job: str,
        operation: str,
        started: float,
        result: dict[str, Any],
        reason: Reason | None,
        message: str | None,
        caller: Caller,
    ) -> None:
        details = dict(result.get("details", {}))
        manifest = details.pop("manifest", None)
        run = Run(
            job,
            operation,
            started,
            self.clock(),
            reason is None,
            backup_id=result.get("backup_id"),
            type=result.get("type"),
            reason=reason.value if reason is not None else None,
            message=redactor.text(message)[:2000] if message else None,
            details=details,
            actor=caller.actor,
        )
        try:
            if manifest is not None and run.ok:
                self.database.call(lambda db: catalogue.add(db, manifest, run))
            else:
                self.database.call(lambda db: catalogue.record(db, run))
        except Exception:
            # A backup that cannot be catalogued has not happened for the signals: say so. Any
            # other run's record is history; its own outcome matters more.
            if manifest is not None and run.ok:
                raise

    def mark(self, work: Callable[[Any], None]) -> None:
        """Change the catalogue in one transaction (a verification's or drill's result)."""

        def apply(db: Any) -> None:
            with transaction(db):
                work(db)

        self.database.call(apply)
