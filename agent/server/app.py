"""HTTP endpoints: `/metrics`, `/healthz`, `/readyz` and `/health`."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from agent import __version__
from agent.probes.board import Entry, Scoreboard
from agent.probes.result import Status

BOARD = web.AppKey("board", Scoreboard)
Render = Callable[[], bytes]
RENDER: web.AppKey[Render] = web.AppKey("render")
Clock = Callable[[], float]
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
READY_AFTER = web.AppKey("ready_after", float)
STARTED = web.AppKey("started", float)

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def make_app(
    board: Scoreboard,
    render: Callable[[], bytes],
    grace_seconds: float,
    clock: Clock = time.time,
    middlewares: Sequence[Any] = (),
) -> web.Application:
    """The agent's aiohttp application over `board`, rendering `/metrics` with `render`.

    `clock` dates the start and the end of the start-up grace; it should be the board's clock.
    `middlewares` run around every handler (the API rate limit).
    """
    app = web.Application(client_max_size=64 * 1024, middlewares=list(middlewares))
    app[BOARD] = board
    app[RENDER] = render
    app[CLOCK] = clock
    app[STARTED] = clock()
    app[READY_AFTER] = app[STARTED] + grace_seconds
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/health", health)
    return app


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition; rendered off the event loop so checks keep their timing."""
    body = await asyncio.to_thread(request.app[RENDER])
    return web.Response(body=body, headers={"Content-Type": PROMETHEUS_CONTENT_TYPE})


async def healthz(_: web.Request) -> web.Response:
    """Liveness: the event loop answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: 503 while a critical check is unhealthy, or unknown once the grace has passed."""
    board = request.app[BOARD]
    now = request.app[CLOCK]()
    in_grace = now < request.app[READY_AFTER]
    blocking = [
        e
        for e in board.entries(now)
        if e.check.critical
        and (e.status is Status.UNHEALTHY or (e.status is Status.UNKNOWN and not in_grace))
    ]
    body = {
        "ready": not blocking,
        "in_startup_grace": in_grace,
        "blocking": [{"name": e.check.name, "status": e.status.value} for e in blocking],
    }
    return web.json_response(body, status=503 if blocking else 200)


async def health(request: web.Request) -> web.Response:
    """The JSON summary: overall status and every check's latest result."""
    board = request.app[BOARD]
    now = request.app[CLOCK]()
    entries = board.entries(now)
    body = {
        "status": board.overall(now).value,
        "version": __version__,
        "started_at": _iso(request.app[STARTED]),
        "checks": [entry_json(e) for e in entries],
    }
    return web.Response(
        text=json.dumps(body, default=str, indent=2), content_type="application/json"
    )


def entry_json(entry: Entry) -> dict[str, Any]:
    """One check as `/health` and `vigil check --json` show it."""
    result = entry.result
    return {
        "name": entry.check.name,
        "kind": entry.check.kind,
        "critical": entry.check.critical,
        "status": entry.status.value,
        "reason": entry.reason.value if entry.reason else None,
        "message": result.message if result else "not run yet",
        "duration_seconds": round(result.duration_seconds, 6) if result else None,
        "last_run": _iso(result.finished_at) if result else None,
        "details": dict(result.details) if result else {},
    }


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat(timespec="milliseconds")
