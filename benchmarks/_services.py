"""Helper processes for `benchmarks/probes.py`, each run as its own process so its CPU is not
counted against the system under test.

    python benchmarks/_services.py target   # HTTP/1.1 keep-alive server answering `200 ok`
    python benchmarks/_services.py sink     # OTLP/HTTP sink: 200 to POST /v1/traces, /v1/metrics
    python benchmarks/_services.py load URL N WARMUP CONCURRENCY MAX_SECONDS  # load generator

Servers bind 127.0.0.1 on a free port and print `port <n>` as their first stdout line. Both
answer `GET /__stats` with a JSON object of what they counted (requests, spans, bytes), so the
benchmark can confirm every probe reached the target and every span reached the sink.

The load generator warms up, prints `ready`, waits for `go` on stdin, sends N requests at the
given concurrency over keep-alive connections, prints one JSON line with its counts and exits.

The parent holds each helper's stdin open; every helper exits at EOF on stdin, so nothing
outlives a benchmark that was killed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
    b"Connection: keep-alive\r\n\r\nok"
)
_CLOSE_RESPONSE = _RESPONSE.replace(b"keep-alive", b"close")


async def _watch_parent() -> None:
    """Return at EOF on stdin: the parent closed its end of the pipe, or is gone."""
    await asyncio.to_thread(sys.stdin.buffer.read)


def _stats_response(stats: dict[str, int]) -> bytes:
    body = json.dumps(stats).encode()
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


class _Target(asyncio.Protocol):
    """Answers every request with `200 ok`; keeps the connection unless asked to close it."""

    stats: dict[str, int] = {"requests": 0, "connections": 0}

    def connection_made(self, transport: Any) -> None:
        """Count the connection."""
        self.transport = transport
        self.buffer = b""
        self.stats["connections"] += 1

    def data_received(self, data: bytes) -> None:
        """Answer each complete request head in the buffer (the target gets no bodies)."""
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            if head.startswith(b"GET /__stats"):
                self.transport.write(_stats_response(self.stats))
                self.transport.close()
                return
            self.stats["requests"] += 1
            if b"connection: close" in head.lower():
                self.transport.write(_CLOSE_RESPONSE)
                self.transport.close()
                return
            self.transport.write(_RESPONSE)


async def serve_target() -> None:
    """Run the HTTP target until the parent goes away or the process is terminated."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Target, "127.0.0.1", 0, backlog=1024)
    print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await _watch_parent()


def _count_spans(body: bytes) -> int:
    """Spans in an OTLP ExportTraceServiceRequest; -1 when the proto package is missing."""
    try:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )
    except ImportError:
        return -1
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


async def serve_sink() -> None:
    """Run the OTLP/HTTP sink: empty protobuf answers, spans and bytes counted."""
    from aiohttp import web

    stats = {"trace_requests": 0, "metric_requests": 0, "spans": 0, "bytes": 0}

    async def traces(request: web.Request) -> web.Response:
        body = await request.read()
        stats["trace_requests"] += 1
        stats["bytes"] += len(body)
        stats["spans"] += _count_spans(body)
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def metrics(request: web.Request) -> web.Response:
        body = await request.read()
        stats["metric_requests"] += 1
        stats["bytes"] += len(body)
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def report(_: web.Request) -> web.Response:
        return web.json_response(stats)

    app = web.Application(client_max_size=64 << 20)
    app.add_routes(
        [
            web.post("/v1/traces", traces),
            web.post("/v1/metrics", metrics),
            web.get("/__stats", report),
        ]
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(f"port {port}", flush=True)
    try:
        await _watch_parent()
    finally:
        await runner.cleanup()


async def _drive(session: Any, url: str, count: int, concurrency: int, deadline: float) -> dict:
    """Send up to `count` GETs to `url` from `concurrency` workers before `deadline`."""
    tally = {"issued": 0, "ok": 0, "bad": 0, "errors": 0}
    latencies: list[float] = []
    first_bad = ""

    async def worker() -> None:
        nonlocal first_bad
        while tally["issued"] < count and time.monotonic() < deadline:
            tally["issued"] += 1
            started = time.perf_counter()
            try:
                async with session.get(url) as response:
                    body = await response.text()
                    good = response.status == 200 and "\nprobe_success 1" in body
            except Exception as exc:
                tally["errors"] += 1
                first_bad = first_bad or f"{type(exc).__name__}: {exc}"
                continue
            latencies.append(time.perf_counter() - started)
            tally["ok" if good else "bad"] += 1
            if not good and not first_bad:
                first_bad = f"status {response.status}: {body[-300:]}"

    wall = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - wall
    return {
        **tally,
        "wall_seconds": wall,
        "p50": quantile(latencies, 0.5),
        "p99": quantile(latencies, 0.99),
        "first_bad": first_bad,
    }


def quantile(values: list[float], q: float) -> float:
    """The `q` quantile of `values` (nearest rank), 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_load(url: str, count: int, warmup: int, concurrency: int, max_seconds: float) -> None:
    """Warm up, print `ready`, wait for `go`, drive the load and print the tally as JSON."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await _drive(session, url, warmup, concurrency, time.monotonic() + max_seconds)
        print("ready", flush=True)
        line = await asyncio.to_thread(sys.stdin.readline)
        if line.strip() != "go":
            return
        tally = await _drive(session, url, count, concurrency, time.monotonic() + max_seconds)
        print(json.dumps(tally), flush=True)


def main(argv: list[str]) -> None:
    """Dispatch on the first argument: target, sink or load."""
    match argv:
        case ["target"]:
            asyncio.run(serve_target())
        case ["sink"]:
            asyncio.run(serve_sink())
        case ["load", url, count, warmup, concurrency, max_seconds]:
            asyncio.run(
                run_load(url, int(count), int(warmup), int(concurrency), float(max_seconds))
            )
        case _:
            sys.exit(
                f"usage: {sys.argv[0]} target | sink | load URL N WARMUP CONCURRENCY MAX_SECONDS"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
