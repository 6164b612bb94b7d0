"""A physical PostgreSQL job through `vigil backup`: a base backup of a cluster that archives
through `vigil wal-push`, verified with pg_verifybackup, drilled in a scratch cluster recovered
to the end of the archive (queries pass, nothing reaches the archive), pruned with its WAL, and
recovered to a point in time with the server's proof printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.harness.ports import free_port
from tests.integration.backup.archiving import PASSWORD_ENV, Archiving, archiving_cluster
from tests.integration.backup.test_pitr import _switch_and_wait

pytestmark = pytest.mark.integration


class Setup:
    """The archiving cluster and a way to run `vigil` on its config."""

    def __init__(self, archiving: Archiving) -> None:
        self.server = archiving.server
        self.base = archiving.base
        self.config = archiving.config

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
    drill = {"queries": [{"name": "orders", "sql": "SELECT count(*) >= 3 FROM orders"}]}
    with archiving_cluster(retention={"keep_last": 1}, drill=drill) as archiving:
        yield Setup(archiving)


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
