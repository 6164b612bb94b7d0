"""A private PostgreSQL cluster (initdb + pg_ctl) on a free loopback port, which tests may break.

A cluster can also be a physical streaming standby of another one (``pg_basebackup -R``): see
:meth:`PostgresServer.start_replica`.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

import psycopg

from .binaries import require
from .ports import free_port
from .process import ServiceError, child_pids, log_tail, pid_alive, signal_pid, wait_until

SUPERUSER = "postgres"
SUPERUSER_PASSWORD = "vigil-superuser-secret"
# initdb and pg_ctl refuse to run as root; as root the cluster belongs to this OS user.
OS_USER = "postgres"

# Clusters with a directory on disk, so an abnormal interpreter exit still kills and removes them.
_LIVE: set[PostgresServer] = set()


class PostgresServer:
    """A throwaway PostgreSQL cluster: TCP on 127.0.0.1 with SCRAM auth, trust on its own socket."""

    def __init__(
        self,
        max_connections: int | None = None,
        extra_conf: dict[str, Any] | None = None,
        start_timeout: float = 30.0,
        primary: PostgresServer | None = None,
    ) -> None:
        """Describe the cluster; :meth:`start` creates and starts it.

        With ``primary`` (a running server) the cluster is a hot standby streaming from it,
        created by ``pg_basebackup``: it shares the primary's roles, data and superuser password.
        ``max_connections`` defaults to 20, or to the primary's (a standby may not have fewer).
        """
        if max_connections is None:
            max_connections = primary.max_connections if primary is not None else 20
        self.primary = primary
        self.max_connections: int = max_connections
        self.extra_conf = dict(extra_conf or {})
        self.start_timeout = start_timeout
        self.host = "127.0.0.1"
        self.port = 0
        # A standby is a copy of its primary, superuser and password included.
        self.superuser: str = primary.superuser if primary is not None else SUPERUSER
        self.superuser_password: str = (
            primary.superuser_password if primary is not None else SUPERUSER_PASSWORD
        )
        self.dir: Path | None = None
        self._paused: list[int] = []

    # -- paths -------------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        return self._base / "data"

    @property
    def socket_dir(self) -> Path:
        """The directory holding the cluster's Unix socket (and its log)."""
        return self._base / "run"

    @property
    def log_path(self) -> Path:
        """The server log written by ``pg_ctl -l``."""
        return self.socket_dir / "postgres.log"

    @property
    def _base(self) -> Path:
        if self.dir is None:
            raise ServiceError("PostgresServer has not been started")
        return self.dir

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Create the cluster on first use, then start it and wait until it accepts connections."""
        if self.dir is None:
            self._init_cluster()
        elif self.is_running:
            return
        self._pg_ctl("start", "-w", "-t", str(int(self.start_timeout)), "-l", str(self.log_path))

    def stop(self) -> None:
        """Shut down with ``-m fast`` (sessions are disconnected, no recovery needed on start)."""
        if self.dir is None or not self.is_running:
            return
        self.resume()  # a frozen postmaster cannot shut down
        self._pg_ctl("stop", "-w", "-m", "fast", "-t", str(int(self.start_timeout)))

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends, like a crash; the next start runs recovery."""
        pid = self.postmaster_pid
        if pid is None:
            return
        victims = [pid, *child_pids(pid)]
        for victim in victims:
            signal_pid(victim, signal.SIGKILL)
        # Orphaned backends would keep the shared memory segment and block the next start.
        wait_until(lambda: not any(pid_alive(v) for v in victims), 10.0, "killed postgres to exit")
        # The dead postmaster may linger as a zombie until init reaps it, and postgres treats a
        # zombie PID in postmaster.pid as a live server; the file is stale, so remove it.
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
        for lock in self.socket_dir.glob(".s.PGSQL.*.lock"):
            lock.unlink(missing_ok=True)
        self._paused = []

    def pause(self) -> None:
        """SIGSTOP the postmaster and all backends: connects and queries hang instead of failing."""
        pid = self.postmaster_pid
        if pid is None:
            raise ServiceError("postgres is not running")
        # Freeze the postmaster first so it cannot fork a backend we would miss.
        signal_pid(pid, signal.SIGSTOP)
        frozen = [pid]
        for child in child_pids(pid):
            signal_pid(child, signal.SIGSTOP)
            frozen.append(child)
        self._paused = frozen

    def resume(self) -> None:
        """SIGCONT everything :meth:`pause` froze."""
        for pid in reversed(self._paused):
            signal_pid(pid, signal.SIGCONT)
        self._paused = []

    def restart(self) -> None:
        """Stop (fast) and start again on the same port and data directory."""
        self.stop()
        self.start()

    def cleanup(self) -> None:
        """Stop the server (killing it if it will not stop) and remove its directory."""
        if self.dir is None:
            return
        try:
            self.stop()
        except (ServiceError, subprocess.SubprocessError, TimeoutError):
            self.kill()
        if self.is_running:
            self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None
        _LIVE.discard(self)

    @property
    def is_running(self) -> bool:
        """Whether the postmaster process is alive (paused counts as running)."""
        return self.postmaster_pid is not None

    @property
    def is_replica(self) -> bool:
        """Whether this cluster is a standby of :attr:`primary`."""
        return self.primary is not None

    @property
    def is_paused(self) -> bool:
        """Whether :meth:`pause` is in effect."""
        return bool(self._paused)

    @property
    def postmaster_pid(self) -> int | None:
        """The PID of the live postmaster, from ``postmaster.pid``, or ``None``."""
        if self.dir is None:
            return None
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
        except OSError:
            return None
        pid = int(first) if first.strip().isdigit() else 0
        return pid if pid > 0 and pid_alive(pid) else None

    # -- clients -----------------------------------------------------------------------------

    def dsn(
        self,
        user: str | None = None,
        password: str | None = None,
        dbname: str = "postgres",
        **params: str | int,
    ) -> str:
        """Return a libpq key=value DSN over TCP; defaults to the superuser and its password."""
        if user is None:
            user = self.superuser
            password = self.superuser_password if password is None else password
        parts: dict[str, str | int] = {"host": self.host, "port": self.port, "user": user}
        if password is not None:
            parts["password"] = password
        parts["dbname"] = dbname
        parts.update(params)
        return " ".join(f"{key}={_quote(str(value))}" for key, value in parts.items())

    def url(
        self, user: str | None = None, password: str | None = None, dbname: str = "postgres"
    ) -> str:
        """Return the same connection as :meth:`dsn`, as a ``postgresql://`` URI."""
        if user is None:
            user = self.superuser
            password = self.superuser_password if password is None else password
        auth = urllib.parse.quote(user, safe="")
        if password is not None:
            auth += ":" + urllib.parse.quote(password, safe="")
        return f"postgresql://{auth}@{self.host}:{self.port}/{urllib.parse.quote(dbname, safe='')}"

    def execute(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run ``sql`` as the superuser in autocommit mode; return its rows (empty if none)."""
        with psycopg.connect(self.dsn(connect_timeout=5), autocommit=True) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description is not None else []

    def create_role(self, name: str, password: str, superuser: bool = False) -> None:
        """Create a login role with ``password`` (SCRAM-hashed by the server)."""
        from psycopg import sql

        stmt = sql.SQL("CREATE ROLE {} LOGIN {} PASSWORD {}").format(
            sql.Identifier(name),
            sql.SQL("SUPERUSER" if superuser else "NOSUPERUSER"),
            sql.Literal(password),
        )
        with psycopg.connect(self.dsn(connect_timeout=5), autocommit=True) as conn:
            conn.execute(stmt)

    def create_database(self, name: str, owner: str | None = None) -> None:
        """Create database ``name``, optionally owned by ``owner``."""
        from psycopg import sql

        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if owner is not None:
            stmt = sql.SQL("{} OWNER {}").format(stmt, sql.Identifier(owner))
        with psycopg.connect(self.dsn(connect_timeout=5), autocommit=True) as conn:
            conn.execute(stmt)

    # -- replication -------------------------------------------------------------------------

    def start_replica(self, **opts: Any) -> PostgresServer:
        """Create, start and return a streaming standby of this (running) server, caught up.

        ``opts`` are :class:`PostgresServer` keyword arguments. The caller owns the standby and
        must :meth:`cleanup` it (before or after this server, either works).
        """
        replica = PostgresServer(primary=self, **opts)
        try:
            replica.start()
            replica.wait_for_replay()
        except BaseException:
            replica.cleanup()
            raise
        return replica

    def wait_for_replay(self, timeout: float = 30.0) -> str:
        """On a standby: wait until it has replayed the primary's current WAL; return that LSN."""
        if self.primary is None:
            raise ServiceError("wait_for_replay() needs a standby")
        lsn = str(self.primary.execute("SELECT pg_current_wal_lsn()")[0][0])
        query = "SELECT coalesce(pg_last_wal_replay_lsn() >= %s::pg_lsn, false)"
        deadline = time.monotonic() + timeout
        while not self.execute(query, (lsn,))[0][0]:
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"standby on port {self.port} did not replay up to {lsn} in {timeout:.1f}s;"
                    f" log tail:\n{log_tail(self.log_path)}"
                )
            time.sleep(0.05)
        return lsn

    # -- internals ---------------------------------------------------------------------------

    def _init_cluster(self) -> None:
        # mkdtemp makes 0700 dirs; the postgres user must be able to traverse the base dir.
        base = Path(tempfile.mkdtemp(prefix="vigil-pg-"))
        base.chmod(0o755)
        self.dir = base
        _LIVE.add(self)
        self.port = free_port()
        for sub in (self.data_dir, self.socket_dir):
            sub.mkdir(mode=0o700)
            self._chown(sub)
        if self.primary is not None:
            self._base_backup(self.primary)
        else:
            self._initdb()
        conf = {
            "listen_addresses": "127.0.0.1",
            "port": self.port,
            "unix_socket_directories": str(self.socket_dir),
            "max_connections": self.max_connections,
            "password_encryption": "scram-sha-256",
            # fsync=off only loses data if the *machine* crashes, so kill() still behaves like a
            # real crash: committed rows survive. synchronous_commit stays on for the same reason.
            "fsync": "off",
            "shared_buffers": "32MB",
            "logging_collector": "off",
            **self.extra_conf,
        }
        with (self.data_dir / "postgresql.auto.conf").open("a") as handle:
            for key, value in conf.items():
                handle.write(f"{key} = {_conf_value(value)}\n")

    def _initdb(self) -> None:
        pwfile = self.socket_dir / "pwfile"
        pwfile.write_text(self.superuser_password + "\n")
        pwfile.chmod(0o600)
        self._chown(pwfile)
        try:
            self._run(
                require("initdb"),
                "-D", str(self.data_dir),
                "-U", self.superuser,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                what="initdb",
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        # initdb's pg_hba.conf already allows replication from 127.0.0.1 with the host method;
        # keep it that way should the template ever change, so standbys can always be made.
        hba = self.data_dir / "pg_hba.conf"
        if not any(
            line.split()[:4] == ["host", "replication", "all", "127.0.0.1/32"]
            for line in hba.read_text().splitlines()
        ):
            with hba.open("a") as handle:
                handle.write("host replication all 127.0.0.1/32 scram-sha-256\n")

    def _base_backup(self, primary: PostgresServer) -> None:
        if not primary.is_running:
            raise ServiceError("the primary of a standby must be running")
        # -R writes standby.signal and a primary_conninfo (password included) into
        # postgresql.auto.conf; the settings appended after it override the primary's port etc.
        self._run(
            require("pg_basebackup"),
            "-h", primary.host,
            "-p", str(primary.port),
            "-U", primary.superuser,
            "-D", str(self.data_dir),
            "-R",
            "-X", "stream",
            "--checkpoint=fast",
            "--no-sync",
            "--no-password",
            what="pg_basebackup",
            env={"PGPASSWORD": primary.superuser_password},
        )  # fmt: skip

    def _pg_ctl(self, *args: str) -> None:
        self._run(require("pg_ctl"), "-D", str(self.data_dir), *args, what=f"pg_ctl {args[0]}")

    def _run(self, *argv: str, what: str, env: dict[str, str] | None = None) -> None:
        cmd = list(argv)
        if os.geteuid() == 0:
            # runuser without --login keeps the environment (bar HOME, SHELL, USER, LOGNAME).
            cmd = [require("runuser"), "-u", OS_USER, "--", *cmd]
        try:
            proc = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=self.start_timeout + 10,
                check=False,
                cwd=self.socket_dir,
                env={**os.environ, **env} if env else None,
            )
        except subprocess.TimeoutExpired as exc:
            raise ServiceError(
                f"{what} timed out; server log tail:\n{log_tail(self.log_path)}"
            ) from exc
        if proc.returncode != 0:
            raise ServiceError(
                f"{what} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}\n"
                f"server log tail:\n{log_tail(self.log_path)}"
            )

    @staticmethod
    def _chown(path: Path) -> None:
        if os.geteuid() == 0:
            entry = pwd.getpwnam(OS_USER)
            os.chown(path, entry.pw_uid, entry.pw_gid)


@atexit.register
def _cleanup_leftovers() -> None:
    for server in list(_LIVE):
        server.kill()
        server.cleanup()


def _quote(value: str) -> str:
    if value and not any(c in value for c in " '\\="):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _conf_value(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"
