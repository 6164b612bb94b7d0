"""Fuzzing the webhook and the admin API of a real agent process: a bad request gets a 4xx and
changes nothing, a valid one is accepted, no request gets a 5xx, and the agent stays up."""

from __future__ import annotations

import copy
import datetime as dt
import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.harness.agent_process import AgentProcess, start_agent_process, stop_agent_process
from tests.harness.checks import quiet_disk
from tests.harness.httpclient import request

pytestmark = pytest.mark.integration

REPO = Path(__file__).parents[2]
REFERENCE = REPO / "tests" / "fixtures" / "alertmanager"  # captured, AM 0.25
HOOK_TOKEN = "fuzz-Hook-4417"
ADMIN_TOKEN = "fuzz-Admin-9052"
MAX_BODY = 1 << 20  # webhook.max_body_bytes default


def call(
    method: str, url: str, body: bytes | None = None, token: str | None = None
) -> tuple[int, Any]:
    """One request; status and the body as JSON (or text when it is not JSON)."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    status, raw = request(method, url, body, headers, timeout=30)
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    """A fresh agent with the webhook, the admin API and one rule; a long hold so no tick moves
    the state version while a test compares it."""
    config = {
        "agent": {
            "listen_port": 0,
            "data_dir": str(tmp_path / "data"),
            "startup_grace_seconds": 0,
            "log_format": "json",
        },
        "checks": quiet_disk(),
        "degradation": {
            "enabled": True,
            "webhook": {"bearer_token_env": "VIGIL_FUZZ_HOOK"},
            "admin_token_env": "VIGIL_FUZZ_ADMIN",
            "hold_seconds": 3600,
            "rules": [{"name": "demo", "matchers": ['alertname="DemoDown"'], "level": "minimal"}],
        },
    }
    env = {"VIGIL_FUZZ_HOOK": HOOK_TOKEN, "VIGIL_FUZZ_ADMIN": ADMIN_TOKEN}
    running = start_agent_process(tmp_path / "agent", config, env)
    try:
        yield running
    finally:
        stop_agent_process(running)


def snapshot(agent: AgentProcess) -> tuple[int, Any]:
    """What a refused request must leave alone: the state version and the flag set."""
    status, state = call("GET", agent.url + "/api/v1/degradation")
    assert status == 200, state
    status, flags = call("GET", agent.url + "/api/v1/flags")
    assert status == 200, flags
    return int(state["version"]), flags["flags"]


def assert_alive(agent: AgentProcess) -> None:
    """The process runs and `/healthz` answers."""
    assert agent.proc.poll() is None, agent.log.read_text(errors="replace")[-3000:]
    assert call("GET", agent.url + "/healthz") == (200, {"status": "ok"})


# --- bodies ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Body:
    """A request body and what the agent must make of it: valid or invalid."""

    expect: str
    why: str
    data: bytes

    def __repr__(self) -> str:
        head = self.data[:300] + (b"..." if len(self.data) > 300 else b"")
        return f"Body({self.expect!r}, {self.why!r}, {len(self.data)} bytes: {head!r})"


REFERENCES = [
    json.loads((REFERENCE / name).read_text())["body"]
    for name in ("webhook_firing.json", "webhook_resolved.json")
]
TOP_FIELDS = {
    "version",
    "status",
    "receiver",
    "groupKey",
    "truncatedAlerts",
    "groupLabels",
    "commonLabels",
    "commonAnnotations",
    "externalURL",
    "alerts",
}
ALERT_FIELDS = {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL"}
ALERT_FIELDS |= {"fingerprint"}
OPTIONAL_TOP = sorted(TOP_FIELDS - {"version", "status", "alerts"})
OPTIONAL_ALERT = ["annotations", "endsAt", "generatorURL"]
REQUIRED = [("version",), ("status",), ("alerts",)] + [
    ("alert", k) for k in ("status", "labels", "startsAt", "fingerprint")
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)
# Alertmanager is written in Go: its JSON never holds a lone UTF-16 surrogate.
clean_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
huge_text = st.builds(
    lambda chunk, n: chunk * n,
    st.sampled_from(["x", "é", "💥", "\u202e", "\x00", "日本", "\\", '"']),
    st.integers(1_000, 20_000),
)
valid_text = clean_text | huge_text
not_a_date = (
    st.none()
    | st.booleans()
    | st.lists(st.integers(), max_size=2)
    | st.text("abcdefghijklmnopqrstuvwxyz :-", max_size=12)
)


def _alert(body: dict[str, Any], draw: st.DrawFn) -> dict[str, Any]:
    alerts = body["alerts"]
    return dict(alerts[draw(st.integers(0, len(alerts) - 1))])


def _apply_valid(draw: st.DrawFn, body: dict[str, Any]) -> str:
    """One change that keeps `body` a valid v4 payload; what it was."""
    kind = draw(
        st.sampled_from(
            [
                "extra top-level keys",
                "extra alert keys",
                "unicode labels",
                "unicode annotations",
                "unicode receiver/groupKey/externalURL",
                "optional keys dropped",
                "new fingerprint",
                "new startsAt",
                "statuses flipped",
                "more alerts",
            ]
        )
    )
    alert = body["alerts"][0]
    if kind == "extra top-level keys":
        extra = draw(st.dictionaries(st.text(max_size=12), json_values, min_size=1, max_size=4))
        body.update({k: v for k, v in extra.items() if k not in TOP_FIELDS})
    elif kind == "extra alert keys":
        extra = draw(st.dictionaries(st.text(max_size=12), json_values, min_size=1, max_size=4))
        alert.update({k: v for k, v in extra.items() if k not in ALERT_FIELDS})
    elif kind == "unicode labels":
        alert["labels"].update(draw(st.dictionaries(clean_text, valid_text, max_size=3)))
    elif kind == "unicode annotations":
        alert.setdefault("annotations", {}).update(
            draw(st.dictionaries(clean_text, valid_text, max_size=3))
        )
    elif kind == "unicode receiver/groupKey/externalURL":
        body[draw(st.sampled_from(["receiver", "groupKey", "externalURL"]))] = draw(valid_text)
    elif kind == "optional keys dropped":
        for key in draw(st.lists(st.sampled_from(OPTIONAL_TOP), unique=True)):
            body.pop(key, None)
        for key in draw(st.lists(st.sampled_from(OPTIONAL_ALERT), unique=True)):
            alert.pop(key, None)
    elif kind == "new fingerprint":
        alert["fingerprint"] = draw(
            st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=128)
        )
    elif kind == "new startsAt":
        when = draw(
            st.datetimes(
                dt.datetime(1971, 1, 1), dt.datetime(2999, 1, 1), timezones=st.just(dt.UTC)
            )
        )
        alert["startsAt"] = when.isoformat()
    elif kind == "statuses flipped":
        body["status"] = draw(st.sampled_from(["firing", "resolved"]))
        alert["status"] = draw(st.sampled_from(["firing", "resolved"]))
    else:
        copies = draw(st.integers(1, 40))
        body["alerts"] = [
            {**copy.deepcopy(alert), "fingerprint": f"{alert['fingerprint']}-{i}"}
            for i in range(copies)
        ]
    return kind


def _apply_invalid(draw: st.DrawFn, body: dict[str, Any]) -> str:
    """One change that makes `body` not a v4 payload; what it was."""
    kind = draw(
        st.sampled_from(
            [
                "wrong version",
                "wrong status",
                "alerts not a list",
                "an alert not an object",
                "wrong alert status",
                "labels not strings",
                "annotations not strings",
                "startsAt not a date",
                "bad fingerprint",
                "required key missing",
                "negative truncatedAlerts",
            ]
        )
    )
    alert = body["alerts"][0]
    if kind == "wrong version":
        body["version"] = draw(json_values.filter(lambda v: v != "4"))
    elif kind == "wrong status":
        body["status"] = draw(json_values.filter(lambda v: v not in ("firing", "resolved")))
    elif kind == "alerts not a list":
        body["alerts"] = draw(json_values.filter(lambda v: not isinstance(v, list)))
    elif kind == "an alert not an object":
        body["alerts"].append(draw(json_values.filter(lambda v: not isinstance(v, dict))))
    elif kind == "wrong alert status":
        alert["status"] = draw(json_values.filter(lambda v: v not in ("firing", "resolved")))
    elif kind == "labels not strings":
        alert["labels"] = draw(
            json_values.filter(lambda v: not isinstance(v, dict))
            | st.dictionaries(
                clean_text, json_values.filter(lambda v: not isinstance(v, str)), min_size=1
            )
        )
    elif kind == "annotations not strings":
        alert["annotations"] = draw(
            st.dictionaries(
                clean_text, json_values.filter(lambda v: not isinstance(v, str)), min_size=1
            )
        )
    elif kind == "startsAt not a date":
        alert["startsAt"] = draw(not_a_date)
    elif kind == "bad fingerprint":
        alert["fingerprint"] = draw(
            st.just("")
            | st.text("0123456789abcdef", min_size=129, max_size=300)
            | json_values.filter(lambda v: not isinstance(v, str))
        )
    elif kind == "required key missing":
        where = draw(st.sampled_from(REQUIRED))
        (body if len(where) == 1 else alert).pop(where[-1])
    else:
        body["truncatedAlerts"] = draw(st.integers(max_value=-1))
    return kind


@st.composite
def webhook_bodies(draw: st.DrawFn) -> Body:
    """Valid and invalid webhook bodies, mostly mutations of captured Alertmanager payloads."""
    shape = draw(
        st.sampled_from(
            [
                "valid",
                "valid",
                "invalid",
                "invalid",
                "json value",
                "bytes",
                "truncated",
                "too large",
            ]
        )
    )
    if shape == "json value":
        return Body("invalid", shape, json.dumps(draw(json_values)).encode())
    if shape == "bytes":
        return Body("invalid", shape, draw(st.binary(max_size=200)))
    body = copy.deepcopy(draw(st.sampled_from(REFERENCES)))
    body["alerts"] = [dict(a, labels=dict(a["labels"])) for a in body["alerts"]]
    kinds = [_apply_valid(draw, body) for _ in range(draw(st.integers(0, 3)))]
    if shape == "invalid":
        kinds.append(_apply_invalid(draw, body))
    data = json.dumps(body).encode()
    if shape == "truncated":
        return Body("invalid", shape, data[: draw(st.integers(0, len(data) - 1))])
    if shape == "too large":
        return Body("invalid", shape, data + b" " * (MAX_BODY + 1 - len(data)))
    if len(data) > MAX_BODY:  # a valid payload over the cap is still refused
        return Body("invalid", f"{kinds} over max_body_bytes", data)
    return Body(shape, ", ".join(kinds) or "unchanged", data)


FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one agent serves every example
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)


@FUZZ
@given(body=webhook_bodies())
def test_webhook_accepts_valid_and_refuses_invalid_bodies(agent: AgentProcess, body: Body) -> None:
    """Valid v4 bodies (extra keys included) get 2xx; invalid ones get a 4xx and change nothing."""
    before = snapshot(agent)

    status, answer = call("POST", agent.url + "/webhooks/alertmanager", body.data, HOOK_TOKEN)

    if body.expect == "valid":
        assert status == 200, (body.why, answer)
        assert answer["version"] >= before[0]
    elif body.expect == "invalid" or status != 200:
        assert 400 <= status < 500, (body.why, status, answer)
        assert snapshot(agent) == before, body.why
    assert_alive(agent)


ADMIN_WRITES = [
    ("POST", "/api/v1/degradation/pin"),
    ("POST", "/api/v1/degradation/unpin"),
    ("PUT", "/api/v1/flags/fuzzed"),
    ("POST", "/api/v1/flags/fuzzed/evaluate"),
]


@FUZZ
@given(
    endpoint=st.sampled_from(ADMIN_WRITES),
    data=st.one_of(
        json_values.map(lambda v: json.dumps(v).encode()),
        st.dictionaries(
            st.sampled_from(["level", "reason", "ttl_seconds", "actor", "enabled", "context"]),
            json_values,
        ).map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=100),
    ),
)
def test_admin_api_refuses_bad_bodies_without_change(
    agent: AgentProcess, endpoint: tuple[str, str], data: bytes
) -> None:
    """Random admin bodies never get a 5xx; a refused one leaves the state and the flags alone."""
    before = snapshot(agent)

    status, answer = call(endpoint[0], agent.url + endpoint[1], data, ADMIN_TOKEN)

    assert status < 500, (endpoint, answer)
    if status >= 400:
        assert snapshot(agent) == before, (endpoint, answer)
    assert_alive(agent)


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    ("method", "path", "token"),
    [
        pytest.param("POST", "/webhooks/alertmanager", HOOK_TOKEN, id="webhook"),
        pytest.param("POST", "/api/v1/degradation/pin", ADMIN_TOKEN, id="pin"),
        pytest.param("POST", "/api/v1/degradation/unpin", ADMIN_TOKEN, id="unpin"),
        pytest.param("PUT", "/api/v1/flags/deep", ADMIN_TOKEN, id="put-flag"),
        pytest.param("POST", "/api/v1/flags/deep/evaluate", None, id="evaluate"),
    ],
)
def test_deeply_nested_json_is_a_400(
    agent: AgentProcess, method: str, path: str, token: str | None
) -> None:
    """A body nested 50,000 deep (100 kB, under every size cap) is refused with 400, not a 500."""
    before = snapshot(agent)

    status, answer = call(method, agent.url + path, _nested(50_000), token)

    assert status == 400, answer
    assert snapshot(agent) == before
    assert_alive(agent)


def _in_two_segments(url: str, method: str, path: str, token: str, body: bytes) -> int:
    """Send a request whose body arrives in two TCP segments 0.2 s apart; the answer's status."""
    host, port = url.removeprefix("http://").split(":")
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(head + body[: len(body) // 2])
        time.sleep(0.2)
        sock.sendall(body[len(body) // 2 :])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1])


@pytest.mark.parametrize(
    ("method", "path", "token", "body"),
    [
        pytest.param(
            "POST",
            "/webhooks/alertmanager",
            HOOK_TOKEN,
            json.dumps(REFERENCES[0]).encode(),
            id="webhook",
        ),
        pytest.param(
            "PUT",
            "/api/v1/flags/split",
            ADMIN_TOKEN,
            json.dumps({"enabled": True, "description": "two segments"}).encode(),
            id="put-flag",
        ),
    ],
)
def test_body_in_two_segments_is_read_whole(
    agent: AgentProcess, method: str, path: str, token: str, body: bytes
) -> None:
    """A valid body that arrives in two TCP segments (any network, any large body) is accepted."""
    assert _in_two_segments(agent.url, method, path, token, body) == 200


@pytest.mark.parametrize(
    ("path", "token", "mutate"),
    [
        pytest.param(
            "/webhooks/alertmanager",
            HOOK_TOKEN,
            lambda b: b["alerts"][0].update(startsAt=1_790_000_000),
            id="startsAt-number",
        ),
        pytest.param(
            "/webhooks/alertmanager",
            HOOK_TOKEN,
            lambda b: b.update(truncatedAlerts="5"),
            id="truncatedAlerts-string",
        ),
        pytest.param(
            "/api/v1/degradation/pin",
            ADMIN_TOKEN,
            lambda b: b.update(ttl_seconds="60"),
            id="pin-ttl-string",
        ),
    ],
)
def test_document_types_are_enforced(
    agent: AgentProcess, path: str, token: str, mutate: Callable[[dict[str, Any]], None]
) -> None:
    """A body whose field has a type the OpenAPI document does not allow is refused with 400."""
    body = (
        copy.deepcopy(REFERENCES[0])
        if path.startswith("/webhooks")
        else {"level": "degraded", "reason": "types", "ttl_seconds": 60}
    )
    mutate(body)
    before = snapshot(agent)

    status, answer = call("POST", agent.url + path, json.dumps(body).encode(), token)

    assert status == 400, answer
    assert snapshot(agent) == before


# --- schemathesis against the agent's own OpenAPI document ----------------------------------
# Schemathesis' lazy `from_fixture` loader reads `request.node._nodeid`, which pytest 9 removed,
# so the operations are walked here and each one's strategy is driven by hypothesis directly.
DOCUMENTED = {
    "POST /webhooks/alertmanager",
    "GET /api/v1/degradation",
    "POST /api/v1/degradation/pin",
    "POST /api/v1/degradation/unpin",
    "GET /api/v1/audit",
    "GET /api/v1/flags",
    "GET /api/v1/flags/{key}",
    "PUT /api/v1/flags/{key}",
    "DELETE /api/v1/flags/{key}",
    "POST /api/v1/flags/{key}/evaluate",
    "GET /api/v1/segments",
    "GET /api/v1/segments/{name}",
    "PUT /api/v1/segments/{name}",
    "DELETE /api/v1/segments/{name}",
    "GET /api/v1/checks/history",
    "GET /api/v1/limits",
    "GET /api/v1/queues",
}
CHECKS: list[Callable[..., Any]] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]  # not negative_data_rejection: the models coerce types (test_document_types_are_enforced)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_conforms_to_its_openapi_document(agent: AgentProcess, mode: GenerationMode) -> None:
    """Generated requests for every documented operation, valid and schema-violating: no 5xx,
    only documented statuses, content types and bodies, and valid writes accepted."""
    schema = schemathesis.openapi.from_url(agent.url + "/api/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} == DOCUMENTED
    answered: dict[str, set[int]] = {}

    for operation in operations:
        if mode is GenerationMode.NEGATIVE and not (operation.body or operation.query):
            continue  # nothing in the request to get wrong (a path parameter is any string)
        token = HOOK_TOKEN if operation.path == "/webhooks/alertmanager" else ADMIN_TOKEN
        statuses = answered.setdefault(operation.label, set())
        _exercise(operation.as_strategy(generation_mode=mode), token, statuses)
        assert_alive(agent)

    if mode is GenerationMode.POSITIVE:  # the credentials worked: writes were accepted
        accepted = {label for label, codes in answered.items() if 200 in codes}
        assert accepted >= DOCUMENTED - {
            "GET /api/v1/flags/{key}",  # a random key names no flag: 404
            "PUT /api/v1/flags/{key}",  # a random URL key differs from the body's: 400
            "DELETE /api/v1/flags/{key}",
            "GET /api/v1/segments/{name}",  # the same for segments
            "PUT /api/v1/segments/{name}",
            "DELETE /api/v1/segments/{name}",
        }, answered


def _exercise(strategy: st.SearchStrategy[schemathesis.Case], token: str, seen: set[int]) -> None:
    """Send up to 20 generated cases of one operation, check each answer, note its status."""

    @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def exercise(case: schemathesis.Case) -> None:
        response = case.call_and_validate(
            headers={"Authorization": f"Bearer {token}"}, checks=CHECKS
        )
        seen.add(response.status_code)

    exercise()
