"""`kind: redis`: PING round trip, then the INFO facts that decide degraded.

The probe speaks the few commands it sends (AUTH, CLIENT SETNAME, SELECT, PING, INFO) in RESP2
itself, over one connection kept per check: redis-py, with its cluster, sentinel and module
command sets, added 8 MB to the RSS of an agent with redis checks (benchmarks/footprint.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import ssl
import time
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from agent.config.checks import FALSE_WORDS, RedisCheck
from agent.probes.context import ProbeContext
from agent.probes.result import CheckResult, Reason, rate

# Only the sections the rules read: a full INFO costs most of the probe's client CPU.
_SECTIONS = ("server", "clients", "memory", "persistence", "stats", "replication")
_CLIENT_NAME = "vigil"
# Error replies that mean the credentials, not the server, are wrong.
_AUTH_WORDS = (
    "wrongpass",
    "noauth",
    "invalid password",
    "invalid username",
    "without any password configured",
    "no password is set",
)


class ReplyError(Exception):
    """The server answered a command with an error reply (`-ERR ...`, `-WRONGPASS ...`)."""


class ProtocolError(Exception):
    """The server sent something that is not RESP2."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Tls:
    """The TLS settings of a `rediss://` URL, in redis-py's query parameters."""

    ca_file: str | None  # ssl_ca_certs; None: the system's CAs
    cert_file: str | None  # ssl_certfile, a client certificate
    key_file: str | None  # ssl_keyfile
    verify: bool  # ssl_cert_reqs is not `none`
    check_hostname: bool  # ssl_check_hostname

    def context(self) -> ssl.SSLContext:
        """A client context with these settings."""
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file is not None:
            context.load_cert_chain(self.cert_file, self.key_file)
        context.check_hostname = self.verify and self.check_hostname
        if not self.verify:
            context.verify_mode = ssl.CERT_NONE
        return context


@dataclasses.dataclass(frozen=True, slots=True)
class _Plan:
    """Where and how one check connects: its URL, parsed once."""

    host: str
    port: int
    path: str | None  # unix socket
    db: int
    username: str | None
    tls: _Tls | None
    attrs: dict[str, Any]


def _plan(check: RedisCheck) -> _Plan:
    """The check's URL as redis-py reads it: db from the path or `?db=`, TLS for `rediss://`."""
    url = urlsplit(check.url)
    query = {k: v[-1] for k, v in parse_qs(url.query).items()}
    path = unquote(url.path) if url.scheme == "unix" else None
    db_text = query.get("db") or ("" if path else unquote(url.path).strip("/"))
    tls = None
    if url.scheme == "rediss":
        tls = _Tls(
            query.get("ssl_ca_certs"),
            query.get("ssl_certfile"),
            query.get("ssl_keyfile"),
            query.get("ssl_cert_reqs", "required").lower() != "none",
            query.get("ssl_check_hostname", "true").lower() not in FALSE_WORDS,
        )
    host = unquote(url.hostname or "localhost")
    port = url.port or 6379
    # A unix socket is named by its path (OpenTelemetry's `server.address`), without a port.
    where: dict[str, Any] = {"server.address": path} if path else {"server.address": host}
    if not path:
        where["server.port"] = port
    return _Plan(
        host=host,
        port=port,
        path=path,
        db=int(db_text) if db_text.isdigit() else 0,
        username=check.username or (unquote(url.username) if url.username else None),
        tls=tls,
        attrs={"db.system.name": "redis", **where},
    )


class _Connection:
    """One RESP2 connection; each reply is read in full before the next command is sent."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def call(self, *args: str) -> Any:
        """Send one command and return its reply; an error reply raises ReplyError."""
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self._writer.write(b"".join(parts))
        reply = await self._reply()
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    async def _reply(self) -> Any:
        """One whole reply. An error reply is returned, not raised: inside an array, the rest of
        the array must still be read off the stream.
        """
        try:
            line = await self._reader.readline()
        except ValueError:  # a line past the stream's limit (64 KiB): no RESP2 header is that long
            raise ProtocolError("a reply line longer than 64 KiB") from None
        if not line.endswith(b"\n"):  # readline stops short only at the end of the stream
            raise ConnectionError("the server closed the connection")
        kind, body = line[:1], line[1:-2]
        if not line.endswith(b"\r\n"):
            raise ProtocolError(f"not a RESP2 reply: {line[:60]!r}")
        if kind == b"+":
            return body.decode(errors="replace")
        if kind == b"-":
            return ReplyError(body.decode(errors="replace"))
        if kind not in (b":", b"$", b"*") or not body.lstrip(b"-").isdigit():
            raise ProtocolError(f"not a RESP2 reply: {line[:60]!r}")
        number = int(body)
        if kind == b":":
            return number
        if number < 0:
            return None
        if kind == b"$":
            return (await self._reader.readexactly(number + 2))[:-2]
        return [await self._reply() for _ in range(number)]

    def close(self) -> None:
        """Close the socket; the server sees the client go."""
        self._writer.close()


class _Client:
    """A check's kept connection: made on first use, and again after any failure."""

    def __init__(self, plan: _Plan, password: str | None, tls: ssl.SSLContext | None) -> None:
        self._plan = plan
        self._password = password
        self._tls = tls
        self._connection: _Connection | None = None

    async def call(self, *args: str) -> Any:
        """Run one command, connecting first if needed."""
        if self._connection is None:
            self._connection = await self._connect()
        try:
            return await self._connection.call(*args)
        except ReplyError:
            raise
        except BaseException:
            # A reply may still be on its way (a timeout, a cancellation): the connection would
            # hand it to the next command, so it goes.
            self.close()
            raise

    async def _connect(self) -> _Connection:
        plan = self._plan
        if plan.path is not None:
            reader, writer = await asyncio.open_unix_connection(plan.path)
        else:
            hostname = plan.host if self._tls is not None else None
            reader, writer = await asyncio.open_connection(
                plan.host, plan.port, ssl=self._tls, server_hostname=hostname
            )
        connection = _Connection(reader, writer)
        try:
            if self._password is not None:
                user = [plan.username] if plan.username else []
                await connection.call("AUTH", *user, self._password)
            await connection.call("CLIENT", "SETNAME", _CLIENT_NAME)
            if plan.db:
                await connection.call("SELECT", str(plan.db))
        except BaseException:
            connection.close()
            raise
        return connection

    def close(self) -> None:
        """Close the connection, if there is one."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


async def probe_redis(check: RedisCheck, ctx: ProbeContext) -> CheckResult:
    """Rate a Redis server: answering PING, memory headroom, persistence and replication."""
    plan = ctx.memo(f"redis:{check.name}", lambda: _plan(check))
    settings = plan.tls
    # One context per distinct setting: each loads the CA store, a megabyte for the system's.
    tls = None if settings is None else ctx.memo(f"redis-tls:{settings!r}", settings.context)

    async def make_client() -> _Client:
        return _Client(plan, ctx.secret(check.password_env), tls)

    client = await ctx.resource(f"redis:{check.name}", make_client, _close_client)
    try:
        with ctx.client_span("PING", {**plan.attrs, "db.operation.name": "PING"}):
            started = time.perf_counter()
            await client.call("PING")
            latency = time.perf_counter() - started
        with ctx.client_span("INFO", {**plan.attrs, "db.operation.name": "INFO"}):
            reply = await client.call("INFO", *_SECTIONS)
    except (ReplyError, ProtocolError, OSError, EOFError) as exc:
        return _failure(exc)
    info = _parse_info(reply)
    used = _int(info, "used_memory")
    limit = _int(info, "maxmemory")
    replica = info.get("role") == "slave"
    details: dict[str, Any] = {
        "latency_seconds": round(latency, 6),
        "server_version": info.get("redis_version", ""),
        "role": "replica" if replica else "primary",
        "replica": replica,
        "memory_used_bytes": used,
        "memory_max_bytes": limit,
        "clients_connected": _int(info, "connected_clients"),
        "clients_blocked": _int(info, "blocked_clients"),
        "rejected_connections": _int(info, "rejected_connections"),
        "evicted_keys": _int(info, "evicted_keys"),
        "rdb_last_save_ok": info.get("rdb_last_bgsave_status", "ok") == "ok",
    }
    if limit:
        details["memory_ratio"] = round(used / limit, 4)
    if replica:
        details["replication_link_up"] = info.get("master_link_status") == "up"
    return rate(
        [
            (
                bool(limit) and used / limit >= check.degraded_memory_ratio,
                Reason.SATURATION,
                f"memory {used} of {limit} bytes used",
            ),
            (
                replica and not details["replication_link_up"],
                Reason.REPLICATION,
                "replica's link to its primary is down",
            ),
            (
                not details["rdb_last_save_ok"],
                Reason.PERSISTENCE,
                "the last RDB save failed",
            ),
            (
                check.degraded_blocked_clients is not None
                and details["clients_blocked"] >= check.degraded_blocked_clients,
                Reason.SATURATION,
                f"{details['clients_blocked']} blocked clients",
            ),
            (
                check.degraded_latency_seconds is not None
                and latency >= check.degraded_latency_seconds,
                Reason.LATENCY,
                f"PING took {latency * 1000:.1f} ms",
            ),
        ],
        **details,
    )


def _parse_info(reply: Any) -> dict[str, str]:
    """`key:value` lines of an INFO reply; `# Section` lines and blank lines skipped."""
    if not isinstance(reply, bytes):
        raise ProtocolError(f"INFO answered {type(reply).__name__}, not a bulk string")
    facts = {}
    for line in reply.decode(errors="replace").splitlines():
        key, sep, value = line.partition(":")
        if sep and not key.startswith("#"):
            facts[key] = value
    return facts


def _int(info: dict[str, str], key: str) -> int:
    """An integer field of INFO, 0 when absent or not a number."""
    value = info.get(key, "")
    return int(value) if value.isdigit() else 0


def _failure(exc: Exception) -> CheckResult:
    """A result naming the closed reason of what went wrong."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    lowered = text.lower()
    if isinstance(exc, ReplyError):
        auth = any(word in lowered for word in _AUTH_WORDS) or lowered.startswith("noperm")
        reason = Reason.AUTH_FAILED if auth else Reason.SERVER_ERROR
    elif isinstance(exc, ProtocolError):
        reason = Reason.PROTOCOL_ERROR
    elif isinstance(exc, ssl.SSLError):
        reason = Reason.TLS_ERROR
    elif isinstance(exc, TimeoutError):
        reason = Reason.TIMEOUT
    elif isinstance(exc, ConnectionRefusedError):
        reason = Reason.CONNECTION_REFUSED
    elif isinstance(exc, socket.gaierror):
        reason = Reason.DNS_ERROR
    else:  # reset, closed by the server (EOF), unreachable, a unix socket that is not there
        reason = Reason.CONNECTION_ERROR
    return CheckResult.unhealthy(reason, text)


async def _close_client(client: _Client) -> None:
    client.close()
