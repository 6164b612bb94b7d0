"""`vigil degradation` and `vigil flags` as a user runs them, against a real in-process agent."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.ports import free_port
from tests.integration.test_degradation_api import ADMIN, DISK, TOKEN, degradation, reference

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    """Webhook and admin tokens in the environment, as `degradation()` names them."""
    monkeypatch.setenv("VIGIL_TEST_HOOK", TOKEN)
    monkeypatch.setenv("VIGIL_TEST_ADMIN", ADMIN)


async def vigil(
    url: str, *args: str, token: str | None = ADMIN
) -> subprocess.CompletedProcess[str]:
    """Run `vigil ARGS` in a fresh interpreter against `url`, off the agent's event loop."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIGIL_ADMIN_TOKEN", "VIGIL_URL")}
    env["VIGIL_URL"] = url
    env["COLUMNS"] = "200"  # rich tables: one line per row
    if token is not None:
        env["VIGIL_ADMIN_TOKEN"] = token
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "agent", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def _json(done: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


async def test_status_json_shows_the_alert_demanded_level(start_agent) -> None:
    """`degradation status --json` prints the API's status: level, reasons and flags off."""
    agent = await start_agent(DISK, degradation=degradation())
    await agent.send(
        "POST", "/webhooks/alertmanager", reference("webhook_firing.json"), token=TOKEN
    )

    status = _json(await vigil(agent.base_url, "degradation", "status", "--json"))

    assert (status["level"], status["pinned"], status["flags_off"]) == (
        "minimal",
        False,
        ["recommendations"],
    )
    assert [r["alertname"] for r in status["reasons"]] == ["DemoDown"]  # type: ignore[attr-defined]


async def test_pin_and_unpin_change_the_level(start_agent) -> None:
    """`pin` sets the level over the alerts with the given actor and ttl; `unpin` restores it."""
    agent = await start_agent(DISK, degradation=degradation())
    await agent.send(
        "POST", "/webhooks/alertmanager", reference("webhook_firing.json"), token=TOKEN
    )

    pinned = await vigil(
        agent.base_url,
        "degradation",
        "pin",
        "full",
        "--reason",
        "false alarm",
        "--ttl",
        "30m",
        "--actor",
        "alice",
    )
    _, during = await agent.send("GET", "/api/v1/degradation")
    unpinned = await vigil(agent.base_url, "degradation", "unpin", "--reason", "checked")
    _, after = await agent.send("GET", "/api/v1/degradation")

    assert (pinned.returncode, unpinned.returncode) == (0, 0), pinned.stderr + unpinned.stderr
    assert "level: full" in pinned.stdout
    assert (during["level"], during["pin"]["actor"]) == ("full", "alice")
    assert during["pin"]["expires_at"] - during["pin"]["set_at"] == pytest.approx(1800)
    assert (after["level"], after["pinned"]) == ("minimal", False)


async def test_history_shows_the_pin(start_agent) -> None:
    """`history` lists the pin with its actor, reason and level change; `--json` the raw entries."""
    agent = await start_agent(DISK, degradation=degradation())
    await vigil(
        agent.base_url,
        "degradation",
        "pin",
        "maintenance",
        "--reason",
        "failover",
        "--ttl",
        "none",
        "--actor",
        "bob",
    )

    table = await vigil(agent.base_url, "degradation", "history", "--limit", "5")
    raw = _json(await vigil(agent.base_url, "degradation", "history", "--json"))

    assert table.returncode == 0, table.stderr
    assert "pin_set" in table.stdout
    assert "user:bob" in table.stdout
    assert "full -> maintenance" in table.stdout
    entries = raw["entries"]
    assert isinstance(entries, list)
    pin_set = next(e for e in entries if e["action"] == "pin_set")
    assert pin_set["pin"] == {**pin_set["pin"], "level": "maintenance", "expires_at": None}
    assert pin_set["actor"] == {"kind": "user", "id": "bob"}


async def test_history_filters_and_pages(start_agent) -> None:
    """`history` passes time, actor and kind filters to the agent, prints a cursor while older
    entries match, and `--cursor` continues from it; a bad filter exits 1 with the reason."""
    agent = await start_agent(DISK, degradation=degradation())
    await agent.send(
        "POST", "/webhooks/alertmanager", reference("webhook_firing.json"), token=TOKEN
    )
    for actor in ("bob", "carol"):
        await vigil(
            agent.base_url, "degradation", "pin", "degraded", "--reason", "r", "--actor", actor
        )

    mine = _json(await vigil(agent.base_url, "degradation", "history", "--actor", "bob", "--json"))
    pins = await vigil(
        agent.base_url,
        "degradation",
        "history",
        "--kind",
        "pin_set",
        "--since",
        "1h",
        "--limit",
        "1",
    )
    later = await vigil(agent.base_url, "degradation", "history", "--until", "1h", "--json")
    bad = await vigil(agent.base_url, "degradation", "history", "--since", "last tuesday")

    entries = mine["entries"]
    assert isinstance(entries, list)
    assert {e["actor"]["id"] for e in entries} == {"bob"}
    assert [e["action"] for e in entries] == ["level_changed", "pin_set"]  # newest first
    assert pins.returncode == 0, pins.stderr
    assert "user:carol" in pins.stdout
    assert "user:bob" not in pins.stdout
    cursor = pins.stdout.strip().splitlines()[-1].removeprefix("older entries: --cursor ")
    older = await vigil(
        agent.base_url, "degradation", "history", "--kind", "pin_set", "--cursor", cursor
    )
    assert "user:bob" in older.stdout
    assert "older entries" not in older.stdout
    assert _json(later) == {"entries": [], "next_cursor": None}
    assert bad.returncode == 1
    assert "since must be an RFC 3339 time with an offset" in bad.stderr


async def test_flags_set_list_and_evaluate(start_agent) -> None:
    """`flags set` creates then changes only the given fields; `list` and `evaluate` read them."""
    agent = await start_agent(DISK, degradation=degradation())

    created = await vigil(
        agent.base_url,
        "flags",
        "set",
        "search",
        "--enabled",
        "--rollout",
        "100",
        "--disabled-at-level",
        "degraded",
        "--description",
        "new search",
    )
    changed = await vigil(agent.base_url, "flags", "set", "search", "--stickiness", "account")
    child = await vigil(agent.base_url, "flags", "set", "search-v2", "--depends-on", "search")
    listed = _json(await vigil(agent.base_url, "flags", "list", "--json"))
    on = _json(
        await vigil(
            agent.base_url, "flags", "evaluate", "search", "--context", "account=a1", "--json"
        )
    )
    await agent.send(
        "POST", "/webhooks/alertmanager", reference("webhook_firing.json"), token=TOKEN
    )
    off = await vigil(agent.base_url, "flags", "evaluate", "search", "--context", "account=a1")

    assert [d.returncode for d in (created, changed, child)] == [0, 0, 0], created.stderr
    flags = {f["key"]: f for f in listed["flags"]}  # type: ignore[attr-defined]
    assert flags["search"] == {
        **flags["search"],
        "enabled": True,
        "rollout_percent": 100.0,
        "disabled_at_level": "degraded",
        "description": "new search",
        "stickiness": "account",
    }
    assert flags["search-v2"]["depends_on"] == [
        {"flag": "search", "enabled": True, "variant": None, "variants": []}
    ]
    assert (on["value"], on["reason"], on["level"]) == (True, "static", "full")
    assert off.stdout.strip() == "search: off (variant off, reason degraded) at level minimal"


async def test_segments_set_list_and_delete(start_agent, tmp_path: Path) -> None:
    """`flags segments set` writes rules from --rule or --file, `flags set --segment` names it,
    `list` shows who uses it, `delete` is refused while a flag names it and works after."""
    agent = await start_agent(DISK, degradation=degradation())
    cli = functools.partial(vigil, agent.base_url)

    made = await cli(
        "flags", "segments", "set", "beta", "--rule", "tier", "in", "beta,gold",
        "--description", "beta testers",
    )  # fmt: skip
    named = await cli("flags", "set", "search", "--enabled", "--segment", "beta")
    listed = await cli("flags", "segments", "list")
    in_use = await cli("flags", "segments", "delete", "beta")
    body = tmp_path / "beta.json"
    rule = {"attribute": "region", "operator": "str_starts_with", "values": ["eu,"]}
    body.write_text(json.dumps({"targeting": [rule]}), encoding="utf-8")
    from_file = await cli("flags", "segments", "set", "beta", "--file", str(body))
    answers = [
        _json(await cli("flags", "evaluate", "search", "--context", f"region={r}", "--json"))
        for r in ("eu,west", "us")
    ]
    unnamed = await cli("flags", "set", "search", "--no-segments")
    deleted = await cli("flags", "segments", "delete", "beta", "--actor", "erin")
    gone = _json(await cli("flags", "segments", "list", "--json"))

    assert [d.returncode for d in (made, named, from_file, unnamed, deleted)] == [0] * 5
    assert "tier in beta, gold" in made.stdout
    assert "beta testers" in made.stdout
    assert listed.stdout.split("\n")[2].replace("│", " ").split() == [
        "beta", "tier", "in", "beta,", "gold", "search", "beta", "testers",
    ]  # fmt: skip
    assert in_use.returncode == 1
    assert "cannot delete segment 'beta': flags naming it: search" in in_use.stderr
    assert [a["value"] for a in answers] == [True, False]  # type: ignore[index]
    assert deleted.stdout == "segment beta deleted\n"
    assert gone == {"segments": [], "used_by": {}}


async def test_flag_refused_by_the_agent_exits_1_with_its_error(start_agent) -> None:
    """A definition the agent refuses (a dependency cycle) exits 1 and prints the agent's error."""
    agent = await start_agent(DISK, degradation=degradation())

    done = await vigil(agent.base_url, "flags", "set", "loop", "--depends-on", "loop")

    assert done.returncode == 1
    assert "the agent answered 400: dependency cycle: loop -> loop" in done.stderr


async def test_missing_token_exits_1_with_the_401_message(start_agent) -> None:
    """Without VIGIL_ADMIN_TOKEN a pin is refused: exit 1, the agent's 401 message, and a hint."""
    agent = await start_agent(DISK, degradation=degradation())

    done = await vigil(agent.base_url, "degradation", "pin", "full", "--reason", "x", token=None)

    assert done.returncode == 1
    assert "the agent answered 401: admin API writes need" in done.stderr
    assert "VIGIL_ADMIN_TOKEN is not set" in done.stderr
    assert ADMIN not in done.stderr + done.stdout
    _, status = await agent.send("GET", "/api/v1/degradation")
    assert status["pinned"] is False


async def test_token_env_names_another_variable(start_agent) -> None:
    """`--token-env NAME` reads the admin token from NAME; the token is never printed."""
    agent = await start_agent(DISK, degradation=degradation())

    done = await vigil(
        agent.base_url,
        "degradation",
        "pin",
        "degraded",
        "--reason",
        "drill",
        "--token-env",
        "VIGIL_TEST_ADMIN",
        token=None,
    )

    assert done.returncode == 0, done.stderr
    assert ADMIN not in done.stdout + done.stderr
    _, status = await agent.send("GET", "/api/v1/degradation")
    assert status["level"] == "degraded"


async def test_unreachable_agent_exits_2_naming_the_url() -> None:
    """Nothing listening at the URL: exit 2 and a message naming it."""
    url = f"http://127.0.0.1:{free_port()}"

    done = await vigil(url, "degradation", "status")

    assert done.returncode == 2
    assert f"cannot reach the agent at {url}" in done.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("degradation", "pin", "full", "--reason", "x", "--ttl", "soon"),
        ("degradation", "pin", "chaos", "--reason", "x"),
        ("flags", "evaluate", "search", "--context", "no-equals-sign"),
        ("degradation", "status", "--url", "ftp://127.0.0.1:1"),
    ],
)
async def test_usage_errors_exit_3(args: tuple[str, ...]) -> None:
    """A bad ttl, level, context pair or URL exits 3 before anything is sent."""
    done = await vigil(f"http://127.0.0.1:{free_port()}", *args)

    assert done.returncode == 3, done.stderr


async def test_evaluate_prints_the_variant_payload(start_agent) -> None:
    """An answer whose variant carries a payload prints it, typed; `--json` has it too."""
    agent = await start_agent(DISK, degradation=degradation())
    variants = [{"name": "blue", "payload": {"type": "string", "value": "#00f"}}]
    status, body = await agent.send(
        "PUT", "/api/v1/flags/theme", {"enabled": True, "variants": variants}, token=ADMIN
    )
    assert status == 200, body

    line = await vigil(agent.base_url, "flags", "evaluate", "theme")
    answer = _json(await vigil(agent.base_url, "flags", "evaluate", "theme", "--json"))

    assert line.stdout.strip() == (
        "theme: on (variant blue, payload string '#00f', reason static) at level full"
    )
    assert answer["payload"] == {"type": "string", "value": "#00f"}
