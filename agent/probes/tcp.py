"""`kind: tcp`: a TCP connect, timed."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from typing import Any

from agent.config.checks import TcpCheck
from agent.probes.context import ProbeContext
from agent.probes.result import CheckResult, Reason


async def probe_tcp(check: TcpCheck, ctx: ProbeContext) -> CheckResult:
    """Rate a TCP endpoint by whether, and how fast, it accepts a connection."""
    attrs = {"server.address": check.host, "server.port": check.port, "network.transport": "tcp"}
    try:
        with ctx.client_span("connect", attrs):
            started = time.perf_counter()
            _, writer = await asyncio.open_connection(check.host, check.port)
            latency = time.perf_counter() - started
    except ConnectionRefusedError as exc:
        return CheckResult.unhealthy(Reason.CONNECTION_REFUSED, str(exc))
    except socket.gaierror as exc:
        return CheckResult.unhealthy(Reason.DNS_ERROR, str(exc))
    except OSError as exc:
        return CheckResult.unhealthy(Reason.CONNECTION_ERROR, str(exc) or type(exc).__name__)
    writer.close()
    with contextlib.suppress(OSError):  # the peer may reset a connection opened only to time it
        await writer.wait_closed()
    details: dict[str, Any] = {"connect_seconds": round(latency, 6)}
    if check.degraded_latency_seconds is not None and latency >= check.degraded_latency_seconds:
        return CheckResult.degraded(
            Reason.LATENCY, f"connect took {latency * 1000:.1f} ms", **details
        )
    return CheckResult.healthy(**details)
