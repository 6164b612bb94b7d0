"""PostgreSQL's own programs (pg_dump, pg_restore, pg_basebackup, pg_verifybackup, initdb,
pg_ctl, psql) as a backup job runs them: found in the job's `bin_dir`, on PATH or in Debian's
`/usr/lib/postgresql/<major>/bin`; connected through libpq's environment (the password never on
a command line); their failures as BackupErrors with the secret masked."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from agent.backup.errors import BackupError, Reason
from agent.config.backup import PostgresJob
from agent.telemetry.redact import redactor

STDERR_TAIL = 2000
"""Characters of a failed program's stderr kept in its error."""

_DEBIAN = Path("/usr/lib/postgresql")


@dataclasses.dataclass(frozen=True, slots=True)
class PgTarget:
    """Where and as whom a job connects; `password` is read from the job's `password_env`."""

    host: str
    port: int
    user: str
    dbname: str
    password: str | None = None
    bin_dir: str | None = None

    @classmethod
    def of(cls, job: PostgresJob, environ: Mapping[str, str] | None = None) -> PgTarget:
        """The target of `job`, its password taken from the environment."""
        environ = os.environ if environ is None else environ
        password = environ.get(job.password_env) if job.password_env else None
        redactor.register(password)
        return cls(job.host, job.port, job.user, job.dbname, password, job.bin_dir)

    def env(self, dbname: str | None = None) -> dict[str, str]:
        """The environment a libpq program connects with (PG* variables, the process's own
        environment otherwise, minus PG* variables that could point elsewhere)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(
            PGHOST=self.host,
            PGPORT=str(self.port),
            PGUSER=self.user,
            PGDATABASE=dbname or self.dbname,
            PGAPPNAME="vigil-backup",
            PGCONNECT_TIMEOUT="10",
        )
        if self.password:
            env["PGPASSWORD"] = self.password
        return env

    def conninfo(self, dbname: str | None = None) -> str:
        """A libpq key=value string without the password (psycopg takes it separately)."""
        parts = {
            "host": self.host,
            "port": str(self.port),
            "user": self.user,
            "dbname": dbname or self.dbname,
            "application_name": "vigil-backup",
            "connect_timeout": "10",
        }
        return " ".join(f"{k}={_quote(v)}" for k, v in parts.items())


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def binary(name: str, bin_dir: str | None = None) -> str:
    """The path of PostgreSQL program `name`; BackupError (tool) when it is nowhere."""
    if bin_dir is not None:
        candidate = Path(bin_dir) / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
        raise BackupError(Reason.TOOL, f"{name} is not in {bin_dir}")
    found = shutil.which(name)
    if found is not None:
        return found
    majors = sorted(
        (p for p in _DEBIAN.glob("*/bin") if p.parent.name.isdigit()),
        key=lambda p: int(p.parent.name),
        reverse=True,
    )
    for directory in majors:
        candidate = directory / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    raise BackupError(Reason.TOOL, f"{name} was not found (set the job's bin_dir)")


def run(
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    what: str | None = None,
    stdin: int | None = subprocess.DEVNULL,
) -> subprocess.CompletedProcess[bytes]:
    """Run a program to its end; BackupError (tool, or timeout) unless it exits 0."""
    name = what or Path(argv[0]).name
    try:
        proc = subprocess.run(
            list(argv),
            env=dict(env) if env is not None else None,
            capture_output=True,
            timeout=timeout,
            check=False,
            stdin=stdin,
        )
    except subprocess.TimeoutExpired:
        raise BackupError(Reason.TIMEOUT, f"{name} did not finish in {timeout:.0f} s") from None
    except OSError as exc:
        raise BackupError(Reason.TOOL, f"cannot run {name}: {exc.strerror}") from None
    if proc.returncode != 0:
        raise failure(name, proc.returncode, proc.stderr)
    return proc


def failure(name: str, returncode: int, stderr: bytes) -> BackupError:
    """A program's non-zero exit as a BackupError, its stderr's tail redacted."""
    text = stderr.decode(errors="replace").strip()[-STDERR_TAIL:]
    how = f"was killed by signal {-returncode}" if returncode < 0 else f"exited {returncode}"
    detail = f": {redactor.text(text)}" if text else ""
    return BackupError(Reason.TOOL, f"{name} {how}{detail}")
