"""The webhook of a running agent never answers 5xx for what a request holds, and one request
never fails another: odd times, odd credentials, compressed bodies, arbitrary headers."""

from __future__ import annotations

import asyncio
import base64
import copy
import gzip
import io
import itertools
import json
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.harness.checks import quiet_disk
from tests.integration.conftest import RunningAgent
from tests.strategies import payloads

pytestmark = pytest.mark.integration

REFERENCE = Path(__file__).parents[1] / "fixtures" / "alertmanager"  # captured, AM 0.25
TOKEN = "robust-Hook-3310"
ADMIN = "robust-Admin-5521"
BASIC_USER = "alertmanager"
BASIC_PASSWORD = "robust-Basic-7702"
DISK = quiet_disk()
DEGRADATION = {
    "enabled": True,
    "webhook": {
        "bearer_token_env": "VIGIL_ROBUST_HOOK",
        "basic_username": BASIC_USER,
        "basic_password_env": "VIGIL_ROBUST_BASIC",
    },
    "admin_token_env": "VIGIL_ROBUST_ADMIN",
    "hold_seconds": 3600,  # no recovery while a test compares states
    "rules": [{"name": "demo", "matchers": ['alertname="DemoDown"'], "level": "minimal"}],
}
FIRING = json.loads((REFERENCE / "webhook_firing.json").read_text())["body"]
BEARER = {"Authorization": f"Bearer {TOKEN}"}
BASIC = base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()


@dataclass
class Client:
    """The agent under test and a session that opens a new connection for every request, so
    a refused body left unread on one connection never touches the next request."""

    agent: RunningAgent
    session: aiohttp.ClientSession

    @property
    def url(self) -> str:
        """The agent's base URL."""
        return self.agent.base_url

    async def send(
        self,
        method: str,
        path: str,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """One request; status and body (JSON when it is JSON)."""
        url = aiohttp.client.URL(self.url + path, encoded=True)
        # aiohttp warns (an error here) about bytes over 1 MiB: it wants a file-like object.
        sent = io.BytesIO(data) if data is not None and len(data) > 1 << 20 else data
        async with self.session.request(method, url, data=sent, headers=headers) as response:
            text = await response.text(errors="replace")
            try:
                return response.status, json.loads(text)
            except ValueError:
                return response.status, text

    async def webhook(self, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """POST `body` to the webhook with the Bearer token unless `headers` say otherwise."""
        sent = {**BEARER, "Content-Type": "application/json", **(headers or {})}
        return await self.send("POST", "/webhooks/alertmanager", body, sent)

    async def state(self) -> dict[str, Any]:
        """The degradation status document."""
        status, state = await self.send("GET", "/api/v1/degradation")
        assert status == 200, state
        return dict(state)

    async def assert_alive(self) -> None:
        """`/healthz` answers 200."""
        assert await self.send("GET", "/healthz") == (200, {"status": "ok"})


@pytest.fixture
async def client(
    start_agent: Callable[..., Awaitable[RunningAgent]], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Client]:
    """An in-process agent over a real SQLite store, with Bearer and basic webhook credentials."""
    monkeypatch.setenv("VIGIL_ROBUST_HOOK", TOKEN)
    monkeypatch.setenv("VIGIL_ROBUST_BASIC", BASIC_PASSWORD)
    monkeypatch.setenv("VIGIL_ROBUST_ADMIN", ADMIN)
    agent = await start_agent(DISK, degradation=DEGRADATION)
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield Client(agent, session)


def firing(fingerprint: str, **alert: Any) -> bytes:
    """The captured Alertmanager notification with one DemoDown alert of `fingerprint`."""
    body = copy.deepcopy(FIRING)
    body["alerts"][0].update(fingerprint=fingerprint, **alert)
    return json.dumps(body).encode()


async def raw_request(port: int, method: str, path: str, headers: bytes, body: bytes) -> int:
    """Send a request with header bytes exactly as given (what no HTTP client would send);
    the status of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n"
        ).encode()
        writer.write(head + headers + b"\r\n" + body)
        await writer.drain()
        async with asyncio.timeout(30):
            answer = await reader.read()
    finally:
        writer.close()
    return int(answer.split(b" ", 2)[1])


# --- defect 1: times the engine cannot use -------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("startsAt", "2026-11-28T14:40:11.702"),  # naive: 200, read in the agent's zone
        ("startsAt", "0001-01-01T00:00:00"),  # naive, year 0 in local time: 500 for all
        ("startsAt", "0001-01-01T00:00:00+05:00"),  # year 0 in UTC
        ("startsAt", "9999-12-31T23:59:59-05:00"),  # year 10000 in UTC
        ("endsAt", "2026-11-28T14:40:11"),
    ],
)
async def test_a_time_the_engine_cannot_use_is_refused_alone(
    client: Client, field: str, value: str
) -> None:
    """A naive or out-of-range time gets 400 naming the field and stores nothing; the valid
    notifications sent with it are applied and acknowledged."""
    good = [f"good-{i}" for i in range(4)]

    answers = await asyncio.gather(
        client.webhook(firing("bad", **{field: value})),
        *(client.webhook(firing(fp)) for fp in good),
    )

    (status, refused), accepted = answers[0], answers[1:]
    assert status == 400, refused
    assert any(d.startswith(f"alerts.0.{field}:") for d in refused["details"]), refused
    assert [s for s, _ in accepted] == [200] * len(good), accepted
    state = await client.state()
    assert {a["fingerprint"] for a in state["active_alerts"]} == set(good)
    assert state["level"] == "minimal"


# --- defect 2: credentials of any bytes ----------------------------------------------------
ODD_AUTHORIZATION = [
    pytest.param(b"Bearer \xff\xfe", id="bearer-not-utf8"),
    pytest.param("Bearer é".encode(), id="bearer-utf8"),
    pytest.param(b"Basic \xff\xfe", id="basic-not-utf8"),
    pytest.param("Basic ébc=".encode(), id="basic-not-ascii"),
    pytest.param(b"Basic " + base64.b64encode(b"\xff:\xfe"), id="basic-decodes-not-utf8"),
    pytest.param(b"Basic " + base64.b64encode(BASIC_USER.encode()), id="basic-no-colon"),
    pytest.param(b"Basic " + base64.b64encode(b":"), id="basic-empty"),
    pytest.param(b"Basic ====", id="basic-padding"),
    pytest.param(b"\xff\xfe", id="no-scheme"),
    pytest.param(b"BEARER\xc0 x", id="scheme-not-utf8"),
]
ROUTES = [
    pytest.param("POST", "/webhooks/alertmanager", id="webhook"),
    pytest.param("POST", "/api/v1/degradation/pin", id="pin"),
    pytest.param("POST", "/api/v1/degradation/unpin", id="unpin"),
    pytest.param("PUT", "/api/v1/flags/odd", id="put-flag"),
    pytest.param("DELETE", "/api/v1/flags/odd", id="delete-flag"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("authorization", ODD_AUTHORIZATION)
async def test_odd_authorization_bytes_get_401(
    client: Client, method: str, path: str, authorization: bytes
) -> None:
    """An Authorization header of any bytes (not UTF-8, not base64, no colon) gets 401."""
    port = client.agent.agent.port
    assert port is not None
    body = firing("auth") if path.startswith("/webhooks") else b"{}"

    status = await raw_request(
        port, method, path, b"Authorization: " + authorization + b"\r\n", body
    )

    assert status == 401
    assert (await client.state())["version"] == 0


async def test_basic_credentials_compare_as_bytes(client: Client) -> None:
    """The right basic credentials are accepted, and a user or password off by one byte is not."""
    wrong = base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}x".encode()).decode()

    right = await client.webhook(firing("basic"), {"Authorization": f"Basic {BASIC}"})
    off = await client.webhook(firing("basic-off"), {"Authorization": f"Basic {wrong}"})

    assert (right[0], off[0]) == (200, 401)


# --- defect 3: compressed bodies -----------------------------------------------------------
def _big_firing(fingerprint: str) -> bytes:
    """A notification whose annotations make it compress to a fraction of its size."""
    return firing(fingerprint, annotations={"description": "the demo is down " * 500})


@pytest.mark.parametrize(
    ("coding", "compress"),
    [
        pytest.param("gzip", gzip.compress, id="gzip"),
        pytest.param("deflate", zlib.compress, id="deflate"),
        pytest.param("GZip", gzip.compress, id="gzip-any-case"),
    ],
)
async def test_a_compressed_body_is_decoded_whole(
    client: Client, coding: str, compress: Callable[[bytes], bytes]
) -> None:
    """A gzip or deflate body, much shorter than its decoded JSON, is read to its end."""
    status, answer = await client.webhook(
        compress(_big_firing("zipped")), {"Content-Encoding": coding}
    )

    assert (status, answer["changes"]) == (200, {"fired": 1}), answer


async def test_a_gzip_bomb_is_refused_with_413(client: Client) -> None:
    """A 30 kB gzip body that decodes to 32 MiB (past max_body_bytes) gets 413, nothing stored."""
    bomb = gzip.compress(b" " * (32 << 20), compresslevel=9)

    status, answer = await client.webhook(bomb, {"Content-Encoding": "gzip"})

    assert status == 413, answer
    assert (await client.state())["version"] == 0
    await client.assert_alive()


@pytest.mark.parametrize("coding", ["compress", "x-gzip", "gzip, deflate", "identity, gzip", "é"])
async def test_an_unknown_content_encoding_gets_415(client: Client, coding: str) -> None:
    """A body in a coding aiohttp does not decode gets 415 naming the codings it takes."""
    status, answer = await client.webhook(firing("coded"), {"Content-Encoding": coding})

    assert status == 415, answer
    assert "gzip" in answer["error"]
    assert (await client.state())["version"] == 0


async def test_identity_is_no_coding(client: Client) -> None:
    """`Content-Encoding: identity` is a plain body."""
    status, answer = await client.webhook(firing("plain"), {"Content-Encoding": "identity"})

    assert status == 200, answer


async def test_a_corrupt_gzip_body_gets_400(client: Client) -> None:
    """A body that says gzip but is not gets 400, not a 500."""
    status, answer = await client.webhook(firing("corrupt"), {"Content-Encoding": "gzip"})

    assert status == 400, answer
    assert answer["error"] == "body cannot be decoded as gzip"


# --- the rule in general -------------------------------------------------------------------
_FRAMING = {
    "authorization",
    "connection",
    "content-encoding",
    "content-length",
    "content-type",
    "expect",
    "host",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}
header_names = st.text(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    min_size=1,
    max_size=20,
).filter(lambda name: name.lower() not in _FRAMING)
# What aiohttp's client sends as a header value: any text without control characters.
header_values = st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=60)


def weighted(*choices: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """One of `choices`, each as likely as any other (repeat one to weigh it)."""
    return st.sampled_from(choices).flatmap(lambda chosen: chosen)


right = st.sampled_from([f"Bearer {TOKEN}", f"bearer  {TOKEN} ", f"Basic {BASIC}"])
authorizations = weighted(
    right,
    right,
    right,
    st.none(),
    header_values,
    st.builds(
        "{} {}".format, st.sampled_from(["Bearer", "bearer", "Basic", "BASIC"]), header_values
    ),
    st.binary(max_size=40).map(lambda b: "Basic " + base64.b64encode(b).decode()),
)
codings = weighted(
    st.none(),
    st.none(),
    st.sampled_from(["gzip", "deflate", "identity", "GZIP", " gzip "]),
    st.sampled_from(["br", "zstd", "compress", "gzip, br", ""]) | header_values,
)
content_types = st.none() | st.sampled_from(["application/json", "text/plain"]) | header_values


def encode(body: bytes, coding: str | None, honest: bool) -> bytes:
    """`body` in `coding` (when `honest`, else as it is)."""
    if not honest or coding is None:
        return body
    if coding.strip().lower() == "gzip":
        return gzip.compress(body)
    if coding.strip().lower() == "deflate":
        return zlib.compress(body)
    return body


def route_requests(
    routes: st.SearchStrategy[tuple[str, str, bytes]],
    credentials: st.SearchStrategy[str | None],
) -> st.SearchStrategy[tuple[str, str, dict[str, str], bytes]]:
    """A method, path, headers and body for one of `routes` (method, path, body), with any of
    `credentials`, up to two other headers and any content coding."""

    @st.composite
    def requests(draw: st.DrawFn) -> tuple[str, str, dict[str, str], bytes]:
        method, path, body = draw(routes)
        headers, coding = odd_headers(draw, credentials, 2)
        return method, path, headers, encode(body, coding, draw(st.booleans()))

    return requests()


ONE_AGENT = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one agent serves every example
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
"""Hypothesis settings for fuzzing the routes of one agent with many requests."""


def odd_headers(
    draw: st.DrawFn, credentials: st.SearchStrategy[str | None], extra: int
) -> tuple[dict[str, str], str | None]:
    """Up to `extra` arbitrary headers, an Authorization from `credentials` and any content
    coding; the headers and the coding (None: no Content-Encoding header)."""
    headers = draw(st.dictionaries(header_names, header_values, max_size=extra))
    authorization = draw(credentials)
    if authorization is not None:
        headers["Authorization"] = authorization
    coding = draw(codings)
    if coding is not None:
        headers["Content-Encoding"] = coding
    return headers, coding


@st.composite
def requests(draw: st.DrawFn, tag: str) -> tuple[dict[str, str], bytes]:
    """Headers and a body: a notification shaped like the model (its fingerprints start with
    `tag`) or any bytes, with any credentials, coding, content type and extra headers."""
    headers, coding = odd_headers(draw, authorizations, 3)
    content_type = draw(content_types)
    if content_type is not None:
        headers["Content-Type"] = content_type
    body = draw(
        payloads(fingerprint_prefix=tag).map(lambda p: json.dumps(p).encode())
        | st.binary(max_size=200)
    )
    return headers, encode(body, coding, draw(st.booleans()))


EXAMPLES = itertools.count()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one agent serves every example
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(data=st.data())
async def test_any_request_gets_no_5xx_and_never_fails_another(
    client: Client, data: st.DataObject
) -> None:
    """Arbitrary headers and payloads sent with valid notifications: no 5xx, the valid ones
    applied, nothing stored of the refused ones, `/healthz` 200 after."""
    example = next(EXAMPLES)
    odd = [
        data.draw(requests(tag=f"e{example}r{i}|"), label=f"request {i}")
        for i in range(data.draw(st.integers(1, 4), label="odd requests"))
    ]
    good = [f"e{example}ok{i}|" for i in range(data.draw(st.integers(1, 3), label="valid"))]
    zipped = data.draw(st.lists(st.booleans(), min_size=len(good), max_size=len(good)))

    answers = await asyncio.gather(
        *(client.webhook(body, headers) for headers, body in odd),
        *(
            client.webhook(gzip.compress(firing(fp)), {"Content-Encoding": "gzip"})
            if z
            else client.webhook(firing(fp))
            for fp, z in zip(good, zipped, strict=True)
        ),
    )

    assert all(status < 500 for status, _ in answers), answers
    assert [status for status, _ in answers[len(odd) :]] == [200] * len(good), answers
    state = await client.state()
    active = {a["fingerprint"] for a in state["active_alerts"]}
    assert set(good) <= active
    assert state["level"] != "full"
    for i, (status, _) in enumerate(answers[: len(odd)]):
        event(f"an odd request got {status}")
        if status != 200:
            assert not any(fp.startswith(f"e{example}r{i}|") for fp in active), answers[i]
    await client.assert_alive()


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(authorization=st.binary(max_size=60).filter(lambda b: not set(b) & set(b"\r\n\0")))
async def test_any_authorization_bytes_get_no_5xx(client: Client, authorization: bytes) -> None:
    """An Authorization header of any bytes gets 401 (or aiohttp's 400 for bytes HTTP forbids)
    on the webhook and an admin route, and changes nothing."""
    port = client.agent.agent.port
    assert port is not None
    header = b"Authorization: " + authorization + b"\r\n"

    hook = await raw_request(port, "POST", "/webhooks/alertmanager", header, firing("raw"))
    admin = await raw_request(port, "POST", "/api/v1/degradation/unpin", header, b"{}")

    assert hook in (400, 401), hook
    assert admin in (400, 401), admin
    assert (await client.state())["version"] == 0
