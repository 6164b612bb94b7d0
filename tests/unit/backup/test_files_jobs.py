"""Files jobs through the service: full, differential and incremental backups of a tree that is
edited between them restore to exactly the tree of each moment (content, modes, mtimes, links,
empty directories, deletions and renames), and what cannot be trusted is refused."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.backup.errors import BackupError, IntegrityError, Reason
from agent.backup.manifest import BackupType
from agent.backup.service import Backups
from tests.harness.wait import FakeClock

Snapshot = dict[str, tuple[Any, ...]]


def snapshot(root: Path) -> Snapshot:
    """Everything a restore must reproduce, per relative path."""
    found: Snapshot = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory) / name
            info = path.lstat()
            relative = str(path.relative_to(root))
            if path.is_symlink():
                found[relative] = ("l", os.readlink(path), info.st_mtime_ns)
            elif path.is_dir():
                found[relative] = ("d", info.st_mode & 0o7777, info.st_mtime_ns)
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                found[relative] = ("f", info.st_mode & 0o7777, info.st_mtime_ns, digest)
    return found


def _write(path: Path, data: bytes, mtime_ns: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def _settings(source: Path, **job: Any) -> dict[str, Any]:
    return {"jobs": [{"name": "tree", "kind": "files", "source": str(source), **job}]}


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A tree with big and small files, nested and empty dirs, links and odd permissions."""
    root = tmp_path / "source"
    t = 1_700_000_000_000_000_000
    _write(root / "big.bin", os.urandom(3 << 20), t)
    _write(root / "etc" / "app.conf", b"port = 1\n", t + 1)
    _write(root / "etc" / "secret.key", b"k" * 100, t + 2)
    (root / "etc" / "secret.key").chmod(0o600)
    _write(root / "deep" / "a" / "b" / "c" / "leaf.txt", "ünïcode\n".encode(), t + 3)
    _write(root / "name with spaces & ünïcode.txt", b"x", t + 4)
    _write(root / ("long" * 40) / ("name" * 50), b"long path", t + 5)
    _write(root / "empty-file", b"", t + 6)
    (root / "empty-dir").mkdir()
    (root / "script.sh").write_text("#!/bin/sh\n")
    (root / "script.sh").chmod(0o755)
    (root / "link-relative").symlink_to("etc/app.conf")
    (root / "link-absolute").symlink_to("/usr/share/zoneinfo")
    (root / "link-dangling").symlink_to("nowhere")
    return root


def _restore(backups: Backups, backup_id: str, into: Path) -> Snapshot:
    backups.restore("tree", backup_id, destination=into)
    return snapshot(into)


def test_chains_restore_each_moment_exactly(
    make_backups: Callable[..., Backups], source: Path, tmp_path: Path
) -> None:
    """Full, incremental, differential and incremental again each restore to their moment."""
    clock = FakeClock(1_800_000_000.0)
    backups = make_backups(_settings(source), clock)
    moments: list[tuple[str, Snapshot]] = []

    full = backups.create("tree", BackupType.FULL)
    moments.append((full.id, snapshot(source)))

    clock.advance(3600)
    _write(source / "etc" / "app.conf", b"port = 2\n", 1_700_000_100_000_000_000)
    (source / "etc" / "secret.key").unlink()
    (source / "script.sh").rename(source / "run.sh")
    (source / "empty-dir").rmdir()
    (source / "new-empty").mkdir()
    (source / "big.bin").chmod(0o640)
    incremental = backups.create("tree", BackupType.INCREMENTAL)
    assert incremental.type is BackupType.INCREMENTAL
    assert incremental.parent == full.id
    assert incremental.details["stored_files"] == 3  # app.conf, run.sh, big.bin (mode)
    moments.append((incremental.id, snapshot(source)))

    clock.advance(3600)
    _write(source / "added" / "file.txt", b"added later", 1_700_000_200_000_000_000)
    (source / "link-relative").unlink()
    differential = backups.create("tree", BackupType.DIFFERENTIAL)
    assert differential.parent == full.id
    moments.append((differential.id, snapshot(source)))

    clock.advance(3600)
    _write(source / "added" / "file.txt", b"changed again", 1_700_000_300_000_000_000)
    last = backups.create("tree", BackupType.INCREMENTAL)
    assert last.parent == differential.id
    assert last.details["stored_files"] == 1
    moments.append((last.id, snapshot(source)))

    for n, (backup_id, expected) in enumerate(moments):
        assert _restore(backups, backup_id, tmp_path / f"restore-{n}") == expected, backup_id


def test_restore_refuses_a_non_empty_destination(
    make_backups: Callable[..., Backups], source: Path, tmp_path: Path
) -> None:
    """A destination holding anything is refused unless forced; nothing in it changes."""
    backups = make_backups(_settings(source))
    backups.create("tree")
    destination = tmp_path / "busy"
    _write(destination / "keep.txt", b"mine", 1)
    with pytest.raises(BackupError) as caught:
        backups.restore("tree", None, destination=destination)
    assert caught.value.reason is Reason.REFUSED
    assert [p.name for p in destination.iterdir()] == ["keep.txt"]


def test_a_damaged_artifact_is_refused_before_anything_is_written(
    make_backups: Callable[..., Backups], source: Path, tmp_path: Path
) -> None:
    """A flipped byte in the data fails verify and restore; the destination stays empty."""
    backups = make_backups(_settings(source))
    manifest = backups.create("tree")
    folder = backups.repository.backup_path("tree", manifest.id)
    data = next(folder.glob("data.tar*"))
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 3] ^= 0x40
    data.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError):
        backups.verify("tree", manifest.id)
    destination = tmp_path / "restore"
    with pytest.raises(IntegrityError):
        backups.restore("tree", manifest.id, destination=destination)
    assert not destination.exists() or not any(destination.iterdir())
    [entry] = backups.listing("tree")
    assert entry.verified_ok is False


def test_verify_passes_and_is_recorded(make_backups: Callable[..., Backups], source: Path) -> None:
    """An intact backup verifies, and the catalogue says so."""
    backups = make_backups(_settings(source))
    manifest = backups.create("tree")
    assert backups.verify("tree") == [{"id": manifest.id, "ok": True}]
    [entry] = backups.listing("tree")
    assert entry.verified_ok is True
    assert entry.manifest.stored_bytes < entry.manifest.plain_bytes


def test_an_incremental_without_a_full_becomes_a_full(
    make_backups: Callable[..., Backups], source: Path
) -> None:
    """Asking for an incremental first gives a full, and says why."""
    backups = make_backups(_settings(source))
    manifest = backups.create("tree", BackupType.INCREMENTAL)
    assert manifest.type is BackupType.FULL
    assert "no full" in manifest.details["note"]


def test_the_catalogue_is_rebuilt_from_the_repository(
    make_backups: Callable[..., Backups], source: Path, tmp_path: Path
) -> None:
    """After the database is lost, a rescan lists the same backups again."""
    first = make_backups(_settings(source))
    made = [first.create("tree").id]
    first.clock.advance(60)  # type: ignore[attr-defined]
    made.append(first.create("tree", BackupType.INCREMENTAL).id)
    (tmp_path / "data" / "vigil.db").unlink()
    second = make_backups(_settings(source))
    assert second.listing("tree") == []
    changed, bad = second.rescan()
    assert (changed, bad) == (2, [])
    assert [e.manifest.id for e in second.listing("tree")] == made


@pytest.mark.parametrize(
    ("codec", "suffix"),
    [
        ({"compression": "gzip"}, ".gz.age"),
        ({"encrypt": False}, ".zst"),
        ({"compression": "none"}, ".age"),
    ],
    ids=["gzip", "unencrypted", "uncompressed"],
)
def test_other_codecs_round_trip(
    make_backups: Callable[..., Backups],
    source: Path,
    tmp_path: Path,
    codec: dict[str, Any],
    suffix: str,
) -> None:
    """gzip (for compatibility), no encryption and no compression restore the same tree."""
    backups = make_backups(_settings(source, **codec))
    manifest = backups.create("tree")
    assert {a.name for a in manifest.artifacts} == {"data.tar" + suffix, "tree.json" + suffix}
    assert backups.verify("tree") == [{"id": manifest.id, "ok": True}]
    assert _restore(backups, manifest.id, tmp_path / "restore") == snapshot(source)
