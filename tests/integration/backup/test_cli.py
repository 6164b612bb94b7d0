"""`vigil backup` as an operator or a cron job runs it: a logical PostgreSQL job created,
listed, verified, restored and drilled through the real command line, JSON out, exit codes that
say what happened, and the password nowhere in what it prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pyrage  # type: ignore[import-untyped]
import pytest
import yaml

from tests.harness.postgres import PostgresServer

pytestmark = pytest.mark.integration

SOURCE = "cli_shop"
PASSWORD_ENV = "VIGIL_TEST_BACKUP_PASSWORD"


@pytest.fixture(scope="module")
def shop(postgres_server: PostgresServer) -> Iterator[PostgresServer]:
    """A small database with a table of orders on the session server."""
    postgres_server.execute(f"DROP DATABASE IF EXISTS {SOURCE} WITH (FORCE)")
    postgres_server.create_database(SOURCE)
    with psycopg.connect(postgres_server.dsn(dbname=SOURCE), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE orders (id int PRIMARY KEY, note text);"
            " INSERT INTO orders SELECT g, 'order ' || g FROM generate_series(1, 5000) g"
        )
    yield postgres_server
    postgres_server.execute(f"DROP DATABASE IF EXISTS {SOURCE} WITH (FORCE)")
    postgres_server.execute("DROP DATABASE IF EXISTS cli_restored WITH (FORCE)")


def _config(tmp_path: Path, server: PostgresServer, queries: list[dict[str, str]]) -> Path:
    identity = pyrage.x25519.Identity.generate()
    (tmp_path / "identity.txt").write_text(f"{identity}\n")
    doc: dict[str, Any] = {
        "agent": {"data_dir": str(tmp_path / "data")},
        "checks": [{"name": "disk", "kind": "disk", "path": "/"}],
        "backup": {
            "repository": {"path": str(tmp_path / "repo")},
            "encryption": {
                "recipients": [str(identity.to_public())],
                "identity_file": str(tmp_path / "identity.txt"),
            },
            "jobs": [
                {
                    "name": "shop",
                    "kind": "postgres",
                    "host": server.host,
                    "port": server.port,
                    "user": server.superuser,
                    "password_env": PASSWORD_ENV,
                    "dbname": SOURCE,
                    "drill": {"queries": queries},
                }
            ],
        },
    }
    path = tmp_path / "vigil.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _vigil(config: Path, server: PostgresServer, *args: str) -> tuple[int, Any, str]:
    env = {**os.environ, PASSWORD_ENV: server.superuser_password}
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "backup", *args, "--config", str(config), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert server.superuser_password not in proc.stdout + proc.stderr
    document = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else None
    return proc.returncode, document, proc.stderr


def test_a_logical_job_through_the_command_line(shop: PostgresServer, tmp_path: Path) -> None:
    """create, list, verify, restore and drill answer 0 with their JSON; the restored database
    holds the rows; a second restore into it is refused with 2."""
    config = _config(
        tmp_path, shop, [{"name": "orders", "sql": "SELECT count(*) = 5000 FROM orders"}]
    )
    code, created, _ = _vigil(config, shop, "create", "shop")
    assert code == 0
    backup = created["backup"]
    assert (backup["kind"], backup["type"], backup["key_id"][:4]) == (
        "postgres_logical",
        "full",
        "age:",
    )
    assert backup["details"]["database"] == SOURCE

    code, listed, _ = _vigil(config, shop, "list")
    assert [b["id"] for b in listed["backups"]] == [backup["id"]]

    code, verified, _ = _vigil(config, shop, "verify", "shop")
    assert code == 0
    assert verified["jobs"]["shop"] == [{"id": backup["id"], "ok": True}]

    code, restored, _ = _vigil(config, shop, "restore", "shop", "--database", "cli_restored")
    assert code == 0
    assert restored["restore"]["database"] == "cli_restored"
    with psycopg.connect(shop.dsn(dbname="cli_restored")) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (5000,)
    code, refused, _stderr = _vigil(config, shop, "restore", "shop", "--database", "cli_restored")
    assert (code, refused["reason"]) == (2, "refused")

    code, drilled, _ = _vigil(config, shop, "drill", "shop")
    assert code == 0
    assert drilled["drill"]["queries"] == ["orders"]
    assert drilled["drill"]["rto_seconds"] > 0
    assert shop.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'vigil_drill_%'") == [
        (0,)
    ]


def test_a_failing_drill_query_fails_the_drill(shop: PostgresServer, tmp_path: Path) -> None:
    """A validation query that is false makes the drill exit 1 with reason validation, and the
    scratch database is gone all the same."""
    config = _config(
        tmp_path, shop, [{"name": "too_many", "sql": "SELECT count(*) > 9999 FROM orders"}]
    )
    assert _vigil(config, shop, "create", "shop")[0] == 0
    code, failed, _stderr = _vigil(config, shop, "drill", "shop")
    assert (code, failed["reason"]) == (1, "validation")
    assert "too_many" in failed["error"]
    assert shop.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'vigil_drill_%'") == [
        (0,)
    ]
    code, listed, _ = _vigil(config, shop, "list")
    assert listed["backups"][-1]["drill_ok"] is False


def test_an_unknown_job_and_a_busy_job(shop: PostgresServer, tmp_path: Path) -> None:
    """An unknown job is refused (2); a job whose lock another process holds is busy (4)."""
    import fcntl

    config = _config(tmp_path, shop, [])
    code, _, stderr = _vigil(config, shop, "create", "nope")
    assert code == 2
    assert "no backup job 'nope'" in stderr
    locks = tmp_path / "repo" / "locks"
    assert _vigil(config, shop, "create", "shop")[0] == 0
    with open(locks / "shop.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        code, busy, _ = _vigil(config, shop, "create", "shop")
    assert (code, busy["reason"]) == (4, "busy")
