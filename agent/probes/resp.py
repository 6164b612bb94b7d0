"""The RESP2 client the Redis-speaking probes share: the URL read once, one connection per check.

The probes speak the few commands they send in RESP2 themselves: redis-py, with its cluster,
sentinel and module command sets, added 8 MB to the RSS of an agent with redis checks
(benchmarks/footprint.py). On connect a client sends AUTH (with the password of `password_env`),
CLIENT SETNAME and SELECT; a connection that failed or timed out is replaced on the next call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import ssl
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from agent.config.checks import (
    FALSE_WORDS,
    RedisCheck,
    RedisListCheck,
    RedisStreamCheck,
    RedisTarget,
)
from agent.probes.context import ProbeContext
from agent.probes.result import CheckResult, Reason

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
class Tls:
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
class Plan:
    """Where and how one check connects: its URL, parsed once."""

    host: str
    port: int
    path: str | None  # unix socket
    db: int
    username: str | None
    tls: Tls | None
    attrs: dict[str, Any]  # span attributes naming the server

    def span(self, operation: str, batch: int = 1) -> dict[str, Any]:
        """The attributes of a CLIENT span around `operation` (a command name), sent `batch`
        times in one round trip."""
        attrs = {**self.attrs, "db.operation.name": operation}
        if batch > 1:
            attrs["db.operation.batch.size"] = batch
        return attrs


def plan(check: RedisTarget) -> Plan:
    """The check's URL as redis-py reads it: db from the path or `?db=`, TLS for `rediss://`."""
    url = urlsplit(check.url)
    query = {k: v[-1] for k, v in parse_qs(url.query).items()}
    path = unquote(url.path) if url.scheme == "unix" else None
    db_text = query.get("db") or ("" if path else unquote(url.path).strip("/"))
    tls = None
    if url.scheme == "rediss":
        tls = Tls(
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
    return Plan(
        host=host,
        port=port,
        path=path,
        db=int(db_text) if db_text.isdigit() else 0,
        username=check.username or (unquote(url.username) if url.username else None),
        tls=tls,
        attrs={"db.system.name": "redis", **where},
    )


def _encode(args: Sequence[str]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class Connection:
    """One RESP2 connection; each reply is read in full before the next command is sent."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def call(self, *args: str) -> Any:
        """Send one command and return its reply; an error reply raises ReplyError."""
        self._writer.write(_encode(args))
        reply = await self._reply()
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    async def pipeline(self, commands: Sequence[Sequence[str]]) -> list[Any]:
        """Send `commands` at once and return their replies in order, in one round trip.

        An error reply is returned in its place as a ReplyError, not raised: the commands after
        it still ran, and their replies must still be read off the stream.
        """
        self._writer.write(b"".join(_encode(command) for command in commands))
        return [await self._reply() for _ in commands]

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


class Client:
    """A check's kept connection: made on first use, and again after any failure."""

    def __init__(self, plan: Plan, password: str | None, tls: ssl.SSLContext | None) -> None:
        self.plan = plan
        self._password = password
        self._tls = tls
        self._connection: Connection | None = None

    async def call(self, *args: str) -> Any:
        """Run one command, connecting first if needed; an error reply raises ReplyError."""
        connection = await self._connected()
        try:
            return await connection.call(*args)
        except ReplyError:
            raise
        except BaseException:
            # A reply may still be on its way (a timeout, a cancellation): the connection would
            # hand it to the next command, so it goes.
            self.close()
            raise

    async def pipeline(self, *commands: Sequence[str]) -> list[Any]:
        """Run `commands` in one round trip; error replies come back as ReplyError values."""
        connection = await self._connected()
        try:
            return await connection.pipeline(commands)
        except BaseException:
            self.close()  # as in `call`: a reply still on its way would be read by the next call
            raise

    async def _connected(self) -> Connection:
        if self._connection is None:
            self._connection = await self._connect()
        return self._connection

    async def _connect(self) -> Connection:
        plan = self.plan
        if plan.path is not None:
            reader, writer = await asyncio.open_unix_connection(plan.path)
        else:
            hostname = plan.host if self._tls is not None else None
            reader, writer = await asyncio.open_connection(
                plan.host, plan.port, ssl=self._tls, server_hostname=hostname
            )
        connection = Connection(reader, writer)
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


RedisKind = RedisCheck | RedisListCheck | RedisStreamCheck
"""The check kinds that talk to Redis through this client."""


async def client(check: RedisKind, ctx: ProbeContext) -> Client:
    """The check's kept client, made on its first run from its URL and password."""
    found = ctx.memo(f"redis:{check.name}", lambda: plan(check))
    settings = found.tls
    # One context per distinct setting: each loads the CA store, a megabyte for the system's.
    tls = None if settings is None else ctx.memo(f"redis-tls:{settings!r}", settings.context)

    async def make() -> Client:
        return Client(found, ctx.secret(check.password_env), tls)

    return await ctx.resource(f"redis:{check.name}", make, _close)


FAILURES = (ReplyError, ProtocolError, OSError, EOFError)
"""What a call may raise when the server, not the probe, is at fault: `failure` names it."""


def failure(exc: Exception) -> CheckResult:
    """An unhealthy result naming the closed reason of what went wrong."""
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


async def _close(client: Client) -> None:
    client.close()
