"""Stand-in servers that speak just enough PostgreSQL or Redis to refuse a login, quoting back
the credential they were sent, as some servers and proxies do in their error messages.

Each runs in its own thread on a free 127.0.0.1 port, so one works for an in-process agent and
for a `vigil` subprocess alike. They record every credential received: a test can prove that the
secret really reached the wire before asserting that it appears nowhere else.
"""

from __future__ import annotations

import socketserver
import struct
import threading
from typing import ClassVar, Self

# PostgreSQL wire protocol (v3): request codes a client may send in place of a StartupMessage.
_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
_CANCEL_REQUEST = 80877102
_AUTH_CLEARTEXT = 3


class StandIn:
    """A threaded TCP server on 127.0.0.1 that records the credentials its clients send."""

    handler: ClassVar[type[socketserver.BaseRequestHandler]]

    def __init__(self) -> None:
        self.credentials: list[str] = []
        self._server = _Server(("127.0.0.1", 0), self.handler)
        self._server.standin = self
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=type(self).__name__, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop accepting and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False
    standin: StandIn


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def received(self, credential: str) -> None:
        self.server.standin.credentials.append(credential)


class _PostgresHandler(_Handler):
    """One login: answer SSL/GSS requests with 'N', ask for a cleartext password, refuse it."""

    def handle(self) -> None:
        startup = self._startup()
        if startup is None:
            return
        user = startup.get("user", "")
        self.wfile.write(b"R" + struct.pack("!ii", 8, _AUTH_CLEARTEXT))
        kind = self.rfile.read(1)
        if kind != b"p":
            return
        payload = self._read_body()
        if payload is None:
            return
        password = payload.rstrip(b"\0").decode("utf-8", "replace")
        self.received(password)
        message = f"password authentication failed for user \"{user}\": got '{password}'"
        self.wfile.write(_error_response("FATAL", "28P01", message))

    def _startup(self) -> dict[str, str] | None:
        """The StartupMessage's parameters, after declining encryption; None if none came."""
        while True:
            body = self._read_body()
            if body is None or len(body) < 4:
                return None
            (code,) = struct.unpack("!i", body[:4])
            if code in (_SSL_REQUEST, _GSSENC_REQUEST):
                self.wfile.write(b"N")
                continue
            if code == _CANCEL_REQUEST:
                return None
            fields = body[4:].split(b"\0")
            pairs = zip(fields[0::2], fields[1::2], strict=False)
            return {k.decode(): v.decode("utf-8", "replace") for k, v in pairs if k}

    def _read_body(self) -> bytes | None:
        """One length-prefixed message body (the length counts itself)."""
        head = self.rfile.read(4)
        if len(head) < 4:
            return None
        (length,) = struct.unpack("!i", head)
        body = self.rfile.read(length - 4)
        return body if len(body) == length - 4 else None


def _error_response(severity: str, code: str, message: str) -> bytes:
    fields = b"".join(
        tag + value.encode() + b"\0"
        for tag, value in ((b"S", severity), (b"V", severity), (b"C", code), (b"M", message))
    )
    body = fields + b"\0"
    return b"E" + struct.pack("!i", len(body) + 4) + body


class PostgresStandIn(StandIn):
    """Asks for a cleartext password and refuses it with FATAL 28P01 quoting the password."""

    handler = _PostgresHandler


class _RedisHandler(_Handler):
    """Refuses AUTH (and HELLO ... AUTH) with a WRONGPASS error quoting the password."""

    def handle(self) -> None:
        while True:
            command = self._command()
            if command is None:
                return
            name = command[0].upper() if command else ""
            if name == "AUTH" and len(command) > 1:
                self.received(command[-1])
                reply = f"-WRONGPASS invalid password '{command[-1]}'"
            elif name == "HELLO" and "AUTH" in (c.upper() for c in command):
                password = command[-1]
                self.received(password)
                reply = f"-WRONGPASS invalid username-password pair (got '{password}')"
            else:
                reply = "-NOAUTH Authentication required."
            self.wfile.write(reply.encode() + b"\r\n")

    def _command(self) -> list[str] | None:
        """One command, as a RESP array of bulk strings or an inline line; None at EOF."""
        line = self.rfile.readline()
        if not line:
            return None
        if not line.startswith(b"*"):
            return line.decode("utf-8", "replace").split()
        args: list[str] = []
        for _ in range(int(line[1:])):
            size = self.rfile.readline()
            if not size.startswith(b"$"):
                return None
            data = self.rfile.read(int(size[1:]) + 2)
            args.append(data[:-2].decode("utf-8", "replace"))
        return args


class RedisStandIn(StandIn):
    """Answers every login with WRONGPASS quoting the password, everything else with NOAUTH."""

    handler = _RedisHandler
