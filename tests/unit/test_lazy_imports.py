"""`vigil run` imports the drivers and stores its configuration uses, and none of the others.

Each case runs `vigil run` (`agent.cli.main`, the console script's entry point) in a child
process on a config of its own, lets every check run once, stops it with SIGTERM and reads the
names in `sys.modules` that the child wrote at exit. The targets are closed loopback ports: the
probes run and fail, and no service is needed.
"""

from __future__ import annotations

import inspect
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.config.checks import KINDS
from agent.probes import PROBES
from tests.harness.wait import poll_until_sync

REPO = Path(__file__).parents[2]
CLOSED = "127.0.0.1:1"  # nothing listens on port 1: every connect is refused at once
DRIVERS = ("redis", "psycopg", "psycopg_pool", "cryptography.x509")
# The probes' shared connection modules: loaded with the first kind that needs them.
CONNECTIONS = ("agent.probes.resp", "agent.probes.pgpool")
# `vigil run --config PATH`, writing the names of the imported modules to OUT at exit.
_RUN = """
import atexit, json, sys
config, out = sys.argv[1:]
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
from agent.cli import main
main(["run", "--config", config])
"""


def _checks(tmp_path: Path, *kinds: str) -> list[dict[str, Any]]:
    """One check of each kind in `kinds`, aimed at a closed port."""
    host, port = CLOSED.split(":")
    keys = {
        "http": {"url": f"http://{CLOSED}/"},
        "tcp": {"host": host, "port": int(port)},
        "disk": {"path": str(tmp_path)},
        "redis": {"url": f"redis://{CLOSED}/0"},
        "postgres": {"dsn": f"host={host} port={port} dbname=vigil user=vigil"},
        "redis_list": {"url": f"redis://{CLOSED}/0", "keys": ["celery"], "capacity": 10},
        "redis_stream": {
            "url": f"redis://{CLOSED}/0",
            "stream": "orders",
            "group": "billing",
            "capacity": 10,
        },
        "postgres_queue": {
            "dsn": f"host={host} port={port} dbname=vigil user=vigil",
            "query": "SELECT 0, NULL",
            "capacity": 10,
        },
    }
    return [
        {"name": f"{kind}-check", "kind": kind, "interval_seconds": 30, "timeout_seconds": 2}
        | keys[kind]
        for kind in kinds
    ]


def _imported(tmp_path: Path, config: dict[str, Any]) -> set[str]:
    """The modules `vigil run` imported on `config`, by the time every check has run once."""
    config = {"agent": {"listen_port": 0, "data_dir": str(tmp_path / "data")}, **config}
    path = tmp_path / "vigil.yaml"
    path.write_text(yaml.safe_dump(config))
    log, modules = tmp_path / "stderr.log", tmp_path / "modules.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["VIGIL_TEST_WEBHOOK_TOKEN"] = "lazy-imports-Token-1"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", _RUN, str(path), str(modules)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )
    checks = {c["name"] for c in config["checks"]}

    def settled() -> bool:
        # Each check's first result is logged as a change from `unknown`.
        events = [e for e in _events(log) if e.get("event") == "check status changed"]
        return proc.poll() is not None or checks <= {e["check"] for e in events}

    try:
        poll_until_sync(settled, 30, what=lambda: log.read_text(errors="replace")[-2000:])
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    assert modules.exists(), log.read_text(errors="replace")[-2000:]
    return set(json.loads(modules.read_text()))


def _events(log: Path) -> list[dict[str, Any]]:
    """The JSON log events written so far."""
    events = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:  # a line still being written
                continue
    return events


def test_http_tcp_disk_agent_imports_no_driver(tmp_path: Path) -> None:
    """Without redis or postgres checks nor degradation, no driver and no store is imported."""
    modules = _imported(tmp_path, {"checks": _checks(tmp_path, "http", "tcp", "disk")})

    assert {"agent.probes.http", "agent.probes.tcp", "agent.probes.disk"} <= modules
    assert not modules & {*DRIVERS, *CONNECTIONS, "agent.probes.redis", "agent.probes.postgres"}
    # `vigil run` imports the stores' errors only to name them when the agent cannot start.
    assert not {m for m in modules if m.startswith("agent.degradation.")} - {
        "agent.degradation.errors"
    }
    assert "sqlite3" not in modules


def test_postgres_check_imports_its_driver(tmp_path: Path) -> None:
    """A postgres check loads psycopg; a redis check speaks RESP itself and loads no redis-py."""
    modules = _imported(tmp_path, {"checks": _checks(tmp_path, "redis", "postgres")})

    assert {"agent.probes.redis", "agent.probes.postgres", "psycopg", "psycopg_pool"} <= modules
    assert not modules & {"redis", "cryptography.x509"}


def test_queue_checks_import_only_their_connections(tmp_path: Path) -> None:
    """Queue checks over Redis load no redis-py; the one over PostgreSQL loads psycopg."""
    kinds = ("redis_list", "redis_stream", "postgres_queue")
    modules = _imported(tmp_path, {"checks": _checks(tmp_path, *kinds)})

    assert {*CONNECTIONS, "psycopg", "psycopg_pool"} <= modules
    assert {f"agent.probes.{kind}" for kind in kinds} <= modules
    assert not modules & {"redis", "agent.probes.redis", "agent.probes.postgres"}


@pytest.mark.parametrize(
    ("store", "loaded", "absent"),
    [
        ("sqlite", {"agent.degradation.sqlitestore", "agent.database", "sqlite3"}, {"redis"}),
        ("redis", {"agent.degradation.redisstore", "redis"}, {"agent.degradation.sqlitestore"}),
    ],
)
def test_degradation_imports_only_its_store(
    tmp_path: Path, store: str, loaded: set[str], absent: set[str]
) -> None:
    """The degradation engine loads the store it is configured with, and no other."""
    degradation = {
        "enabled": True,
        "store": store,
        "webhook": {"bearer_token_env": "VIGIL_TEST_WEBHOOK_TOKEN"},
        "redis": {"url": f"redis://{CLOSED}/0", "timeout_seconds": 0.5},
    }
    modules = _imported(tmp_path, {"degradation": degradation, "checks": _checks(tmp_path, "disk")})

    assert {"agent.degradation.engine", *loaded} <= modules
    assert not modules & {*absent, *DRIVERS} - loaded


def test_every_probe_entry_names_its_probe() -> None:
    """Each entry of the lazy probe map loads `probe_<kind>`, a coroutine function."""
    assert set(PROBES) == set(KINDS)
    for kind in KINDS:
        probe = PROBES[kind]
        assert probe.__name__ == f"probe_{kind}"
        assert inspect.iscoroutinefunction(probe)


def test_unknown_kind_is_a_key_error() -> None:
    """The probe map answers an unknown kind as a dict does."""
    with pytest.raises(KeyError, match="smtp"):
        PROBES["smtp"]
