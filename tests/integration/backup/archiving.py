"""A PostgreSQL cluster archiving its WAL through `vigil wal-push` into an encrypted
repository, with the Vigil config that describes it: the set-up every physical-job test needs."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyrage  # type: ignore[import-untyped]
import yaml

from tests.harness.postgres import PostgresServer
from tests.integration.backup.test_pitr import _give_to_postgres, wal_program

PASSWORD_ENV = "VIGIL_TEST_ARCHIVING_PASSWORD"


class Archiving:
    """The cluster, the work directory, the config file and its document."""

    def __init__(self, server: PostgresServer, base: Path, config: Path, doc: dict[str, Any]):
        self.server = server
        self.base = base
        self.config = config
        self.doc = doc


@contextlib.contextmanager
def archiving_cluster(**job: Any) -> Iterator[Archiving]:
    """A running cluster with `archive_command` = our wal-push, and a config whose physical job
    `main` (updated by `job`) backs it up; the password is in PASSWORD_ENV for the caller to
    set."""
    base = Path(tempfile.mkdtemp(prefix="vigil-archiving-"))
    base.chmod(0o755)
    identity = pyrage.x25519.Identity.generate()
    (base / "identity.txt").write_text(f"{identity}\n")
    config = base / "vigil.yaml"
    server = PostgresServer()
    main = {
        "name": "main",
        "kind": "postgres",
        "mode": "physical",
        "port": 5432,  # rewritten once the cluster has its port
        "password_env": PASSWORD_ENV,
        "threads": 1,
        "wal_program": wal_program(),
        **job,
    }
    doc: dict[str, Any] = {
        "agent": {"data_dir": str(base / "data")},
        "checks": [{"name": "disk", "kind": "disk", "path": str(base)}],
        "backup": {
            "repository": {"path": str(base / "repo")},
            "encryption": {
                "recipients": [str(identity.to_public())],
                "identity_file": str(base / "identity.txt"),
            },
            "jobs": [main],
        },
    }
    try:
        (base / "repo").mkdir()
        config.write_text(yaml.safe_dump(doc))
        _give_to_postgres(base)
        push = [*wal_program(), "wal-push", "--config", str(config), "--job", "main", "%p"]
        server.extra_conf = {
            "archive_mode": "on",
            "archive_command": " ".join(push),
            "wal_level": "replica",
        }
        server.start()
        main["port"] = server.port
        config.write_text(yaml.safe_dump(doc))
        server.execute("CREATE TABLE orders (n int PRIMARY KEY)")
        yield Archiving(server, base, config, doc)
    finally:
        server.cleanup()
        shutil.rmtree(base, ignore_errors=True)
