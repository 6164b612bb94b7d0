"""A base backup's tar is extracted only when every member is a plain file or directory inside
the destination: a link, a device, an absolute path or a `..` is refused, nothing lands outside,
and the destination is left empty."""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.backup.artifact import Codec
from agent.backup.errors import IntegrityError
from agent.backup.manifest import BackupType, Kind, Manifest
from agent.backup.pitr import restore
from agent.backup.repository import Repository


def _member(name: str, data: bytes = b"x") -> Callable[[tarfile.TarFile], None]:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    return add


def _special(name: str, kind: bytes, target: str = "") -> Callable[[tarfile.TarFile], None]:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = target
        tar.addfile(info)

    return add


def _backup(tmp_path: Path, evil: Callable[[tarfile.TarFile], None]) -> tuple[Repository, Manifest]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _member("PG_VERSION", b"15\n")(tar)
        evil(tar)
        _member("global/pg_control", b"\0" * 100)(tar)
    repository = Repository(tmp_path / "repo")
    repository.ensure()
    staging = repository.stage("main", "20261207T050000Z-F")
    codec = Codec(level=1)
    with staging.artifact("base.tar", codec) as writer:
        writer.write(raw.getvalue())
        base = writer.finish()
    with staging.artifact("backup_manifest", codec) as writer:
        writer.write(b"{}")
        manifest_info = writer.finish()
    manifest = Manifest(
        id=staging.id,
        job="main",
        kind=Kind.POSTGRES_PHYSICAL,
        type=BackupType.FULL,
        parent=None,
        started=time.time(),
        ended=time.time(),
        artifacts=(base, manifest_info),
        details={"wal_included": True},
    )
    repository.commit(staging, manifest)
    return repository, manifest


@pytest.mark.parametrize(
    "evil",
    [
        _member("../escaped"),
        _member("/tmp/absolute-vigil-test"),
        _member("base/../../escaped"),
        _special("pg_tblspc/16384", tarfile.SYMTYPE, "/etc"),
        _special("link", tarfile.SYMTYPE, "PG_VERSION"),
        _special("hard", tarfile.LNKTYPE, "PG_VERSION"),
        _special("dev", tarfile.CHRTYPE),
        _special("fifo", tarfile.FIFOTYPE),
    ],
    ids=[
        "dotdot",
        "absolute",
        "nested-dotdot",
        "abs-symlink",
        "symlink",
        "hardlink",
        "device",
        "fifo",
    ],
)
def test_unsafe_members_are_refused(
    tmp_path: Path, evil: Callable[[tarfile.TarFile], None]
) -> None:
    """Each kind of unsafe member stops the restore before anything is started."""
    repository, manifest = _backup(tmp_path, evil)
    destination = tmp_path / "restored"
    with pytest.raises(IntegrityError, match="refused"):
        restore(repository, manifest, destination, [], None, config_path=tmp_path / "v.yaml")
    assert list(destination.iterdir()) == []
    assert not (tmp_path / "escaped").exists()
    assert not Path("/tmp/absolute-vigil-test").exists()
