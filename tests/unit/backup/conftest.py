"""Fixtures of the backup tests: a service over a fresh repository and database, with a clock
the test moves."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyrage  # type: ignore[import-untyped]
import pytest

from agent.backup.catalogue import SCHEMA
from agent.backup.service import Backups
from agent.config.backup import BackupSettings
from agent.database import Database
from tests.harness.wait import FakeClock

IDENTITY = pyrage.x25519.Identity.generate()
RECIPIENT = str(IDENTITY.to_public())


@pytest.fixture
def make_backups(tmp_path: Path) -> Iterator[Callable[..., Backups]]:
    """Builds a `Backups` from a settings dict (repository, identity and clock filled in)."""
    made: list[Database] = []

    def make(settings: dict[str, Any], clock: FakeClock | None = None) -> Backups:
        identity = tmp_path / "identity.txt"
        identity.write_text(f"{IDENTITY}\n")
        settings = {
            "repository": {"path": str(tmp_path / "repo")},
            "encryption": {"recipients": [RECIPIENT], "identity_file": str(identity)},
            **settings,
        }
        database = Database(tmp_path / "data" / "vigil.db", [SCHEMA])
        database.acquire()
        made.append(database)
        return Backups(
            BackupSettings.model_validate(settings),
            database,
            tmp_path / "data",
            clock=clock or FakeClock(1_800_000_000.0),
            version="test",
        )

    yield make
    for database in made:
        database.release()
