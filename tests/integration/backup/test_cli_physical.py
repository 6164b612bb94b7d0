"""A physical PostgreSQL job through `vigil backup`: a base backup of a cluster that archives
through `vigil wal-push`, verified with pg_verifybackup, drilled in a scratch cluster recovered
to the end of the archive (queries pass, nothing reaches the archive), pruned with its WAL, and
recovered to a point in time with the server's proof printed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pyrage  # type: ignore[import-untyped]
import pytest
import yaml

from tests.harness.ports import free_port
from tests.harness.postgres import PostgresServer
from tests.integration.backup.test_pitr import _give_to_postgres, _switch_and_wait, wal_program

pytestmark = pytest.mark.integration

PASSWORD_ENV = "VIGIL_TEST_CLI_PHYSICAL_PASSWORD"


class Setup:
    """The archiving cluster, the config and the work directory."""

    def __init__(self, server: PostgresServer, base: Path, config: Path) -> None:
        self.server = server
        self.base = base
        self.config = config

    def vigil(self, *args: str) -> tuple[int, Any]:
        env = {**os.environ, PASSWORD_ENV: self.server.superuser_password}
        proc = subprocess.run(
            [sys.executable, "-m", "agent", *args, "--config", str(self.config), "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=180,
            check=False,
        )
        assert self.server.superuser_password not in proc.stdout + proc.stderr
        lines = proc.stdout.strip().splitlines()
        return proc.returncode, json.loads(lines[-1]) if lines else proc.stderr


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    """A cluster archiving through wal-push into an encrypted repository."""
    base = Path(tempfile.mkdtemp(prefix="vigil-cli-physical-"))
    base.chmod(0o755)
    identity = pyrage.x25519.Identity.generate()
    (base / "identity.txt").write_text(f"{identity}\n")
    config = base / "vigil.yaml"
    server = PostgresServer()
    try:
        server.port = free_port()
        job = {
            "name": "main",
            "kind": "postgres",
            "mode": "physical",
            "port": 5432,  # rewritten once the cluster has its port
            "password_env": PASSWORD_ENV,
            "threads": 1,
            "wal_program": wal_program(),
            "retention": {"keep_last": 1},
            "drill": {"queries": [{"name": "orders", "sql": "SELECT count(*) >= 3 FROM orders"}]},
        }
        doc = {
            "agent": {"data_dir": str(base / "data")},
            "checks": [{"name": "disk", "kind": "disk", "path": str(base)}],
            "backup": {
                "repository": {"path": str(base / "repo")},
                "encryption": {
                    "recipients": [str(identity.to_public())],
                    "identity_file": str(base / "identity.txt"),
                },
                "jobs": [job],
            },
        }
        (base / "repo").mkdir()
        config.write_text(yaml.safe_dump(doc))
        _give_to_postgres(base)
        push = " ".join(
            [*wal_program(), "wal-push", "--config", str(config), "--job", "main", "%p"]
        )
        server.extra_conf = {"archive_mode": "on", "archive_command": push, "wal_level": "replica"}
        server.start()
        job["port"] = server.port
        config.write_text(yaml.safe_dump(doc))
        server.execute("CREATE TABLE orders (n int PRIMARY KEY)")
        yield Setup(server, base, config)
    finally:
        server.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def test_backup_verify_drill_prune_and_pitr(setup: Setup) -> None:
    """The whole life of a physical job from the command line."""
    server = setup.server
    for n in (1, 2, 3):
        server.execute("INSERT INTO orders VALUES (%s)", (n,))
    code, first = setup.vigil("backup", "create", "main")
    assert code == 0, first
    assert first["backup"]["kind"] == "postgres_physical"
    _switch_and_wait(server)

    code, verified = setup.vigil("backup", "verify", "main")
    assert code == 0, verified

    archived_before = server.execute("SELECT archived_count FROM pg_stat_archiver")[0][0]
    code, drilled = setup.vigil("backup", "drill", "main")
    assert code == 0, drilled
    assert drilled["drill"]["queries"] == ["orders"]
    assert (
        any(
            "archive recovery complete" in line or "promot" in line
            for line in drilled["drill"]["proof"]
        )
        or drilled["drill"]["timeline"]
    )
    assert server.execute("SELECT archived_count FROM pg_stat_archiver")[0][0] == archived_before

    server.execute("INSERT INTO orders VALUES (4)")
    target = server.execute("SELECT now()")[0][0]
    _switch_and_wait(server)
    server.execute("INSERT INTO orders VALUES (5)")
    _switch_and_wait(server)

    code, second = setup.vigil("backup", "create", "main")
    assert code == 0, second
    assert setup.vigil("backup", "verify", "main", "--id", second["backup"]["id"])[0] == 0
    code, pruned = setup.vigil("backup", "prune", "main")
    assert code == 0, pruned
    assert pruned["jobs"]["main"]["delete"] == [first["backup"]["id"]]

    destination = setup.base / "recovered"
    port = free_port()
    code, recovered = setup.vigil(
        "backup",
        "pitr",
        "main",
        "--target-time",
        target.isoformat(),
        "--destination",
        str(destination),
        "--port",
        str(port),
    )
    # The only backup left ended after the target: nothing can recover to it.
    assert code == 2, recovered

    server.execute("INSERT INTO orders VALUES (6)")
    later = server.execute("SELECT now()")[0][0]
    server.execute("INSERT INTO orders VALUES (7)")
    _switch_and_wait(server)
    code, recovered = setup.vigil(
        "backup",
        "pitr",
        "main",
        "--target-time",
        later.isoformat(),
        "--destination",
        str(destination),
        "--port",
        str(port),
    )
    assert code == 0, recovered
    try:
        assert any("recovery stopping before" in line for line in recovered["pitr"]["proof"])
        with psycopg.connect(
            host="127.0.0.1",
            port=port,
            user=server.superuser,
            password=server.superuser_password,
            dbname="postgres",
        ) as conn:
            rows = [r[0] for r in conn.execute("SELECT n FROM orders ORDER BY n")]
        assert rows == [1, 2, 3, 4, 5, 6]
    finally:
        from agent.backup.cluster import stop_cluster

        stop_cluster(destination)
