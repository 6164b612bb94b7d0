"""aiohttp middleware: a limiter in front of handlers, answering 429 with `Retry-After` and the
IETF `RateLimit` / `RateLimit-Policy` headers (draft-ietf-httpapi-ratelimit-headers).

Every limited response carries both headers, so a client can slow down before it is refused:
`RateLimit-Policy: "api";q=100;w=60` (quota per window of seconds) and
`RateLimit: "api";r=42;t=18` (remaining, seconds until the key is back at rest). A denial is
429 with `Retry-After` in whole seconds rounded up, never 0. When the storage fails, a limiter
that fails open lets the request through without the headers (nothing is known), and one that
fails closed answers 503 with `Retry-After`. A leaky-bucket limiter delays the request until its
slot instead of letting the burst through.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable

from aiohttp import web

from agent.limits.decision import Decision, Outcome
from agent.limits.limiter import Limiter
from agent.limits.policy import Cost

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]
KeyFunction = Callable[[web.Request], str | None]


def client_address(request: web.Request) -> str | None:
    """The peer's address: the default key (one quota per client)."""
    return request.remote or "unknown"


def headers(decision: Decision) -> dict[str, str]:
    """`RateLimit-Policy` and `RateLimit` for `decision`, one item per limit checked."""
    parts = decision.parts or (decision,)
    policy = ", ".join(
        f'"{part.policy}";q={part.limit};w={max(1, math.ceil(part.period_seconds))}'
        for part in parts
    )
    state = ", ".join(
        f'"{part.policy}";r={max(0, part.remaining)};t={math.ceil(part.reset_after)}'
        for part in parts
    )
    return {"RateLimit-Policy": policy, "RateLimit": state}


def refusal(decision: Decision) -> web.Response:
    """The answer to a request the limiter did not admit."""
    if decision.outcome is Outcome.FAIL_CLOSED:
        return web.json_response(
            {"error": "rate limiter unavailable; try again later"},
            status=503,
            headers={"Retry-After": str(decision.retry_after_header or 1)},
        )
    answer = headers(decision)
    body: dict[str, object]
    if decision.outcome is Outcome.NEVER:
        body = {"error": "request costs more than the rate limit ever admits at once"}
    else:
        answer["Retry-After"] = str(decision.retry_after_header)
        body = {"error": "rate limited", "retry_after_seconds": decision.retry_after_header}
    return web.json_response(body, status=429, headers=answer)


def rate_limit(
    limiter: Limiter,
    *,
    key: KeyFunction = client_address,
    applies: Callable[[web.Request], bool] | None = None,
    cost: Callable[[web.Request], Cost] | None = None,
) -> Middleware:
    """A middleware deciding each request with `limiter`.

    `key` names the quota a request spends (None: not limited); `applies` picks the requests
    limited at all (default: every one); `cost` what each spends (default 1).
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if applies is not None and not applies(request):
            return await handler(request)
        name = key(request)
        if name is None:
            return await handler(request)
        decision = await limiter.decide(name, 1 if cost is None else cost(request))
        if decision.outcome is Outcome.FAIL_OPEN:
            return await handler(request)
        if not decision.allowed:
            return refusal(decision)
        if decision.delay > 0:
            await asyncio.sleep(decision.delay)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(headers(decision))
            raise
        if not response.prepared:
            response.headers.update(headers(decision))
        return response

    return middleware
