"""Agent fixtures: an in-process agent on a free port, and HTTP targets that misbehave on cue."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
import yaml
from aiohttp import web
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agent.config import VigilConfig, parse_config
from agent.server.agent import Agent
from agent.telemetry.logging import configure_logging
from tests.harness.wait import poll_until


@dataclass
class RunningAgent:
    """An agent started by a test, with what the test reads back from it."""

    agent: Agent
    base_url: str
    session: aiohttp.ClientSession
    spans_exporter: InMemorySpanExporter
    log: io.StringIO

    def spans(self) -> tuple[ReadableSpan, ...]:
        """Every span the agent has ended so far."""
        return self.spans_exporter.get_finished_spans()

    def runs(self, name: str) -> int:
        """How many runs of check `name` have ended (one span each)."""
        return sum(
            1
            for s in self.spans()
            if s.name.startswith("check ") and (s.attributes or {}).get("vigil.check.name") == name
        )

    async def get(self, path: str) -> tuple[int, str]:
        """GET `path` from the agent: status and body text."""
        async with self.session.get(self.base_url + path) as response:
            return response.status, await response.text()

    async def send(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """A request with a JSON (or raw) body and optional Bearer token; status and JSON."""
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        if data is not None:
            sent.setdefault("Content-Type", "application/json")
        async with self.session.request(
            method, self.base_url + path, data=data, headers=sent
        ) as response:
            text = await response.text()
            try:
                return response.status, json.loads(text)
            except ValueError:
                return response.status, text

    async def health(self) -> dict[str, Any]:
        """The agent's `/health` document."""
        async with self.session.get(self.base_url + "/health") as response:
            return dict(await response.json())

    async def check(self, name: str) -> dict[str, Any]:
        """One check's entry in `/health`."""
        doc = await self.health()
        return next(c for c in doc["checks"] if c["name"] == name)

    async def wait_status(self, name: str, *statuses: str, within: float = 20.0) -> dict[str, Any]:
        """Poll `/health` until check `name` has one of `statuses`; its entry."""
        last: dict[str, Any] = {}

        async def reached() -> dict[str, Any] | None:
            last.update(await self.check(name))
            return dict(last) if last["status"] in statuses else None

        return await poll_until(
            reached, within, interval=0.1, what=lambda: f"check {name} in {statuses}; it is {last}"
        )


def agent_config(
    checks: list[dict[str, Any]],
    tmp_path: Path,
    telemetry: dict[str, Any] | None = None,
    degradation: dict[str, Any] | None = None,
    backup: dict[str, Any] | None = None,
    **agent: Any,
) -> VigilConfig:
    """A config on a free port with `checks`, no start-up grace, data under `tmp_path`."""
    doc = {
        "telemetry": telemetry or {},
        "degradation": degradation or {},
        "backup": backup or {},
        "agent": {
            "listen_port": 0,
            "startup_grace_seconds": 0,
            "data_dir": str(tmp_path / "data"),
            "shutdown_grace_seconds": 3,
            **agent,
        },
        "checks": checks,
    }
    return parse_config(yaml.safe_dump(doc), "test")


@pytest.fixture
async def start_agent(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[RunningAgent]]]:
    """Factory: start an in-process agent on `checks`; stopped when the test ends.

    `clock` replaces the agent's wall clock (a `FakeClock` from `tests.harness.wait`).
    """
    started: list[RunningAgent] = []

    async def start(
        checks: list[dict[str, Any]],
        telemetry: dict[str, Any] | None = None,
        degradation: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
        backup: dict[str, Any] | None = None,
        **agent: Any,
    ) -> RunningAgent:
        config = agent_config(checks, tmp_path, telemetry, degradation, backup, **agent)
        log = io.StringIO()
        configure_logging("json", "info", stream=log)
        running = Agent(config, clock=clock)
        exporter = InMemorySpanExporter()
        running.pipeline.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        await running.start()
        session = aiohttp.ClientSession()
        handle = RunningAgent(running, f"http://127.0.0.1:{running.port}", session, exporter, log)
        started.append(handle)
        return handle

    yield start
    for handle in started:
        await handle.session.close()
        await handle.agent.stop()
    logging.getLogger().handlers.clear()


@dataclass
class HttpTarget:
    """A local HTTP server whose behaviour a test sets through its attributes."""

    port: int = 0
    status: int = 200
    body: str = "ok"
    delay_seconds: float = 0.0
    requests: int = 0
    headers_seen: list[dict[str, str]] = field(default_factory=list)
    scheme: str = "http"

    @property
    def url(self) -> str:
        """Base URL of the target."""
        return f"{self.scheme}://127.0.0.1:{self.port}/"

    async def handle(self, request: web.Request) -> web.Response:
        """Answer with the configured status, body and delay."""
        self.requests += 1
        self.headers_seen.append(dict(request.headers))
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        return web.Response(status=self.status, text=self.body)


async def _serve(target: HttpTarget, tls: ssl.SSLContext | None) -> web.AppRunner:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", target.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    target.port = int(runner.addresses[0][1])
    return runner


@pytest.fixture
async def http_target() -> AsyncIterator[HttpTarget]:
    """A plain HTTP target on a free port."""
    target = HttpTarget()
    runner = await _serve(target, None)
    yield target
    await runner.cleanup()


@dataclass
class TlsTarget:
    """An HTTPS target with a certificate from a private CA."""

    target: HttpTarget
    ca_file: str


@pytest.fixture
async def tls_target_factory(
    tmp_path: Path,
) -> AsyncIterator[Callable[[dt.timedelta], Awaitable[TlsTarget]]]:
    """Factory: an HTTPS target whose certificate expires after the given delta."""
    runners: list[web.AppRunner] = []

    async def make(valid_for: dt.timedelta) -> TlsTarget:
        ca = trustme.CA()
        now = dt.datetime.now(dt.UTC)
        cert = ca.issue_cert(
            "127.0.0.1", not_before=now - dt.timedelta(days=1), not_after=now + valid_for
        )
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        ca_file = tmp_path / f"ca-{len(runners)}.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        target = HttpTarget(scheme="https")
        runners.append(await _serve(target, context))
        return TlsTarget(target, str(ca_file))

    yield make
    for runner in runners:
        await runner.cleanup()


@dataclass
class SilentServer:
    """A TCP server that accepts connections and never answers."""

    port: int
    connections: list[asyncio.StreamWriter]


@pytest.fixture
async def silent_server() -> AsyncIterator[SilentServer]:
    """Accepts and never answers: the hang a deadline exists for."""
    writers: list[asyncio.StreamWriter] = []
    forever = asyncio.Event()

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        try:
            await forever.wait()
        finally:  # a connection accepted while the test ends is closed too, not leaked
            writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield SilentServer(port, writers)
    server.close()  # no new connections first
    forever.set()
    for writer in writers:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    with contextlib.suppress(Exception):
        await server.wait_closed()
