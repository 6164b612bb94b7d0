"""The admin API of a running agent never answers 5xx for what a request holds: any headers,
query strings and bodies on pin, unpin, flags, segments, evaluate and audit."""

from __future__ import annotations

import gzip
import json
import urllib.parse
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from tests.integration.test_webhook_robust import (
    ADMIN,
    ONE_AGENT,
    Client,
    client,
    header_values,
    route_requests,
    weighted,
)
from tests.strategies import any_text, mostly, text

__all__ = ["client"]  # the fixture, shared with the webhook's tests
pytestmark = pytest.mark.integration

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6,
)
levels = mostly(
    st.sampled_from(["full", "degraded", "minimal", "maintenance"]),
    st.sampled_from(["FULL", 2]) | json_values,
)
regexes = mostly(
    st.sampled_from([".*", "a|b", "x+"]),
    st.sampled_from(["a{4294967296}", "(" * 3000 + ")" * 3000, "(?P<x", "["]) | text,
)
floats = mostly(st.floats(0, 100), st.floats() | st.integers(-(2**70), 2**70))


def _maybe(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with any subset of `fields`, sometimes with an unknown key too."""
    return st.fixed_dictionaries({}, optional={**fields, "unknown": json_values})


pins = _maybe(
    {
        "level": levels,
        "reason": any_text,
        "ttl_seconds": mostly(st.floats(1, 86_400) | st.none(), floats),
        "actor": text,
    }
)
OPERATORS = [
    "in", "not_in", "equals", "regex", "str_contains", "str_starts_with", "str_ends_with",
    "num_eq", "num_gt", "num_gte", "num_lt", "num_lte", "date_after", "date_before",
    "semver_eq", "semver_gt", "semver_gte", "semver_lt", "semver_lte", "in_cidr",
]  # fmt: skip
rule_values = st.lists(
    regexes
    | st.sampled_from(
        ["12", "-3.5e2", "nan", "2026-01-31T09:00:00Z", "2026-13-01", "1.2.3-rc.1", "01.2.3",
         "10.0.0.0/8", "::1/200", "10.0.0.1", ""]
    ),
    max_size=2,
)  # fmt: skip
rules = st.lists(
    _maybe(
        {
            "attribute": text,
            "operator": mostly(st.sampled_from(OPERATORS), text),
            "values": rule_values,
            "inverted": mostly(st.booleans(), json_values),
            "case_insensitive": mostly(st.booleans(), json_values),
        }
    ),
    max_size=2,
)
variants = st.lists(
    _maybe(
        {
            "name": mostly(st.sampled_from(["a", "b", "on", "off"]), text),
            "weight": mostly(st.integers(0, 100), st.integers(-(2**70), 2**70)),
            "payload": mostly(
                _maybe({"type": mostly(st.sampled_from(["string", "json"]), text), "value": text}),
                json_values,
            ),
            "overrides": st.lists(
                _maybe({"attribute": text, "values": st.lists(text)}), max_size=2
            ),
        }
    ),
    max_size=2,
)
stickiness = mostly(st.sampled_from(["user_id", "userId", "default", "random"]), text)
# Mostly the segment the segment routes below write, so that flags name one that exists.
segment_names = st.lists(mostly(st.sampled_from(["s", "t"]), text), max_size=2)
# The fields a flag and each of its strategies both have.
rollout = {
    "rollout_percent": floats,
    "stickiness": stickiness,
    "group_id": text | st.none(),
    "targeting": rules,
    "segments": segment_names,
    "variants": variants,
}
flags = _maybe(
    {
        "key": mostly(st.just("k"), text),
        "description": any_text,
        "enabled": mostly(st.booleans(), json_values),
        **rollout,
        "strategies": st.lists(_maybe(rollout), max_size=2),
        "depends_on": st.lists(
            _maybe(
                {
                    "flag": mostly(st.just("k"), text),
                    "enabled": st.booleans(),
                    "variant": text,
                    "variants": st.lists(mostly(st.sampled_from(["a", "on"]), text), max_size=2),
                }
            ),
            max_size=2,
        ),
        "disabled_at_level": levels,
    }
)
segments = _maybe({"name": mostly(st.just("s"), text), "description": any_text, "targeting": rules})
contexts = _maybe({"context": mostly(st.dictionaries(text, text, max_size=4), json_values)})
odd_bodies = weighted(
    json_values.map(json.dumps),
    st.sampled_from(['{"description": "\\ud800"}', '{"rollout_percent": NaN}', "[" * 5000]),
).map(str.encode) | st.binary(max_size=100)


def bodies(shape: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[bytes]:
    """Mostly objects of `shape` (valid or close), sometimes anything at all."""
    return mostly(shape.map(lambda body: json.dumps(body).encode()), odd_bodies)


# Path and query pieces: any text percent-encoded, and encodings no client should send.
pieces = text.map(lambda t: urllib.parse.quote(t, safe="")) | st.sampled_from(
    ["%ff", "%", "%zz", "k", "%C2%B2", "9" * 5000, "0", "10001", "api%0A"]
)
keys = mostly(st.just("k"), pieces)
names = mostly(st.sampled_from(["s", "t"]), pieces)
# Audit queries: each parameter valid or close (times with and without offsets, far years, the
# store's own cursor form and others), repeated, unknown ones, and raw pieces.
times = (
    weighted(
        st.datetimes(timezones=st.timezones() | st.none()).map(lambda t: t.isoformat()),
        st.sampled_from(["2026-12-06T23:30:00Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59Z"]),
    ).map(lambda t: urllib.parse.quote(t, safe=""))
    | pieces
)
audit_parameters = st.lists(
    st.tuples(st.just("limit"), st.integers(-5, 20_000).map(str) | pieces)
    | st.tuples(st.sampled_from(["since", "until"]), times)
    | st.tuples(st.just("actor"), st.sampled_from(["alice", "user:alice", ":", ""]) | pieces)
    | st.tuples(st.just("kind"), st.sampled_from(["pin_set", "level_changed", "X"]) | pieces)
    | st.tuples(st.just("cursor"), st.integers(-1, 2**70).map(str) | pieces)
    | st.tuples(pieces, pieces),
    max_size=6,
)
audit_queries = audit_parameters.map(
    lambda pairs: "&".join(f"{urllib.parse.quote(k, safe='%')}={v}" for k, v in pairs)
)
routes = weighted(
    st.tuples(st.just("POST"), st.just("/api/v1/degradation/pin"), bodies(pins)),
    st.tuples(st.just("POST"), st.just("/api/v1/degradation/unpin"), bodies(pins)),
    st.tuples(st.just("PUT"), keys.map("/api/v1/flags/{}".format), bodies(flags)),
    st.tuples(st.just("PUT"), pieces.map("/api/v1/flags/k?actor={}".format), bodies(flags)),
    st.tuples(st.just("DELETE"), keys.map("/api/v1/flags/{}?actor=api".format), odd_bodies),
    st.tuples(st.just("POST"), keys.map("/api/v1/flags/{}/evaluate".format), bodies(contexts)),
    st.tuples(st.just("GET"), keys.map("/api/v1/flags/{}".format), st.just(b"")),
    st.tuples(st.just("PUT"), names.map("/api/v1/segments/{}".format), bodies(segments)),
    st.tuples(st.just("PUT"), pieces.map("/api/v1/segments/s?actor={}".format), bodies(segments)),
    st.tuples(st.just("DELETE"), names.map("/api/v1/segments/{}?actor=api".format), odd_bodies),
    st.tuples(st.just("GET"), names.map("/api/v1/segments/{}".format), st.just(b"")),
    st.tuples(st.just("GET"), audit_queries.map("/api/v1/audit?{}".format), st.just(b"")),
)
authorizations = weighted(
    st.just(f"Bearer {ADMIN}"),
    st.just(f"Bearer {ADMIN}"),
    st.none(),
    header_values,
)


@ONE_AGENT
@given(request=route_requests(routes, authorizations))
async def test_any_admin_request_gets_no_5xx(
    client: Client, request: tuple[str, str, dict[str, str], bytes]
) -> None:
    """Any headers, path pieces, query and body on an admin route: never a 5xx, and the status,
    flag list and `/healthz` still answer 200 after."""
    method, path, headers, body = request

    status, answer = await client.send(method, path, body, headers)

    event(f"{method} {path.split('/')[3].split('?')[0]} {status}")
    assert status < 500, (status, answer)
    assert (await client.send("GET", "/api/v1/flags"))[0] == 200
    assert (await client.send("GET", "/api/v1/segments"))[0] == 200
    await client.state()
    await client.assert_alive()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("GET", "/api/v1/audit?limit=%C2%B2", b"", id="limit-superscript"),
        pytest.param("GET", "/api/v1/audit?limit=" + "9" * 5000, b"", id="limit-5000-digits"),
        pytest.param("GET", "/api/v1/audit?cursor=" + "9" * 30, b"", id="cursor-past-64-bits"),
        pytest.param(
            "GET", "/api/v1/audit?since=0001-01-01T00:00:00%2B01:00", b"", id="since-before-year-1"
        ),
        pytest.param("GET", "/api/v1/audit?since=2026-12-06T23:30:00", b"", id="since-naive"),
        pytest.param("GET", "/api/v1/audit?kind=a&kind=" + "b" * 65, b"", id="kind-too-long"),
        pytest.param("GET", "/api/v1/audit?limt=5", b"", id="unknown-parameter"),
        pytest.param("GET", "/api/v1/audit?actor=a%00b", b"", id="actor-nul"),
        pytest.param(
            "PUT", "/api/v1/flags/k", b'{"description": "\\ud800"}', id="flag-lone-surrogate"
        ),
        pytest.param(
            "PUT",
            "/api/v1/flags/k",
            json.dumps(
                {
                    "targeting": [
                        {"attribute": "a", "operator": "regex", "values": ["a{9999999999}"]}
                    ]
                }
            ).encode(),
            id="flag-regex-overflow",
        ),
        pytest.param(
            "PUT",
            "/api/v1/flags/k",
            json.dumps(
                {"targeting": [{"attribute": "a", "operator": "regex", "values": ["(" * 3000]}]}
            ).encode(),
            id="flag-regex-deep",
        ),
        pytest.param("PUT", "/api/v1/flags/k?actor=api%0A", b"{}", id="actor-newline"),
    ],
)
async def test_admin_inputs_that_answered_500_get_400(
    client: Client, method: str, path: str, body: bytes
) -> None:
    """Inputs that once raised inside a handler (a non-ASCII digit, an int past 4,300 digits,
    a lone surrogate, a regex re.compile overflows on) or slipped past it (an actor ending in a
    newline) get 400 and store nothing."""
    headers = {"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"}

    status, answer = await client.send(method, path, body, headers)

    assert status == 400, answer
    assert await client.send("GET", "/api/v1/flags") == (200, {"flags": []})


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param(
            "POST", "/api/v1/degradation/pin", {"level": "minimal", "reason": "z" * 400}, id="pin"
        ),
        pytest.param(
            "PUT", "/api/v1/flags/zipped", {"description": "a flag " * 100}, id="put-flag"
        ),
        pytest.param(
            "POST",
            "/api/v1/flags/zipped/evaluate",
            {"context": {f"attribute{i}": "value" for i in range(60)}},
            id="evaluate",
        ),
    ],
)
async def test_admin_bodies_may_be_gzipped(
    client: Client, method: str, path: str, body: dict[str, Any]
) -> None:
    """An admin body sent with `Content-Encoding: gzip`, much shorter than its JSON, is
    decoded whole and applied."""
    headers = {"Authorization": f"Bearer {ADMIN}", "Content-Encoding": "gzip"}

    status, answer = await client.send(
        method, path, gzip.compress(json.dumps(body).encode()), headers
    )

    assert status == 200, answer


async def test_admin_unknown_coding_gets_415(client: Client) -> None:
    """An admin body in a coding aiohttp does not decode gets 415 and changes nothing."""
    headers = {"Authorization": f"Bearer {ADMIN}", "Content-Encoding": "compress"}

    status, answer = await client.send("PUT", "/api/v1/flags/k", b"{}", headers)

    assert status == 415, answer
    assert await client.send("GET", "/api/v1/flags") == (200, {"flags": []})
