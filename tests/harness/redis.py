"""A private redis-server on a free loopback port, which tests may stop, kill or freeze.

A server can also replicate another one (``--replicaof``): see :meth:`RedisServer.start_replica`.
"""

from __future__ import annotations

import shutil
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

import redis as redis_py
from redis.backoff import NoBackoff
from redis.retry import Retry

from .binaries import require
from .ports import free_port, wait_for_port
from .process import ManagedProcess, ServiceError, log_tail, wait_until


class RedisServer:
    """A throwaway Redis with no persistence, optionally password-protected and memory-capped."""

    def __init__(
        self,
        password: str | None = None,
        maxmemory_bytes: int | None = None,
        extra_args: list[str] | None = None,
        start_timeout: float = 10.0,
        replica_of: RedisServer | tuple[str, int] | None = None,
        masterauth: str | None = None,
    ) -> None:
        """Describe the server; :meth:`start` runs it.

        With ``replica_of`` (a :class:`RedisServer` or ``(host, port)``) it runs as a replica of
        that primary, authenticating with ``masterauth`` (default: a ``RedisServer``'s password).
        :meth:`start` does not wait for the link; :meth:`wait_link_up` does.
        """
        if masterauth is None and isinstance(replica_of, RedisServer):
            masterauth = replica_of.password
        self.replica_of = replica_of
        self.masterauth = masterauth
        self.password: str | None = password
        self.maxmemory_bytes = maxmemory_bytes
        self.extra_args = list(extra_args or [])
        self.start_timeout = start_timeout
        self.host = "127.0.0.1"
        self.port = 0
        self.dir: Path | None = None
        self._proc: ManagedProcess | None = None

    def start(self) -> None:
        """Start redis-server (same port and dir on a restart) and wait until it answers PING."""
        if self._proc is not None and self._proc.is_running:
            return
        if self.dir is None:
            self.dir = Path(tempfile.mkdtemp(prefix="vigil-redis-"))
            self.port = free_port()
        argv = [
            require("redis-server"),
            "--bind", self.host,
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--daemonize", "no",
            "--logfile", "",
            # A primary otherwise waits 5 s for more replicas before it streams a full sync.
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip
        if self.password is not None:
            argv += ["--requirepass", self.password]
        if self.maxmemory_bytes is not None:
            argv += ["--maxmemory", str(self.maxmemory_bytes)]
        if self.replica_of is not None:
            host, port = self.primary_address
            argv += ["--replicaof", host, str(port)]
        if self.masterauth is not None:
            argv += ["--masterauth", self.masterauth]
        argv += self.extra_args
        self._proc = ManagedProcess("redis-server", argv, self.dir / "redis.log", cwd=self.dir)
        self._proc.start()
        try:
            wait_for_port(self.host, self.port, self.start_timeout)
            self._proc.check_alive()
            with self.client() as client:
                client.ping()
        except (TimeoutError, ServiceError, redis_py.RedisError) as exc:
            tail = log_tail(self.dir / "redis.log")
            self._proc.kill()
            raise ServiceError(f"redis-server did not start: {exc}\nlog tail:\n{tail}") from exc

    def stop(self) -> None:
        """Shut down with SIGTERM (clients then get connection refused)."""
        if self._proc is not None:
            self._proc.stop()

    def kill(self) -> None:
        """SIGKILL the server, like a crash."""
        if self._proc is not None:
            self._proc.kill()

    def pause(self) -> None:
        """Freeze the server with SIGSTOP: connections open but commands never answer."""
        if self._proc is None:
            raise ServiceError("redis-server is not running")
        self._proc.pause()

    def resume(self) -> None:
        """Continue a server frozen by :meth:`pause`."""
        if self._proc is not None:
            self._proc.resume()

    def restart(self) -> None:
        """Stop and start again on the same port (the data set is empty afterwards)."""
        self.stop()
        self.start()

    def cleanup(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    @property
    def is_running(self) -> bool:
        """Whether the server process is alive (paused counts as running)."""
        return self._proc is not None and self._proc.is_running

    @property
    def pid(self) -> int | None:
        """PID of the server process, or ``None``."""
        return self._proc.pid if self._proc is not None else None

    @property
    def primary_address(self) -> tuple[str, int]:
        """``(host, port)`` of the primary this replica follows (its current port)."""
        if self.replica_of is None:
            raise ServiceError("this redis-server is not a replica")
        if isinstance(self.replica_of, RedisServer):
            return self.replica_of.host, self.replica_of.port
        return self.replica_of

    def replication_info(self) -> dict[str, Any]:
        """The ``INFO replication`` section (``role``, ``master_link_status``, ...)."""
        with self.client() as client:
            return dict(client.info("replication"))

    def wait_link_up(self, timeout: float = 10.0) -> None:
        """Wait until this replica has synced and its link to the primary is up."""
        wait_until(
            lambda: self.replication_info().get("master_link_status") == "up",
            timeout,
            f"redis replica on port {self.port} to sync with {self.primary_address}",
            interval=0.05,
        )

    def start_replica(self, **opts: Any) -> RedisServer:
        """Start and return a replica of this (running) server, synced and with its link up.

        ``opts`` are :class:`RedisServer` keyword arguments. The caller owns the replica and must
        :meth:`cleanup` it.
        """
        replica = RedisServer(replica_of=self, **opts)
        try:
            replica.start()
            replica.wait_link_up(replica.start_timeout)
        except BaseException:
            replica.cleanup()
            raise
        return replica

    def url(self, password: str | None = None, db: int = 0) -> str:
        """Return a ``redis://`` URL; ``password`` defaults to the server's own password."""
        secret = self.password if password is None else password
        auth = f":{urllib.parse.quote(secret, safe='')}@" if secret else ""
        return f"redis://{auth}{self.host}:{self.port}/{db}"

    def client(self, socket_timeout: float = 5.0, **kwargs: Any) -> redis_py.Redis:
        """Return a sync client for preparing data; close it (``with``) when done.

        Unlike redis-py's default (3 retries with backoff), it does not retry, so a broken server
        shows up after one ``socket_timeout``; pass ``retry=...`` to override.
        """
        kwargs.setdefault("retry", Retry(NoBackoff(), 0))
        return redis_py.Redis(
            host=self.host,
            port=self.port,
            password=self.password,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            **kwargs,
        )
