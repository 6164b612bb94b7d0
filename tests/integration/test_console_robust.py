"""The console's session API of a running agent never answers 5xx for what a request holds, and
opens a session only for the admin token: any body, cookie, Origin, CSRF header and other
headers on login, logout, session and the assets."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.test_webhook_robust import (
    ADMIN,
    Client,
    client,
    encode,
    header_values,
    odd_headers,
    weighted,
)
from tests.strategies import any_text, mostly

__all__ = ["client"]  # the fixture, shared with the webhook's tests
pytestmark = pytest.mark.integration

LOGIN_STATUSES = {200, 400, 401, 403, 413, 415}

operators = mostly(st.sampled_from(["alice", "bob@example", "ops:1"]), any_text)
tokens = weighted(st.just(ADMIN), st.just(ADMIN + " "), st.just(ADMIN.lower()), any_text)
bodies = weighted(
    st.fixed_dictionaries({}, optional={"operator": operators, "token": tokens}),
    st.fixed_dictionaries({"operator": operators, "token": tokens}),
    st.fixed_dictionaries(
        {"operator": operators, "token": tokens}, optional={"extra": st.integers()}
    ),
)
origins = st.none() | st.sampled_from(["http://evil.example", "null", ""]) | header_values
cookies = st.none() | st.builds(lambda v: f"vigil_session={v}", header_values) | header_values


@st.composite
def login_requests(draw: st.DrawFn) -> tuple[dict[str, str], bytes, Any]:
    headers, coding = odd_headers(draw, st.none(), 3)
    body: Any = draw(bodies | st.binary(max_size=80).map(lambda b: b))
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    for name, value in (("Origin", draw(origins)), ("Cookie", draw(cookies))):
        if value is not None:
            headers[name] = value
    headers.setdefault("Content-Type", "application/json")
    return headers, encode(raw, coding, draw(st.booleans())), body


def _same_origin(client: Client, headers: dict[str, str]) -> bool:
    return headers.get("Origin") in (None, client.url)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(request=login_requests())
async def test_login_never_fails_and_opens_a_session_only_for_the_token(
    client: Client, request: tuple[dict[str, str], bytes, Any]
) -> None:
    headers, raw, body = request
    status, answer = await client.send("POST", "/ui/api/login", raw, headers)
    assert status in LOGIN_STATUSES | {429}, (status, answer)
    if status == 200:
        assert isinstance(body, dict)
        assert body.get("token") == ADMIN
        assert _same_origin(client, headers)
        assert answer["operator"] == body["operator"]
        assert len(answer["csrf"]) >= 32
    elif isinstance(answer, dict):
        assert set(answer) <= {"error", "details"}, answer
        # A refusal never echoes the token it was sent (one long enough to tell).
        sent = body.get("token") if isinstance(body, dict) else None
        if isinstance(sent, str) and len(sent) >= 8:
            assert sent not in json.dumps(answer)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    path=st.sampled_from(
        ["/ui/api/logout", "/ui/api/session", "/ui/", "/ui", "/ui/static/console.js"]
    )
    | st.builds(lambda s: "/ui/static/" + s, st.text("abcdefghijklmnopqrstuvwxyz./%", max_size=20)),
    method=st.sampled_from(["GET", "POST", "HEAD", "PUT"]),
    cookie=cookies,
    csrf=st.none() | header_values,
    origin=origins,
)
async def test_session_routes_never_fail(
    client: Client,
    path: str,
    method: str,
    cookie: str | None,
    csrf: str | None,
    origin: str | None,
) -> None:
    headers = {
        name: value
        for name, value in (("Cookie", cookie), ("X-CSRF-Token", csrf), ("Origin", origin))
        if value is not None
    }
    status, answer = await client.send(method, path, None, headers)
    assert status < 500, (status, answer)
    if path == "/ui/api/session" and method == "GET":
        assert status == 200
        assert answer["operator"] is None
