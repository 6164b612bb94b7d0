"""The degradation engine behind the agent's webhook and admin API, driven over real HTTP."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace import SpanKind

from agent.database import Database, DatabaseInUseError
from agent.degradation.sqlitestore import SCHEMA
from tests.harness.checks import quiet_disk
from tests.harness.wait import FakeClock, poll_until

pytestmark = pytest.mark.integration

REFERENCE = Path(__file__).parents[1] / "fixtures" / "alertmanager"  # captured, AM 0.25
TOKEN = "hook-Token-77123"
ADMIN = "admin-Token-99881"
DISK = quiet_disk(5)


def reference(name: str) -> dict[str, Any]:
    """A real Alertmanager 0.25 payload captured on this machine."""
    return dict(json.loads((REFERENCE / name).read_text())["body"])


def degradation(**extra: Any) -> dict[str, Any]:
    """An enabled engine with one rule for the reference alert and a short hold."""
    return {
        "enabled": True,
        "webhook": {"bearer_token_env": "VIGIL_TEST_HOOK"},
        "admin_token_env": "VIGIL_TEST_ADMIN",
        "hold_seconds": 1,
        "tick_seconds": 0.2,
        "rules": [
            {
                "name": "demo",
                "matchers": ['alertname="DemoDown"'],
                "level": "minimal",
                "flags_off": ["recommendations"],
            }
        ],
        **extra,
    }


@pytest.fixture(autouse=True)
def tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    """Webhook and admin tokens in the environment, as the config names them."""
    monkeypatch.setenv("VIGIL_TEST_HOOK", TOKEN)
    monkeypatch.setenv("VIGIL_TEST_ADMIN", ADMIN)


async def _level(agent) -> str:
    _, status = await agent.send("GET", "/api/v1/degradation")
    return str(status["level"])


async def _wait_level(agent, level: str, within: float = 10.0) -> None:
    async def reached() -> bool:
        return await _level(agent) == level

    await poll_until(reached, within, interval=0.1, what=f"level {level}")


async def test_fire_escalates_and_resolve_recovers_after_hold(start_agent) -> None:
    """A firing webhook raises the level at once; the resolve brings it back after the hold."""
    clock = FakeClock()
    agent = await start_agent(DISK, degradation=degradation(), clock=clock)
    engine = agent.agent.degradation.engine

    status, body = await agent.send(
        "POST", "/webhooks/alertmanager", reference("webhook_firing.json"), token=TOKEN
    )
    assert (status, body["level"]) == (200, "minimal")
    _, state = await agent.send("GET", "/api/v1/degradation")
    assert state["flags_off"] == ["recommendations"]
    assert state["reasons"][0]["alertname"] == "DemoDown"

    status, body = await agent.send(
        "POST", "/webhooks/alertmanager", reference("webhook_resolved.json"), token=TOKEN
    )
    assert (status, body["level"]) == (200, "minimal")  # held
    clock.advance(0.5)  # half the hold
    await engine.tick()
    assert await _level(agent) == "minimal"
    clock.advance(0.6)  # past the hold: the agent's own tick recovers
    await _wait_level(agent, "full")
    _, audit = await agent.send("GET", "/api/v1/audit?limit=50")
    audit["entries"].reverse()  # oldest first
    actions = [e["action"] for e in audit["entries"]]
    assert actions.count("level_changed") == 2
    assert "alert_fired" in actions
    assert "alert_resolved" in actions
    changed = [e for e in audit["entries"] if e["action"] == "level_changed"]
    assert [(e["from"], e["to"], e["cause"]) for e in changed] == [
        ("full", "minimal", "alert"),
        ("minimal", "full", "recovery"),
    ]
    assert changed[0]["actor"]["kind"] == "alertmanager"
    assert changed[0]["trace_id"]
    _, metrics = await agent.get("/metrics")
    assert 'vigil_degradation_transitions_total{from="full",to="minimal",cause="alert"} 1.0' in (
        metrics
    )
    assert 'vigil_degradation_level{level="full"} 1.0' in metrics


async def test_webhook_and_transition_are_traced_and_logged(start_agent) -> None:
    """Each webhook is a server span, each transition a child span and one log line."""
    agent = await start_agent(DISK, degradation=degradation())

    for _ in range(2):
        await agent.send(
            "POST", "/webhooks/alertmanager", reference("webhook_firing.json"), token=TOKEN
        )

    spans = agent.spans()
    hooks = [s for s in spans if s.name == "POST /webhooks/alertmanager"]
    moves = [s for s in spans if s.name == "degradation transition"]
    assert len(hooks) == 2  # the repeat is traced too
    assert len(moves) == 1  # but it moved nothing
    assert hooks[0].kind is SpanKind.SERVER
    assert hooks[0].attributes["http.response.status_code"] == 200
    assert hooks[0].attributes["vigil.degradation.level"] == "minimal"
    assert moves[0].parent is not None
    assert moves[0].parent.span_id == hooks[0].context.span_id
    assert dict(moves[0].attributes) == {
        "vigil.degradation.from": "full",
        "vigil.degradation.to": "minimal",
        "vigil.degradation.cause": "alert",
        "vigil.degradation.version": 1,
    }
    _, audit = await agent.send("GET", "/api/v1/audit?limit=10")
    trace_id = format(hooks[0].context.trace_id, "032x")
    assert {e["trace_id"] for e in audit["entries"]} == {trace_id}
    lines = [json.loads(line) for line in agent.log.getvalue().splitlines()]
    changed = [line for line in lines if line["event"] == "degradation level changed"]
    assert len(changed) == 1
    assert changed[0]["previous_level"] == "full"
    assert changed[0]["degradation_level"] == "minimal"
    assert changed[0]["level"] == "warning"
    assert changed[0]["alerts"] == ["DemoDown"]
    assert changed[0]["trace_id"] == trace_id


async def test_concurrent_transitions_log_their_own_trace(start_agent) -> None:
    """Webhooks committed together each log their transition under their own trace id."""
    rules = [
        {"name": "slow", "matchers": ['alertname="SlowDown"'], "level": "degraded"},
        {"name": "demo", "matchers": ['alertname="DemoDown"'], "level": "minimal"},
    ]
    agent = await start_agent(DISK, degradation=degradation(rules=rules))
    slow = reference("webhook_firing.json")
    slow["alerts"][0]["labels"]["alertname"] = "SlowDown"
    slow["alerts"][0]["fingerprint"] = "5105d0e000000001"

    # In whichever order they are committed, both may change the level.
    await asyncio.gather(
        agent.send("POST", "/webhooks/alertmanager", slow, token=TOKEN),
        agent.send("POST", "/webhooks/alertmanager", reference("webhook_firing.json"), token=TOKEN),
    )

    _, audit = await agent.send("GET", "/api/v1/audit?limit=200")
    by_move = {
        (e["from"], e["to"], e["version"]): e["trace_id"]
        for e in audit["entries"]
        if e["action"] == "level_changed" and e["cause"] == "alert"
    }
    lines = [json.loads(line) for line in agent.log.getvalue().splitlines()]
    logged = [
        line
        for line in lines
        if line["event"] == "degradation level changed" and line["cause"] == "alert"
    ]
    assert len(logged) == len(by_move) >= 1
    traces = {
        (line["previous_level"], line["degradation_level"], line["trace_id"]) for line in logged
    }
    assert traces == {(before, after, trace) for (before, after, _), trace in by_move.items()}


async def test_duplicates_and_stale_resolves_are_no_ops(start_agent) -> None:
    """Duplicates change nothing; a resolve for an older episode leaves the newer one firing."""
    clock = FakeClock()
    agent = await start_agent(DISK, degradation=degradation(), clock=clock)
    firing = reference("webhook_firing.json")
    newer = copy.deepcopy(firing)
    newer["alerts"][0]["startsAt"] = "2026-11-28T15:00:00.000Z"
    old_resolve = reference("webhook_resolved.json")

    for body in (firing, firing, newer, old_resolve, newer):
        status, _ = await agent.send("POST", "/webhooks/alertmanager", body, token=TOKEN)
        assert status == 200
    clock.advance(1.5)  # longer than the hold
    await agent.agent.degradation.engine.tick()

    assert await _level(agent) == "minimal"


@pytest.mark.parametrize(
    ("headers", "token"),
    [({}, None), ({}, "wrong-token"), ({"Authorization": "Basic dXNlcjpwdw=="}, None)],
)
async def test_webhook_refuses_bad_credentials(
    start_agent, headers: dict[str, str], token: str | None
) -> None:
    """Missing or wrong credentials get 401 and change nothing."""
    agent = await start_agent(DISK, degradation=degradation())

    status, _ = await agent.send(
        "POST",
        "/webhooks/alertmanager",
        reference("webhook_firing.json"),
        token=token,
        headers=headers,
    )

    assert status == 401
    assert await _level(agent) == "full"


async def test_basic_auth_webhook(start_agent, monkeypatch: pytest.MonkeyPatch) -> None:
    """Basic credentials work when configured instead of a Bearer token."""
    monkeypatch.setenv("VIGIL_TEST_BASIC", "basic-Pw-123")
    agent = await start_agent(
        DISK,
        degradation=degradation(
            webhook={"basic_username": "alertmanager", "basic_password_env": "VIGIL_TEST_BASIC"}
        ),
    )
    good = base64.b64encode(b"alertmanager:basic-Pw-123").decode()

    status, _ = await agent.send(
        "POST",
        "/webhooks/alertmanager",
        reference("webhook_firing.json"),
        headers={"Authorization": f"Basic {good}"},
    )

    assert status == 200
    assert await _level(agent) == "minimal"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b.update(version="3"),
        lambda b: b.update(alerts="nope"),
        lambda b: b["alerts"][0].pop("fingerprint"),
        lambda b: b["alerts"][0].update(status="flapping"),
        lambda b: b["alerts"][0].update(startsAt="yesterday"),
        lambda b: b.pop("status"),
        lambda b: b.update(truncatedAlerts=2**64),  # past int64: no JSON or OTLP writer takes it
    ],
)
async def test_bad_payloads_get_400_and_change_nothing(start_agent, mutate: Any) -> None:
    """Wrong version or shape is a 400 naming the problem; the state version does not move."""
    agent = await start_agent(DISK, degradation=degradation())
    body = reference("webhook_firing.json")
    mutate(body)
    _, before = await agent.send("GET", "/api/v1/degradation")

    status, answer = await agent.send("POST", "/webhooks/alertmanager", body, token=TOKEN)

    _, after = await agent.send("GET", "/api/v1/degradation")
    assert status == 400
    assert answer["details"]
    assert after["version"] == before["version"]


async def test_not_json_and_too_large(start_agent) -> None:
    """A body that is not JSON is a 400; one over the cap is a 413."""
    agent = await start_agent(
        DISK,
        degradation=degradation(
            webhook={"bearer_token_env": "VIGIL_TEST_HOOK", "max_body_bytes": 2048}
        ),
    )

    bad, _ = await agent.send("POST", "/webhooks/alertmanager", raw=b"{not json", token=TOKEN)
    big, _ = await agent.send("POST", "/webhooks/alertmanager", raw=b"x" * 5000, token=TOKEN)

    assert (bad, big) == (400, 413)


async def test_pin_and_unpin_need_the_admin_token(start_agent) -> None:
    """Pinning needs the admin token; a pin wins over alerts and unpinning restores them."""
    agent = await start_agent(DISK, degradation=degradation())
    await agent.send(
        "POST", "/webhooks/alertmanager", reference("webhook_firing.json"), token=TOKEN
    )
    pin = {"level": "full", "reason": "false alarm", "ttl_seconds": 600, "actor": "alice"}

    refused, _ = await agent.send("POST", "/api/v1/degradation/pin", pin)
    ok, pinned = await agent.send("POST", "/api/v1/degradation/pin", pin, token=ADMIN)
    invalid, _ = await agent.send(
        "POST", "/api/v1/degradation/pin", {**pin, "level": "chaos"}, token=ADMIN
    )
    _, unpinned = await agent.send(
        "POST", "/api/v1/degradation/unpin", {"reason": "done", "actor": "alice"}, token=ADMIN
    )

    assert (refused, ok, invalid) == (401, 200, 400)
    assert (pinned["level"], pinned["pin"]["actor"]) == ("full", "alice")
    assert (unpinned["level"], unpinned["pinned"]) == ("minimal", False)
    _, audit = await agent.send("GET", "/api/v1/audit")
    causes = [e.get("cause") for e in audit["entries"] if e["action"] == "level_changed"]
    assert causes == ["unpin", "pin", "alert"]  # newest first


async def test_pin_times_are_exported(start_agent) -> None:
    """/metrics carries when the pin was set and when it ends; neither without a pin."""
    agent = await start_agent(DISK, degradation=degradation())
    planned = {"level": "maintenance", "reason": "window", "ttl_seconds": 8 * 3600}

    _, pinned = await agent.send("POST", "/api/v1/degradation/pin", planned, token=ADMIN)
    _, with_end = await agent.get("/metrics")
    forever = {"level": "maintenance", "reason": "until fixed", "ttl_seconds": None}
    await agent.send("POST", "/api/v1/degradation/pin", forever, token=ADMIN)
    _, without_end = await agent.get("/metrics")
    await agent.send("POST", "/api/v1/degradation/unpin", {"reason": "done"}, token=ADMIN)
    _, unpinned = await agent.get("/metrics")

    def sample(metrics: str, name: str) -> float | None:
        values = [float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(name)]
        return values[0] if values else None

    expiry, set_at = (
        "vigil_degradation_pin_expiry_timestamp_seconds",
        ("vigil_degradation_pin_set_timestamp_seconds"),
    )
    assert sample(with_end, expiry) == pytest.approx(pinned["pin"]["expires_at"])
    assert sample(with_end, set_at) == pytest.approx(pinned["pin"]["set_at"])
    assert sample(without_end, expiry) is None
    assert sample(without_end, set_at) is not None
    assert (sample(unpinned, expiry), sample(unpinned, set_at)) == (None, None)


async def test_flags_follow_the_level(start_agent) -> None:
    """A flag off at `degraded` answers on at full and off once an alert raises the level."""
    agent = await start_agent(DISK, degradation=degradation())
    flag = {"enabled": True, "rollout_percent": 100, "disabled_at_level": "degraded"}

    put, _ = await agent.send("PUT", "/api/v1/flags/search", flag, token=ADMIN)
    _, before = await agent.send(
        "POST", "/api/v1/flags/search/evaluate", {"context": {"user_id": "u1"}}
    )
    await agent.send(
        "POST", "/webhooks/alertmanager", reference("webhook_firing.json"), token=TOKEN
    )
    _, after = await agent.send(
        "POST", "/api/v1/flags/search/evaluate", {"context": {"user_id": "u1"}}
    )

    assert put == 200
    assert (before["value"], after["value"], after["reason"]) == (True, False, "degraded")


async def test_flag_cycles_are_refused(start_agent) -> None:
    """A flag dependency cycle is refused with 400 and the flag set stays as it was."""
    agent = await start_agent(DISK, degradation=degradation())
    await agent.send("PUT", "/api/v1/flags/a", {"enabled": True}, token=ADMIN)
    await agent.send(
        "PUT", "/api/v1/flags/b", {"enabled": True, "depends_on": [{"flag": "a"}]}, token=ADMIN
    )

    status, body = await agent.send(
        "PUT", "/api/v1/flags/a", {"enabled": True, "depends_on": [{"flag": "b"}]}, token=ADMIN
    )

    _, a = await agent.send("GET", "/api/v1/flags/a")
    assert status == 400
    assert "cycle" in body["error"]
    assert a["depends_on"] == []


async def test_state_survives_restart(start_agent, tmp_path: Path) -> None:
    """A second agent over the same data directory starts at the stored level and alerts, with
    the stored flags."""
    settings = degradation(hold_seconds=600)
    first = await start_agent(DISK, degradation=settings)
    await first.send(
        "POST", "/webhooks/alertmanager", reference("webhook_firing.json"), token=TOKEN
    )
    put, _ = await first.send("PUT", "/api/v1/flags/search", {"enabled": True}, token=ADMIN)
    assert put == 200
    await first.agent.stop()

    second = await start_agent(DISK, degradation=settings)

    _, status = await second.send("GET", "/api/v1/degradation")
    assert status["level"] == "minimal"
    assert status["active_alerts"][0]["labels"]["alertname"] == "DemoDown"
    _, flag = await second.send("GET", "/api/v1/flags/search")
    assert flag["enabled"] is True
    stored = {p.name for p in (tmp_path / "data").iterdir()}
    assert "vigil.db" in stored
    assert not stored & {"degradation.json", "audit.jsonl", "flags.json"}  # the files are gone


async def test_a_second_agent_on_one_database_refuses_to_start(start_agent, tmp_path: Path) -> None:
    """While one agent runs over a data directory, another one started over it stops at start
    with DatabaseInUseError naming the database and the running agent; once the first has
    stopped, it starts."""
    first = await start_agent(DISK, degradation=degradation())
    with pytest.raises(DatabaseInUseError) as caught:
        await start_agent(DISK, degradation=degradation())
    assert f"{tmp_path / 'data' / 'vigil.db'} is in use by a running agent (pid " in str(
        caught.value
    )
    await first.agent.stop()
    second = await start_agent(DISK, degradation=degradation())
    assert (await second.send("GET", "/api/v1/degradation"))[0] == 200


async def test_a_flag_write_keeps_the_audit_of_the_change_before_it(start_agent) -> None:
    """The audit entries of a transition stay in the trail after a flag write follows it, and
    after a restart."""
    settings = degradation(hold_seconds=600)
    first = await start_agent(DISK, degradation=settings)
    await first.send(
        "POST", "/webhooks/alertmanager", reference("webhook_firing.json"), token=TOKEN
    )
    await first.send("PUT", "/api/v1/flags/search", {"enabled": True}, token=ADMIN)
    _, before = await first.send("GET", "/api/v1/audit?limit=50")
    await first.agent.stop()
    second = await start_agent(DISK, degradation=settings)
    _, after = await second.send("GET", "/api/v1/audit?limit=50")

    actions = [e["action"] for e in before["entries"]]
    assert actions == ["flag_set", "flags_changed", "level_changed", "alert_fired"]
    assert after["entries"] == before["entries"]


async def test_rule_flags_off_switch_flags_off(start_agent) -> None:
    """A flag a firing rule names in flags_off answers off (degraded) until the alert resolves."""
    agent = await start_agent(DISK, degradation=degradation(hold_seconds=0))
    await agent.send("PUT", "/api/v1/flags/recommendations", {"enabled": True}, token=ADMIN)
    ask = {"context": {"user_id": "u1"}}

    _, before = await agent.send("POST", "/api/v1/flags/recommendations/evaluate", ask)
    await agent.send(
        "POST", "/webhooks/alertmanager", reference("webhook_firing.json"), token=TOKEN
    )
    _, during = await agent.send("POST", "/api/v1/flags/recommendations/evaluate", ask)
    await agent.send(
        "POST", "/webhooks/alertmanager", reference("webhook_resolved.json"), token=TOKEN
    )
    await _wait_level(agent, "full")
    _, after = await agent.send("POST", "/api/v1/flags/recommendations/evaluate", ask)

    assert (before["value"], during["value"], after["value"]) == (True, False, True)
    assert during["reason"] == "degraded"


async def test_empty_token_is_refused_at_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty webhook token is a config error, never a credential that matches nothing."""
    from agent.config import ConfigError
    from tests.integration.conftest import agent_config

    monkeypatch.setenv("VIGIL_TEST_HOOK", "")

    with pytest.raises(ConfigError, match="VIGIL_TEST_HOOK is empty"):
        agent_config(DISK, tmp_path, degradation=degradation())


async def test_unpin_without_pin_changes_nothing(start_agent) -> None:
    """Unpinning when nothing is pinned neither bumps the version nor writes audit."""
    agent = await start_agent(DISK, degradation=degradation())
    _, before = await agent.send("GET", "/api/v1/degradation")

    status, after = await agent.send("POST", "/api/v1/degradation/unpin", {}, token=ADMIN)

    _, audit = await agent.send("GET", "/api/v1/audit")
    assert status == 200
    assert after["version"] == before["version"]
    assert audit["entries"] == []


def _run_over(data: Path, tmp_path: Path) -> Any:
    """`vigil run` over `data` in a fresh interpreter, expected to stop at start."""
    import subprocess
    import sys

    import yaml

    config = tmp_path / "vigil.yaml"
    document = {
        "agent": {"data_dir": str(data), "listen_port": 0},
        "degradation": degradation(),
        "checks": DISK,
    }
    config.write_text(yaml.safe_dump(document))
    return subprocess.run(
        [sys.executable, "-m", "agent", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_corrupt_state_file_refuses_to_start(tmp_path: Path) -> None:
    """A damaged state file of the previous release stops `vigil run` with a message naming
    it, and stays untouched (nothing is imported)."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "degradation.json").write_text("{ not json")

    done = _run_over(data, tmp_path)

    assert done.returncode == 1
    assert "degradation.json: not valid JSON" in done.stderr
    assert "Traceback" not in done.stderr
    assert (data / "degradation.json").read_text() == "{ not json"


def test_a_database_of_a_newer_vigil_stops_the_agent_with_exit_3(tmp_path: Path) -> None:
    """A database whose degradation schema is newer than the agent knows stops `vigil run`
    with exit 3 and a message naming both versions; the database is not changed."""
    import sqlite3

    data = tmp_path / "data"
    made = Database(data / "vigil.db", [SCHEMA])
    made.call(
        lambda db: db.execute("UPDATE schema_versions SET version = ?", (SCHEMA.version + 1,))
    )
    made.release()
    before = (data / "vigil.db").read_bytes()

    done = _run_over(data, tmp_path)

    assert done.returncode == 3, done.stderr
    newer = f"degradation schema {SCHEMA.version + 1} is newer than this agent knows"
    assert f"vigil: cannot start: {data / 'vigil.db'}: {newer} ({SCHEMA.version})" in done.stderr
    assert "Traceback" not in done.stderr
    assert (data / "vigil.db").read_bytes() == before
    db = sqlite3.connect(data / "vigil.db")
    assert db.execute("SELECT version FROM schema_versions").fetchall() == [(SCHEMA.version + 1,)]
    db.close()


async def test_every_audit_entry_is_also_a_log_line(start_agent) -> None:
    """Each stored audit entry is logged once as `audit entry` (logger vigil.audit) holding the
    entry exactly as the API returns it, so log shippers see the whole trail."""
    agent = await start_agent(DISK, degradation=degradation())
    await agent.send(
        "POST", "/webhooks/alertmanager", reference("webhook_firing.json"), token=TOKEN
    )
    pin = {"level": "maintenance", "reason": "drill", "actor": "alice"}
    await agent.send("POST", "/api/v1/degradation/pin", pin, token=ADMIN)
    await agent.send("PUT", "/api/v1/flags/search", {"enabled": True}, token=ADMIN)

    _, audit = await agent.send("GET", "/api/v1/audit")
    lines = [json.loads(line) for line in agent.log.getvalue().splitlines()]
    logged = [line for line in lines if line["event"] == "audit entry"]

    assert {line["logger"] for line in logged} == {"vigil.audit"}
    assert [line["audit"] for line in logged] == audit["entries"][::-1]
    assert len(logged) >= 5  # fired, level, flags, pin, level, flag_set


async def test_repeats_store_nothing_without_expiry(start_agent, tmp_path: Path) -> None:
    """A repeated notification leaves the version alone unless alert expiry needs last_seen."""
    plain = await start_agent(DISK, degradation=degradation())
    expiring = await start_agent(
        DISK,
        degradation=degradation(alert_expiry_seconds=3600),
        data_dir=str(tmp_path / "expiring"),
    )
    firing = reference("webhook_firing.json")
    versions = []
    for agent in (plain, expiring):
        await agent.send("POST", "/webhooks/alertmanager", firing, token=TOKEN)
        _, first = await agent.send("GET", "/api/v1/degradation")
        status, answer = await agent.send("POST", "/webhooks/alertmanager", firing, token=TOKEN)
        assert (status, answer["changes"]) == (200, {"duplicate": 1})
        _, second = await agent.send("GET", "/api/v1/degradation")
        versions.append(second["version"] - first["version"])

    assert versions == [0, 1]


async def test_flag_writes_name_their_actor(start_agent) -> None:
    """A flag write audits the `actor` query parameter; a malformed actor is refused."""
    agent = await start_agent(DISK, degradation=degradation())

    ok, _ = await agent.send(
        "PUT", "/api/v1/flags/search?actor=alice", {"enabled": True}, token=ADMIN
    )
    bad, _ = await agent.send(
        "PUT", "/api/v1/flags/search?actor=bob%20smith", {"enabled": False}, token=ADMIN
    )
    _, audit = await agent.send("GET", "/api/v1/audit")
    _, flag = await agent.send("GET", "/api/v1/flags/search")

    assert (ok, bad) == (200, 400)
    assert [e["actor"] for e in audit["entries"] if e["action"] == "flag_set"] == [
        {"kind": "user", "id": "alice"}
    ]
    assert flag["enabled"] is True


BETA = {
    "description": "Beta testers",
    "targeting": [{"attribute": "tier", "operator": "in", "values": ["beta"]}],
}


async def test_a_segment_is_shared_by_the_flags_naming_it(start_agent) -> None:
    """Two flags name one segment: changing the segment changes both answers at once, the
    change is audited with the flags it touches, and everything survives a restart."""
    first = await start_agent(DISK, degradation=degradation())
    put, stored = await first.send("PUT", "/api/v1/segments/beta?actor=alice", BETA, token=ADMIN)
    assert (put, stored["name"]) == (200, "beta")
    await first.send(
        "PUT", "/api/v1/flags/search", {"enabled": True, "segments": ["beta"]}, token=ADMIN
    )
    strategy = {"rollout_percent": 100, "stickiness": "default", "segments": ["beta"]}
    await first.send(
        "PUT", "/api/v1/flags/cart", {"enabled": True, "strategies": [strategy]}, token=ADMIN
    )

    async def answers(agent: Any, tier: str) -> list[bool]:
        values = []
        for key in ("search", "cart"):
            _, got = await agent.send(
                "POST", f"/api/v1/flags/{key}/evaluate", {"context": {"tier": tier}}
            )
            values.append(got["value"])
        return values

    assert await answers(first, "beta") == [True, True]
    assert await answers(first, "gold") == [False, False]
    gold = {**BETA, "targeting": [{**BETA["targeting"][0], "values": ["gold"]}]}
    assert (await first.send("PUT", "/api/v1/segments/beta", gold, token=ADMIN))[0] == 200
    assert await answers(first, "beta") == [False, False]
    assert await answers(first, "gold") == [True, True]

    _, listed = await first.send("GET", "/api/v1/segments")
    assert listed["used_by"] == {"beta": ["search", "cart"]}
    _, audit = await first.send("GET", "/api/v1/audit?kind=segment_set")
    created, changed = reversed(audit["entries"])
    assert created["actor"] == {"kind": "user", "id": "alice"}
    assert (created["segments"], created["flags"], created["before"]) == (["beta"], [], {})
    assert changed["flags"] == ["cart", "search"]
    assert changed["after"]["beta"]["targeting"][0]["values"] == ["gold"]
    await first.agent.stop()

    second = await start_agent(DISK, degradation=degradation())
    assert await answers(second, "gold") == [True, True]
    _, segment = await second.send("GET", "/api/v1/segments/beta")
    assert (segment["name"], segment["targeting"][0]["values"]) == ("beta", ["gold"])


async def test_segment_writes_that_would_break_a_flag_are_refused(start_agent) -> None:
    """A flag naming an unknown segment, and deleting a segment a flag names, are refused with
    400 and change nothing; an unused segment deletes; unknown ones are 404."""
    agent = await start_agent(DISK, degradation=degradation())
    unknown, body = await agent.send(
        "PUT", "/api/v1/flags/search", {"enabled": True, "segments": ["beta"]}, token=ADMIN
    )
    assert (unknown, body["error"]) == (400, "flag 'search' names unknown segment 'beta'")
    assert (await agent.send("GET", "/api/v1/flags/search"))[0] == 404

    await agent.send("PUT", "/api/v1/segments/beta", BETA, token=ADMIN)
    await agent.send("PUT", "/api/v1/flags/search", {"segments": ["beta"]}, token=ADMIN)
    used, body = await agent.send("DELETE", "/api/v1/segments/beta", token=ADMIN)
    assert (used, body["error"]) == (400, "cannot delete segment 'beta': flags naming it: search")
    assert (await agent.send("GET", "/api/v1/segments/beta"))[0] == 200

    no_token, _ = await agent.send("PUT", "/api/v1/segments/other", BETA)
    other_name, body = await agent.send(
        "PUT", "/api/v1/segments/beta", {**BETA, "name": "gamma"}, token=ADMIN
    )
    invalid, _ = await agent.send("PUT", "/api/v1/segments/Beta", BETA, token=ADMIN)
    assert (no_token, other_name, invalid) == (401, 400, 400)
    assert body["error"] == "the body's name differs from the URL's"

    await agent.send("PUT", "/api/v1/flags/search", {"segments": []}, token=ADMIN)
    deleted, body = await agent.send("DELETE", "/api/v1/segments/beta?actor=bob", token=ADMIN)
    assert (deleted, body) == (200, {"deleted": "beta"})
    assert (await agent.send("DELETE", "/api/v1/segments/beta", token=ADMIN))[0] == 404
    assert (await agent.send("GET", "/api/v1/segments/beta"))[0] == 404
    assert await agent.send("GET", "/api/v1/segments") == (200, {"segments": [], "used_by": {}})
    _, audit = await agent.send("GET", "/api/v1/audit?kind=segment_deleted")
    assert audit["entries"][0]["actor"] == {"kind": "user", "id": "bob"}
