"""The runtime status API: each check's recent runs, the agent's own rate limiters and work
queues, for an operator console.

Every route is a read: no token, nothing changes, and it sits behind the API rate limit like
`/health`. The figures are the ones the metrics publish (`Scoreboard`, `Limiter.stats`,
`WorkQueue.stats`), read when asked, so a page and a dashboard never disagree about a count.
A query parameter a route does not know is refused with 400, as `GET /api/v1/audit` does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from agent.probes.board import Point, Scoreboard

# Types only: an agent without the degradation engine never loads the queue package.
if TYPE_CHECKING:
    from agent.limits import Limiter, SyncLimiter
    from agent.queue.manager import WorkQueue

    AnyLimiter = Limiter | SyncLimiter

HISTORY_PARAMETERS = ("check",)
_CHECK_NAME_CHARS = 200


class RuntimeApi:
    """Route handlers over the scoreboard and whatever limiters and queues run now.

    `limiters` and `queues` are callables so that a limiter or queue made after the routes are
    registered (a capability started later) is listed as soon as it exists.
    """

    def __init__(
        self,
        board: Scoreboard,
        limiters: Callable[[], Iterable[AnyLimiter]] = tuple,
        queues: Callable[[], Iterable[WorkQueue]] = tuple,
    ) -> None:
        self.board = board
        self.limiters = limiters
        self.queues = queues

    def register(self, app: web.Application) -> None:
        """Add the routes to `app`."""
        r = app.router
        r.add_get("/api/v1/checks/history", self.history)
        r.add_get("/api/v1/limits", self.limits)
        r.add_get("/api/v1/queues", self.queue_list)

    async def history(self, request: web.Request) -> web.Response:
        """Each check's last runs, oldest first; `?check=NAME` for one (404 when unknown)."""
        params = request.query
        _known_only(params, HISTORY_PARAMETERS)
        names = params.getall("check", [])
        if len(names) > 1:
            raise _error(web.HTTPBadRequest, "check given more than once")
        if names:
            name = names[0]
            if name not in self.board.checks:
                shown = name if len(name) <= _CHECK_NAME_CHARS else name[:_CHECK_NAME_CHARS] + "…"
                raise _error(web.HTTPNotFound, f"no check named {shown!r}")
            wanted = [name]
        else:
            wanted = list(self.board.checks)
        checks = [self._check_history(name) for name in wanted]
        return web.json_response({"size": self.board.history_size, "checks": checks})

    def _check_history(self, name: str) -> dict[str, Any]:
        check = self.board.checks[name]
        return {
            "name": name,
            "kind": check.kind,
            "critical": check.critical,
            "interval_seconds": check.interval_seconds,
            "runs": [point_json(p) for p in self.board.history(name)],
        }

    async def limits(self, request: web.Request) -> web.Response:
        """Each of the agent's rate limiters: its limits, decisions and how busy it is."""
        _known_only(request.query, ())
        return web.json_response({"limiters": [limiter_json(x) for x in self.limiters()]})

    async def queue_list(self, request: web.Request) -> web.Response:
        """Each of the agent's work queues: depth, workers, backpressure and outcome counts."""
        _known_only(request.query, ())
        return web.json_response({"queues": [queue_json(q) for q in self.queues()]})


def point_json(point: Point) -> dict[str, Any]:
    """One past run as the history route shows it."""
    return {
        "finished_at": round(point.finished_at, 3),
        "status": point.status.value,
        "reason": point.reason.value if point.reason is not None else None,
        "duration_seconds": round(point.duration_seconds, 6),
    }


def limiter_json(limiter: AnyLimiter) -> dict[str, Any]:
    """One limiter: its limits, failure policy, decisions by outcome and utilization.

    `rejections` are the decisions that refused a request (`denied`, `never`, `fail_closed`);
    `utilization` is the busiest key's used share of its quota now (`Limiter.held`).
    """
    stats = limiter.stats()
    decisions = {outcome.value: count for outcome, count in stats.decisions.items()}
    rejections = sum(decisions.get(name, 0) for name in ("denied", "never", "fail_closed"))
    return {
        "name": limiter.name,
        "limits": [
            {
                "name": limit.name,
                "strategy": limit.strategy.value,
                "limit": limit.limit,
                "period_seconds": limit.period_seconds,
                "burst": limit.burst,
                "capacity": limit.capacity,
            }
            for limit in limiter.limits
        ],
        "failure_policy": limiter.on_error.value,
        "factor": stats.factor,
        "decisions": decisions,
        "rejections": rejections,
        "storage_errors": stats.storage_errors,
        "keys": limiter.states(),
        "utilization": _share(limiter.held()),
    }


def queue_json(queue: WorkQueue) -> dict[str, Any]:
    """One work queue: depth against capacity, the pool, backpressure and outcome counts."""
    stats = queue.stats()
    config = queue.config
    high, low = config.depth_marks()
    outcomes = {outcome.value: count for outcome, count in stats.outcomes.items()}
    return {
        "name": stats.name,
        "depth": stats.depth,
        "capacity": stats.capacity,
        "depth_by_priority": dict(stats.depth_by_priority),
        "producers_waiting": stats.producers_waiting,
        "running": stats.busy,
        "workers": {
            "current": stats.workers,
            "min": config.min_workers,
            "max": config.max_workers,
        },
        "backpressure": {
            "active": stats.backpressure,
            "refusing": stats.refusing,
            "depth_high": high,
            "depth_low": low,
            "wait_high_seconds": config.wait_high_seconds,
            "wait_low_seconds": config.wait_low_seconds,
            "oldest_wait_seconds": round(stats.oldest_wait_seconds, 6),
            "drain_per_second": _rounded(stats.drain_per_second),
            "retry_after_seconds": round(queue.retry_after_seconds(), 3),
        },
        "counts": {
            "accepted": stats.admitted,
            "refused": outcomes.get("rejected", 0),
            "expired": outcomes.get("expired", 0),
            "failed": outcomes.get("failed", 0),
            "completed": outcomes.get("completed", 0),
            "cancelled": outcomes.get("cancelled", 0),
            "retried": outcomes.get("retried", 0),
        },
        "closed": stats.closed,
    }


def _share(value: float | None) -> float | None:
    return None if value is None else round(min(1.0, max(0.0, value)), 6)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _known_only(params: Mapping[str, str], known: tuple[str, ...]) -> None:
    """400 naming the first query parameter the route does not take."""
    unknown = sorted(set(params) - set(known))
    if not unknown:
        return
    shown = unknown[0][:_CHECK_NAME_CHARS]
    if known:
        raise _error(web.HTTPBadRequest, f"unknown parameter {shown!r}; known: {', '.join(known)}")
    raise _error(web.HTTPBadRequest, f"unknown parameter {shown!r}; this route takes none")


def _error(kind: type[web.HTTPException], message: str) -> web.HTTPException:
    """A JSON error answer of class `kind` (400, 404)."""
    return kind(text=json.dumps({"error": message}), content_type="application/json")
