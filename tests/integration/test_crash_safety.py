"""Crash safety of the degradation state: SIGKILL the agent process in the middle of a burst of
webhook-driven transitions; the stored state always loads, and no acknowledged change is lost."""

from __future__ import annotations

import asyncio
import datetime as dt
import http.client
import json
import random
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.degradation.sqlitestore import SqliteStateStore
from agent.degradation.state import State
from tests.harness.agent_process import AgentProcess, start_agent_process
from tests.harness.httpclient import request
from tests.harness.wait import poll_until_sync

pytestmark = pytest.mark.integration

REPO = Path(__file__).parents[2]
HOOK_TOKEN = "crash-Hook-5521"
SEED = 20261128  # the kill points; timing adds its own randomness on top
ROUNDS = 5
SENDERS = 3
# Alert names and the level each demands; D matches no rule, so it moves nothing.
NAMES = {"A": "degraded", "B": "minimal", "C": "maintenance", "D": None}
EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def call(method: str, url: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    """One JSON request; status and the decoded answer. Connection errors propagate."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    status, raw = request(method, url, data, headers, timeout=10)
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def _acknowledged(senders: list[Sender], count: int) -> Callable[[], bool]:
    """A condition: `senders` have had at least `count` webhooks acknowledged between them."""
    return lambda: sum(len(s.acks) for s in senders) >= count


# --- the burst ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ack:
    """A webhook the agent answered 200: what it changed and the state it reported."""

    version: int
    level: str
    fingerprint: str
    status: str
    changes: dict[str, int]


class Sender(threading.Thread):
    """Fires and resolves episodes of four alerts, one webhook per alert, until the agent dies."""

    def __init__(self, url: str, name: str, first_episode: int, rng: random.Random) -> None:
        super().__init__(name=name, daemon=True)
        self.url = url
        self.first_episode = first_episode
        self.rng = rng
        self.acks: list[Ack] = []
        self.refused: list[tuple[int, Any]] = []

    def run(self) -> None:
        """Alternate firing and resolved for increasing `startsAt`; stop at the first I/O error."""
        alerts = [(f"{self.name}-{name}", name) for name in NAMES]
        episode = self.first_episode
        try:
            while True:
                episode += 1
                for status in ("firing", "resolved"):
                    self.rng.shuffle(alerts)
                    for fingerprint, name in alerts:
                        self._send(fingerprint, name, status, episode)
        except (OSError, ValueError, http.client.HTTPException):  # URLError is an OSError
            return  # killed mid-request: that one was never acknowledged

    def _send(self, fingerprint: str, name: str, status: str, episode: int) -> None:
        starts = (EPOCH + dt.timedelta(seconds=episode)).isoformat().replace("+00:00", "Z")
        payload = {
            "version": "4",
            "status": status,
            "receiver": "vigil",
            "groupKey": f'{{}}:{{alertname="{name}"}}',
            "alerts": [
                {
                    "status": status,
                    "labels": {"alertname": name, "sender": self.name},
                    "startsAt": starts,
                    "endsAt": "0001-01-01T00:00:00Z",
                    "fingerprint": fingerprint,
                }
            ],
        }
        code, answer = call("POST", self.url + "/webhooks/alertmanager", payload, HOOK_TOKEN)
        if code == 200:
            self.acks.append(
                Ack(answer["version"], answer["level"], fingerprint, status, answer["changes"])
            )
        else:
            self.refused.append((code, answer))


# --- what the database holds ---------------------------------------------------------------
def level_at(audit: list[dict[str, Any]], version: int) -> str:
    """The level the audit's `level_changed` entries say the state had at `version`."""
    level = "full"
    for entry in audit:
        if entry["action"] == "level_changed" and entry["version"] <= version:
            level = entry["to"]
    return str(level)


def recover(data: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """What a restart over the database recovers (SQLite replays the WAL's committed
    transactions on open); the database passes SQLite's integrity check."""

    async def read() -> dict[str, Any] | None:
        store = SqliteStateStore.at(data / "vigil.db")
        try:
            return await store.load()
        finally:
            await store.close()

    recovered = asyncio.run(read())
    db = sqlite3.connect(data / "vigil.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        db.close()
    return recovered, restarted(data)


def restarted(data: Path) -> list[dict[str, Any]]:
    """The audit, oldest first, read beside a running agent's connection (as WAL mode allows)."""
    db = sqlite3.connect(f"file:{data / 'vigil.db'}?mode=ro", uri=True)
    try:
        return [json.loads(row[0]) for row in db.execute("SELECT entry FROM audit ORDER BY id")]
    finally:
        db.close()


@pytest.fixture
def agents() -> Iterator[list[AgentProcess]]:
    """Agents a test starts; any still running at the end is killed."""
    started: list[AgentProcess] = []
    yield started
    for agent in started:
        if agent.proc.poll() is None:
            agent.proc.kill()
            agent.proc.wait()


def test_sigkill_mid_burst_loses_no_acknowledged_transition(
    tmp_path: Path, agents: list[AgentProcess]
) -> None:
    """After SIGKILL mid-burst the state loads, holds every acknowledged version and level, the
    audit has every acknowledged change, and a restart serves the stored version."""
    data = tmp_path / "data"
    config = {
        "agent": {
            "listen_port": 0,
            "data_dir": str(data),
            "startup_grace_seconds": 0,
            "log_format": "json",
        },
        "checks": [{"name": "disk", "kind": "disk", "path": "/", "interval_seconds": 30}],
        "degradation": {
            "enabled": True,
            "webhook": {"bearer_token_env": "VIGIL_CRASH_HOOK"},
            "hold_seconds": 0,  # every resolve of the worst alert is a transition at once
            "flap_max_changes": 1_000_000,  # and the flap guard never holds one back
            "flap_window_seconds": 1,
            "rules": [
                {"name": f"rule-{name}", "matchers": [f'alertname="{name}"'], "level": level}
                for name, level in NAMES.items()
                if level is not None
            ],
        },
    }
    env = {"VIGIL_CRASH_HOOK": HOOK_TOKEN}
    rng = random.Random(SEED)
    stored: State | None = None

    for round_ in range(ROUNDS + 1):
        agent = start_agent_process(tmp_path / "agent", config, env)
        agents.append(agent)
        code, status = call("GET", agent.url + "/api/v1/degradation")
        assert code == 200
        if stored is not None:  # the restart serves what the killed agent had stored
            assert (status["version"], status["level"]) == (stored.version, stored.level.label)
            kept = restarted(data)
            assert max(e["version"] for e in kept) <= stored.version  # unreached ones trimmed
        if round_ == ROUNDS:
            break

        senders = [
            Sender(agent.url, f"s{i}", (round_ + 1) * 1_000_000, random.Random(rng.random()))
            for i in range(SENDERS)
        ]
        for sender in senders:
            sender.start()
        # Kill after a random number of acknowledgements (about 0.3 to 1.5 s of burst here):
        # a point in the burst that a slower machine reaches later, not before it began.
        kill_after = rng.randint(100, 500)
        poll_until_sync(
            _acknowledged(senders, kill_after),
            60,
            interval=0.01,
            what=f"{kill_after} acknowledged webhooks",
        )
        assert all(s.is_alive() for s in senders), "the burst ended before the kill"
        agent.proc.kill()
        agent.proc.wait()
        for sender in senders:
            sender.join(15)
        acks = [a for s in senders for a in s.acks]
        where = f"round {round_}, kill after {kill_after} acks, {len(acks)} acknowledged"
        assert [r for s in senders for r in s.refused] == [], where
        assert acks, where

        recovered, audit = recover(data)
        assert recovered is not None, where
        stored = State.from_json(recovered)
        assert stored.version >= max(a.version for a in acks), where
        assert len({e["id"] for e in audit}) == len(audit), where
        by_version: dict[int, list[dict[str, Any]]] = {}
        for entry in audit:
            by_version.setdefault(entry["version"], []).append(entry)
        for ack in acks:
            assert ack.changes == {"fired" if ack.status == "firing" else "resolved": 1}, where
            assert level_at(audit, ack.version) == ack.level, (where, ack)
            entries = by_version.get(ack.version, [])
            assert any(
                e["action"] == ("alert_fired" if ack.status == "firing" else "alert_resolved")
                and e["fingerprint"] == ack.fingerprint
                and e["actor"]["kind"] == "alertmanager"
                for e in entries
            ), (where, ack, entries)
        assert level_at(audit, stored.version) == stored.level.label, where
        assert len({a.level for a in acks}) > 1, where  # the burst did move the level

    changes = [e for e in recover(data)[1] if e["action"] == "level_changed"]
    assert len(changes) >= ROUNDS * 4
