"""Backups where things go wrong or leave Vigil's hands: a full repository disk fails the run
with reason `space` and deletes nothing good, and Debian's own `age`, `zstd` and `tar` restore a
Vigil artifact without Vigil."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pyrage  # type: ignore[import-untyped]
import pytest

from agent.backup.catalogue import SCHEMA
from agent.backup.errors import BackupError, Reason
from agent.backup.service import Backups
from agent.config.backup import BackupSettings
from agent.database import Database
from tests.harness.binaries import require

pytestmark = pytest.mark.integration


@pytest.fixture
def make_backups(tmp_path: Path) -> Iterator[Callable[[Path, Path], Backups]]:
    """`(source, repository) -> Backups` with one encrypted files job called `tree`."""
    identity = pyrage.x25519.Identity.generate()
    (tmp_path / "identity.txt").write_text(f"{identity}\n")
    databases: list[Database] = []

    def make(source: Path, repository: Path) -> Backups:
        settings = BackupSettings.model_validate(
            {
                "repository": {"path": str(repository)},
                "encryption": {
                    "recipients": [str(identity.to_public())],
                    "identity_file": str(tmp_path / "identity.txt"),
                },
                "jobs": [{"name": "tree", "kind": "files", "source": str(source)}],
            }
        )
        database = Database(tmp_path / "data" / "vigil.db", [SCHEMA])
        database.acquire()
        databases.append(database)
        return Backups(settings, database, tmp_path / "data")

    yield make
    for database in databases:
        database.release()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, unmounted afterwards."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_fails_with_space_and_keeps_what_was_good(
    make_backups: Callable[[Path, Path], Backups], tmp_path: Path, small_disk: Path
) -> None:
    """A backup that fills the repository's disk fails with reason `space`, leaves no partial
    backup, and the backup before it still verifies; with room again the next run succeeds."""
    source = tmp_path / "source"
    source.mkdir()
    (source / "small.txt").write_text("fits\n")
    backups = make_backups(source, small_disk / "repo")
    good = backups.create("tree")

    (source / "random.bin").write_bytes(os.urandom(6 << 20))  # incompressible, over the disk
    with pytest.raises(BackupError) as caught:
        backups.create("tree")
    assert caught.value.reason is Reason.SPACE
    assert not any((small_disk / "repo" / "partial").rglob("*.age"))
    assert [e.manifest.id for e in backups.listing("tree")] == [good.id]
    assert backups.verify("tree") == [{"id": good.id, "ok": True}]
    failures = backups.status()["tree"].failures
    assert failures == {("backup", "space"): 1}

    (source / "random.bin").unlink()
    again = backups.create("tree")
    assert [e.manifest.id for e in backups.listing("tree")] == [good.id, again.id]


def test_debian_age_zstd_and_tar_restore_a_vigil_backup(
    make_backups: Callable[[Path, Path], Backups], tmp_path: Path
) -> None:
    """`age -d | zstd -d | tar -x` of a files backup gives back the source tree's files."""
    source = tmp_path / "source"
    (source / "nested" / "deeper").mkdir(parents=True)
    (source / "nested" / "deeper" / "data.bin").write_bytes(os.urandom(300_000))
    (source / "notes ünïcode.txt").write_text("ünïcode content\n" * 1000)
    (source / "link").symlink_to("nested/deeper/data.bin")
    backups = make_backups(source, tmp_path / "repo")
    manifest = backups.create("tree")
    folder = backups.repository.backup_path("tree", manifest.id)
    [data] = folder.glob("data.tar.zst.age")
    out = tmp_path / "by-hand"
    out.mkdir()
    pipeline = (
        f"{require('age')} -d -i {tmp_path / 'identity.txt'} {data}"
        f" | {require('zstd')} -d -q | tar -x -C {out}"
    )
    subprocess.run(["bash", "-o", "pipefail", "-c", pipeline], check=True, timeout=60)
    for path in ("nested/deeper/data.bin", "notes ünïcode.txt"):
        assert (out / path).read_bytes() == (source / path).read_bytes()
    assert os.readlink(out / "link") == "nested/deeper/data.bin"


def test_a_backup_killed_midway_leaves_nothing_that_looks_complete(
    make_backups: Callable[[Path, Path], Backups], tmp_path: Path
) -> None:
    """SIGKILL during `vigil backup create`: no backup is listed, the next run removes the
    leftovers and succeeds."""
    import signal
    import sys

    import yaml

    from tests.harness.wait import poll_until_sync

    source = tmp_path / "source"
    source.mkdir()
    for n in range(40):
        (source / f"random-{n}.bin").write_bytes(os.urandom(1 << 20))
    backups = make_backups(source, tmp_path / "repo")
    config = tmp_path / "vigil.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "agent": {"data_dir": str(tmp_path / "data")},
                "checks": [{"name": "disk", "kind": "disk", "path": "/"}],
                "backup": backups.settings.model_dump(mode="json"),
            }
        )
    )
    partial = tmp_path / "repo" / "partial" / "tree"
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "backup", "create", "tree", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        poll_until_sync(
            lambda: any(p.stat().st_size > 0 for p in partial.glob("*/data.tar*")),
            30,
            interval=0.005,
            what="the backup writing its data",
        )
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert backups.repository.scan("tree") == ([], [])
    assert any(partial.iterdir())
    manifest = backups.create("tree")
    assert [p.name for p in partial.iterdir()] == []
    assert [m.id for m in backups.repository.scan("tree")[0]] == [manifest.id]
