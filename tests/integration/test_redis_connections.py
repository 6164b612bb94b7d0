"""`kind: redis` connections against a private Redis: ACL users, databases, a unix socket, TLS,
a connection the server drops, and a server that does not speak RESP.

What the probe did is read back from the server itself (`CLIENT LIST`), not from the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.harness.ports import free_port
from tests.harness.redis import RedisServer
from tests.harness.wait import poll_until_sync

pytestmark = pytest.mark.integration

PASSWORD = "probe-Secret-4711"


def _check(url: str, name: str = "cache", **extra: object) -> dict[str, object]:
    return {
        "name": name,
        "kind": "redis",
        "url": url,
        "interval_seconds": 1,
        "timeout_seconds": 0.8,
        **extra,
    }


def _vigil_clients(server: RedisServer) -> list[dict[str, Any]]:
    """The server's clients named `vigil` (what `CLIENT SETNAME` set), as CLIENT LIST shows."""
    with server.client() as client:
        return [c for c in client.client_list() if c.get("name") == "vigil"]


async def test_acl_user_and_database_from_the_url(
    start_agent, fresh_redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ACL user authenticates with `username` and its password; the URL's path selects db 3."""
    server: RedisServer = fresh_redis()
    with server.client() as client:
        client.acl_setuser(
            "probe", enabled=True, passwords=[f"+{PASSWORD}"], commands=["+@all"], keys=["*"]
        )
    monkeypatch.setenv("VIGIL_TEST_REDIS_PROBE", PASSWORD)
    url = f"redis://127.0.0.1:{server.port}/3"
    agent = await start_agent(
        [
            _check(url, username="probe", password_env="VIGIL_TEST_REDIS_PROBE"),
            _check(url, "stranger", username="nobody", password_env="VIGIL_TEST_REDIS_PROBE"),
        ]
    )

    await agent.wait_status("cache", "healthy")
    stranger = await agent.wait_status("stranger", "unhealthy")

    clients = await asyncio.to_thread(_vigil_clients, server)
    assert [(c["user"], c["db"]) for c in clients] == [("probe", "3")]
    assert stranger["reason"] == "auth_failed"


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A short directory for a unix socket (its path must fit in 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="vigil-sock-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def test_unix_socket_with_database(start_agent, fresh_redis, socket_dir: Path) -> None:
    """`unix://PATH?db=2` reaches Redis through its socket and selects database 2."""
    sock = socket_dir / "redis.sock"
    server: RedisServer = fresh_redis(extra_args=["--unixsocket", str(sock)])
    agent = await start_agent([_check(f"unix://{sock}?db=2")])

    await agent.wait_status("cache", "healthy")

    clients = await asyncio.to_thread(_vigil_clients, server)
    assert [(c["db"], c["addr"].startswith(str(sock))) for c in clients] == [("2", True)]


@pytest.fixture
def tls_redis(fresh_redis, tmp_path: Path) -> tuple[RedisServer, int, Path]:
    """A Redis with a TLS port (certificate for 127.0.0.1 from a private CA) beside its plain one.

    Returns the server, its TLS port and the CA file.
    """
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca_file, cert_file, key_file = (tmp_path / n for n in ("ca.pem", "cert.pem", "key.pem"))
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    port = free_port()
    tls_args = [
        "--tls-port", str(port),
        "--tls-cert-file", str(cert_file),
        "--tls-key-file", str(key_file),
        "--tls-ca-cert-file", str(ca_file),
        "--tls-auth-clients", "no",
    ]  # fmt: skip
    return fresh_redis(extra_args=tls_args), port, ca_file


async def test_tls_verifies_the_server_certificate(
    start_agent, tls_redis: tuple[RedisServer, int, Path]
) -> None:
    """`rediss://` trusts `ssl_ca_certs`; without it the private CA is a TLS error; `none` skips."""
    _, port, ca_file = tls_redis
    base = f"rediss://127.0.0.1:{port}/0"
    agent = await start_agent(
        [
            _check(f"{base}?ssl_ca_certs={ca_file}", "trusted"),
            _check(base, "untrusted"),
            _check(f"{base}?ssl_cert_reqs=none", "unverified"),
        ]
    )

    await agent.wait_status("trusted", "healthy")
    await agent.wait_status("unverified", "healthy")
    untrusted = await agent.wait_status("untrusted", "unhealthy")

    assert untrusted["reason"] == "tls_error"
    assert "certificate verify failed" in untrusted["message"]


async def test_dropped_connection_is_reported_then_replaced(start_agent, fresh_redis) -> None:
    """A kept connection the server closes fails one run (connection_error); the next reconnects."""
    server: RedisServer = fresh_redis()
    agent = await start_agent([_check(f"redis://127.0.0.1:{server.port}/0")])
    await agent.wait_status("cache", "healthy")
    [first] = await asyncio.to_thread(_vigil_clients, server)

    with server.client() as client:
        client.client_kill_filter(_id=first["id"])
    dropped = await agent.wait_status("cache", "unhealthy")
    await agent.wait_status("cache", "healthy")

    assert dropped["reason"] == "connection_error"
    [second] = await asyncio.to_thread(
        poll_until_sync, lambda: _vigil_clients(server), 5, what="a new vigil connection"
    )
    assert second["id"] != first["id"]


@contextlib.asynccontextmanager
async def _not_redis() -> AsyncIterator[int]:
    """A TCP server on a free port that answers anything as an HTTP server would."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def test_a_server_that_is_not_redis_is_a_protocol_error(start_agent) -> None:
    """An answer that is not RESP2 (here an HTTP status line) is protocol_error."""
    async with _not_redis() as port:
        agent = await start_agent([_check(f"redis://127.0.0.1:{port}/0")])

        entry = await agent.wait_status("cache", "unhealthy")

    assert entry["reason"] == "protocol_error"
    assert "HTTP/1.1 400" in entry["message"]
