"""The rate-limit middleware over real HTTP: headers, 429s, and the agent's own API limit."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.limits import Limit, Limiter, MemoryStorage, Strategy
from agent.limits.middleware import rate_limit
from tests.harness.wait import MicroClock
from tests.integration.conftest import RunningAgent

Serve = Callable[..., Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Factory: a real aiohttp server on loopback with the middleware in front; its base URL."""
    runners: list[web.AppRunner] = []

    async def start(limiter: Limiter, **options: Any) -> str:
        async def ok(_: web.Request) -> web.Response:
            return web.json_response({"ok": True})

        async def teapot(_: web.Request) -> web.Response:
            raise web.HTTPNotFound(text="no")

        app = web.Application(middlewares=[rate_limit(limiter, **options)])
        app.router.add_get("/ok", ok)
        app.router.add_get("/free", ok)
        app.router.add_get("/missing", teapot)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_limited_responses_carry_the_ietf_headers_and_a_denial_is_429(serve: Serve) -> None:
    """Allowed answers show quota and what is left; a denial is 429, Retry-After rounded up."""
    clock = MicroClock(5_000_000_000)
    limiter = Limiter("api", Limit(2, 10, Strategy.FIXED_WINDOW, name="api"), MemoryStorage(clock))
    base = await serve(limiter)
    async with aiohttp.ClientSession() as session:
        async with session.get(base + "/ok") as first:
            assert first.status == 200
            assert first.headers["RateLimit-Policy"] == '"api";q=2;w=10'
            assert first.headers["RateLimit"] == '"api";r=1;t=10'
        clock.now += 2_500_000
        async with session.get(base + "/ok") as second:
            assert second.headers["RateLimit"] == '"api";r=0;t=8'
        clock.now += 1_000
        async with session.get(base + "/ok") as denied:
            assert denied.status == 429
            assert denied.headers["Retry-After"] == "8"  # 7.499 s, rounded up
            assert denied.headers["RateLimit"] == '"api";r=0;t=8'
            assert await denied.json() == {"error": "rate limited", "retry_after_seconds": 8}
        clock.now += 7_499_000
        async with session.get(base + "/ok") as again:
            assert again.status == 200


async def test_errors_raised_by_handlers_carry_the_headers_too(serve: Serve) -> None:
    """A handler's HTTP error still tells the client its quota."""
    base = await serve(Limiter("api", Limit(5, 60), MemoryStorage(MicroClock(5_000_000_000))))
    async with aiohttp.ClientSession() as session, session.get(base + "/missing") as response:
        assert response.status == 404
        assert response.headers["RateLimit"] == '"default";r=4;t=12'


async def test_several_limits_are_listed_and_the_binding_one_denies(serve: Serve) -> None:
    """With two limits both appear in the headers; the one that runs out refuses."""
    limiter = Limiter(
        "api",
        [Limit(3, 1, name="second"), Limit(100, 3600, Strategy.SLIDING_LOG, name="hour")],
        MemoryStorage(MicroClock(5_000_000_000)),
    )
    base = await serve(limiter)
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            async with session.get(base + "/ok") as response:
                assert response.status == 200
        async with session.get(base + "/ok") as denied:
            assert denied.status == 429
            assert denied.headers["RateLimit-Policy"] == '"second";q=3;w=1, "hour";q=100;w=3600'
            # The interval is 1/3 s rounded up to a microsecond: at rest 1.000002 s later.
            assert denied.headers["RateLimit"] == '"second";r=0;t=2, "hour";r=97;t=3600'
            assert denied.headers["Retry-After"] == "1"


async def test_keys_and_applies_choose_what_is_limited(serve: Serve) -> None:
    """Requests `applies` skips, and those without a key, are never limited or counted."""
    limiter = Limiter("tenants", Limit(1, 60), MemoryStorage(MicroClock(5_000_000_000)))
    base = await serve(
        limiter,
        key=lambda request: request.headers.get("X-Tenant"),
        applies=lambda request: request.path != "/free",
    )
    async with aiohttp.ClientSession() as session:
        statuses = []
        for path, tenant in [
            ("/ok", "a"),
            ("/ok", "a"),
            ("/ok", "b"),
            ("/free", "a"),
            ("/ok", None),
        ]:
            headers = {"X-Tenant": tenant} if tenant else {}
            async with session.get(base + path, headers=headers) as response:
                statuses.append((response.status, "RateLimit" in response.headers))
    assert statuses == [(200, True), (429, True), (200, True), (200, False), (200, False)]
    assert sum(limiter.stats().decisions.values()) == 3


async def test_a_leaky_bucket_delays_requests_to_their_slot(serve: Serve) -> None:
    """The leaky bucket lets a burst in but spaces the requests out by the interval."""
    limiter = Limiter("shape", Limit(20, 1, Strategy.LEAKY_BUCKET))
    base = await serve(limiter)
    async with aiohttp.ClientSession() as session:
        started = time.monotonic()
        for _ in range(4):
            async with session.get(base + "/ok") as response:
                assert response.status == 200
        # Three intervals of 50 ms: the 4th request waited for its slot (the bound leaves room
        # for the event loop firing a timer up to its clock resolution early; undelayed, the
        # four requests take a few milliseconds).
        assert time.monotonic() - started >= 0.1


async def test_the_agents_api_is_limited_per_client_but_metrics_and_probes_never(
    start_agent: Callable[..., Awaitable[RunningAgent]],
) -> None:
    """`/health` runs out at the configured limit; `/metrics`, `/healthz`, `/readyz` do not."""
    agent = await start_agent(
        [{"name": "disk", "kind": "disk", "path": "/", "interval_seconds": 60}],
        api_rate_limit={"limit": 3, "period_seconds": 3600, "strategy": "fixed_window"},
    )
    statuses = [(await agent.get("/health"))[0] for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    _, metrics = await agent.get("/metrics")
    assert 'vigil_ratelimit_decisions_total{limiter="api",outcome="denied"} 1.0' in metrics
    assert 'vigil_ratelimit_decisions_total{limiter="api",outcome="allowed"} 3.0' in metrics
    assert 'vigil_ratelimit_utilization{limiter="api"} 1.0' in metrics
    for path in ("/healthz", "/readyz", "/metrics", "/metrics", "/healthz"):
        assert (await agent.get(path))[0] in (200, 503)
    assert (await agent.get("/health"))[0] == 429


async def test_the_api_limit_can_be_switched_off(
    start_agent: Callable[..., Awaitable[RunningAgent]],
) -> None:
    """`api_rate_limit.enabled: false` removes the limit and its metrics."""
    agent = await start_agent(
        [{"name": "disk", "kind": "disk", "path": "/", "interval_seconds": 60}],
        api_rate_limit={"enabled": False, "limit": 1},
    )
    assert [(await agent.get("/health"))[0] for _ in range(3)] == [200, 200, 200]
    assert "vigil_ratelimit" not in (await agent.get("/metrics"))[1]


header_values = st.text(
    st.characters(min_codepoint=32, max_codepoint=126, exclude_characters="\r\n"), max_size=40
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.dictionaries(
        st.sampled_from(
            ["X-Tenant", "Authorization", "RateLimit", "Retry-After", "X-Forwarded-For"]
        ),
        header_values,
        max_size=4,
    ),
    st.sampled_from(["/ok", "/free", "/missing", "/none"]),
)
async def test_any_header_gets_an_answer_never_a_5xx(
    serve: Serve, headers: dict[str, str], path: str
) -> None:
    """Whatever the headers and path, the middleware answers 200, 404 or 429, never 5xx."""
    limiter = Limiter("prop", Limit(2, 60), MemoryStorage(MicroClock(5_000_000_000)))
    base = await serve(limiter, key=lambda request: request.headers.get("X-Tenant", "anon"))
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            async with session.get(base + path, headers=headers) as response:
                assert response.status in (200, 404, 429)
