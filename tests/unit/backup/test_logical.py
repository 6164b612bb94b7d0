"""The parts of logical backups that need no PostgreSQL: pg_dump's directory as one tar and back
(refusing anything pg_dump does not write), the manifest's dump artifact, and the way a program
run is bounded in time and in what it says."""

from __future__ import annotations

import io
import os
import stat
import sys
import tarfile
import time
from pathlib import Path

import pyrage  # type: ignore[import-untyped]
import pytest

from agent.backup.artifact import CHUNK, ArtifactWriter, Codec, Plain
from agent.backup.dumpdir import untar, write_tar
from agent.backup.errors import BackupError, IntegrityError, Reason
from agent.backup.logical import dump_artifact, tool_version
from agent.backup.manifest import ArtifactInfo, BackupType, Kind, Manifest
from agent.backup.pgprocess import STDERR_KEEP, Process
from agent.backup.pgtools import STDERR_TAIL
from agent.telemetry.redact import redactor

IDENTITY = pyrage.x25519.Identity.generate()
CODEC = Codec(recipients=(str(IDENTITY.to_public()),))


def _dump_dir(root: Path) -> Path:
    folder = root / "pgdump"
    folder.mkdir()
    (folder / "3345.dat").write_bytes(os.urandom(300_000) + b"\\.\n")
    (folder / "3346.dat").write_bytes(b"")
    (folder / "toc.dat").write_bytes(b"PGDMP" + bytes(range(256)) * 40)
    (folder / "blob_16400.dat").write_bytes(b"\x00\xff" * 700)
    return folder


def _store(path: Path, data: bytes, codec: Codec = CODEC) -> ArtifactInfo:
    with ArtifactWriter(path, codec) as writer:
        writer.write(data)
        return writer.finish()


def test_directory_round_trip_toc_first(tmp_path: Path) -> None:
    """Every file of the dump directory comes back byte for byte; toc.dat leads the tar."""
    folder = _dump_dir(tmp_path)
    path = tmp_path / ("dump.tar" + CODEC.suffix())
    with ArtifactWriter(path, CODEC) as writer:
        assert write_tar(folder, writer) == 4
        info = writer.finish()

    untar(path, info, [IDENTITY], tmp_path / "out")

    assert sorted(os.listdir(tmp_path / "out")) == sorted(os.listdir(folder))
    for name in os.listdir(folder):
        assert (tmp_path / "out" / name).read_bytes() == (folder / name).read_bytes()
        assert stat.S_IMODE((tmp_path / "out" / name).stat().st_mode) == 0o600
    with Plain(path, info, [IDENTITY]) as plain:
        with tarfile.open(fileobj=plain, mode="r|") as tar:
            names = [m.name for m in tar]
        while plain.read(CHUNK):  # to the end: the decoder must not be cut off mid-stream
            pass
    assert names[0] == "toc.dat"


def test_wanted_members_only_but_whole_artifact_checked(tmp_path: Path) -> None:
    """Extracting only toc.dat still reads the rest: a flipped byte near the end is caught."""
    folder = _dump_dir(tmp_path)
    buffer = io.BytesIO()
    write_tar(folder, buffer)
    path = tmp_path / "dump.tar.zst"
    info = _store(path, buffer.getvalue(), Codec())
    untar(path, info, [], tmp_path / "toc", wanted=frozenset({"toc.dat"}))
    assert os.listdir(tmp_path / "toc") == ["toc.dat"]

    data = bytearray(path.read_bytes())
    data[-20] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError):
        untar(path, info, [], tmp_path / "again", wanted=frozenset({"toc.dat"}))


def test_write_tar_refuses_what_pg_dump_does_not_write(tmp_path: Path) -> None:
    """A link in the dump directory is not archived: a tool error."""
    folder = _dump_dir(tmp_path)
    (folder / "extra.dat").symlink_to("/etc/passwd")
    with pytest.raises(BackupError) as caught:
        write_tar(folder, io.BytesIO())
    assert caught.value.reason is Reason.TOOL


def _member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"x") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        info.linkname = "/etc/passwd"
    return info


BAD_MEMBERS = {
    "absolute": _member("/tmp/vigil-evil"),
    "parent": _member("../evil"),
    "nested": _member("sub/evil.dat"),
    "hidden": _member(".evil"),
    "symlink": _member("evil.dat", tarfile.SYMTYPE),
    "hardlink": _member("evil.dat", tarfile.LNKTYPE),
    "device": _member("evil.dat", tarfile.CHRTYPE),
    "fifo": _member("evil.dat", tarfile.FIFOTYPE),
    "directory": _member("evil", tarfile.DIRTYPE),
    "duplicate": _member("toc.dat"),
}


@pytest.mark.parametrize("name", list(BAD_MEMBERS))
def test_untar_refuses_unsafe_members(tmp_path: Path, name: str) -> None:
    """A member pg_dump never writes (a path, a link, a device, a duplicate) fails the restore
    and nothing of it reaches the disk."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_member("toc.dat"), io.BytesIO(b"x"))
        bad = BAD_MEMBERS[name]
        tar.addfile(bad, io.BytesIO(b"x") if bad.isreg() else None)
    path = tmp_path / ("dump.tar" + CODEC.suffix())
    info = _store(path, buffer.getvalue())
    dest = tmp_path / "restore" / "dump"
    dest.parent.mkdir()

    with pytest.raises(IntegrityError, match="is not a pg_dump file"):
        untar(path, info, [IDENTITY], dest)

    assert os.listdir(dest) == ["toc.dat"]
    assert os.listdir(dest.parent) == ["dump"]
    assert not Path("/tmp/vigil-evil").exists()


def test_untar_without_toc_or_tar(tmp_path: Path) -> None:
    """A tar lacking toc.dat, and bytes that are no tar at all, are integrity errors."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_member("3345.dat"), io.BytesIO(b"x"))
    cases = [
        (buffer.getvalue(), Codec(), "holds no toc.dat"),
        (os.urandom(3_000_000), Codec(), "not a valid tar"),
        (os.urandom(3_000_000), CODEC, "not a valid tar"),
    ]
    for n, (data, codec, expected) in enumerate(cases):
        path = tmp_path / f"dump{n}.tar{codec.suffix()}"
        info = _store(path, data, codec)
        with pytest.raises(IntegrityError, match=expected):
            untar(path, info, [IDENTITY], tmp_path / f"out{n}")


def test_untar_wrong_identity_is_an_encryption_error(tmp_path: Path) -> None:
    """The wrong key reads as what it is, not as a broken tar."""
    buffer = io.BytesIO()
    write_tar(_dump_dir(tmp_path), buffer)
    path = tmp_path / ("dump.tar" + CODEC.suffix())
    info = _store(path, buffer.getvalue())
    with pytest.raises(BackupError) as caught:
        untar(path, info, [pyrage.x25519.Identity.generate()], tmp_path / "out")
    assert caught.value.reason is Reason.ENCRYPTION


def _manifest(kind: Kind, fmt: object, *names: str) -> Manifest:
    artifacts = tuple(ArtifactInfo(n, 10, 5, "0" * 64, "zstd", None) for n in names)
    return Manifest(
        "20261207T051500Z-F", "shop", kind, BackupType.FULL, None, 1.0, 2.0, artifacts,
        {"format": fmt},
    )  # fmt: skip


def test_dump_artifact_reads_the_manifest() -> None:
    """The format and artifact of a logical backup; anything else is refused or distrusted."""
    assert dump_artifact(_manifest(Kind.POSTGRES_LOGICAL, "custom", "dump.zst"))[0] == "custom"
    assert dump_artifact(_manifest(Kind.POSTGRES_LOGICAL, "directory", "dump.tar.zst.age"))[
        1
    ].name == ("dump.tar.zst.age")
    with pytest.raises(BackupError) as other_kind:
        dump_artifact(_manifest(Kind.FILES, "custom", "dump.zst"))
    assert other_kind.value.reason is Reason.REFUSED
    for manifest in (
        _manifest(Kind.POSTGRES_LOGICAL, "plain", "dump.zst"),
        _manifest(Kind.POSTGRES_LOGICAL, None, "dump.zst"),
        _manifest(Kind.POSTGRES_LOGICAL, "custom", "dump.zst", "dump2.zst"),
        _manifest(Kind.POSTGRES_LOGICAL, "custom"),
        _manifest(Kind.POSTGRES_LOGICAL, "custom", "tree.zst"),
        _manifest(Kind.POSTGRES_LOGICAL, "directory", "dump.zst"),
    ):
        with pytest.raises(IntegrityError):
            dump_artifact(manifest)


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "tool"
    path.write_text(f"#!{sys.executable}\n{body}\n")
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)", ("15.20", 15)),
        ("pg_dump (PostgreSQL) 17.0", ("17.0", 17)),
        ("pg_dump (PostgreSQL) 18devel", ("18", 18)),
    ],
)
def test_tool_version(tmp_path: Path, output: str, expected: tuple[str, int]) -> None:
    """The version and major version from `--version`, whatever follows them."""
    assert tool_version(_script(tmp_path, f"print({output!r})")) == expected


def test_tool_version_unreadable(tmp_path: Path) -> None:
    """Output without a version is a tool error."""
    with pytest.raises(BackupError) as caught:
        tool_version(_script(tmp_path, "print('hello')"))
    assert caught.value.reason is Reason.TOOL


def test_process_killed_at_its_deadline(tmp_path: Path) -> None:
    """A program still running at its deadline is killed, with what it forked: `timeout`."""
    child_pid = tmp_path / "child"
    tool = _script(
        tmp_path,
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(child_pid)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)",
    )
    process = Process([tool], dict(os.environ), time.monotonic() + 1.0)
    with pytest.raises(BackupError) as caught:
        process.finish()
    assert caught.value.reason is Reason.TIMEOUT
    pid = int(child_pid.read_text())
    # The grandchild got the same SIGKILL (its process group); init reaps it.
    limit = time.monotonic() + 5
    while not _gone(pid) and time.monotonic() < limit:
        time.sleep(0.01)
    assert _gone(pid)


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def test_process_failure_redacted_and_bounded(tmp_path: Path) -> None:
    """A failed program's error quotes the end of its stderr, bounded, with secrets masked."""
    redactor.register("hunter2-Secret-77")
    tool = _script(
        tmp_path,
        "import sys\n"
        "sys.stderr.write('noise ' * 200_000)\n"
        "sys.stderr.write('FATAL: password=hunter2-Secret-77 rejected\\n')\n"
        "sys.exit(3)",
    )
    process = Process([tool], dict(os.environ), None)
    with pytest.raises(BackupError) as caught:
        process.finish()
    text = str(caught.value)
    assert caught.value.reason is Reason.TOOL
    assert text.startswith("tool exited 3: ")
    assert "hunter2-Secret-77" not in text
    assert "rejected" in text
    assert len(text) < STDERR_TAIL + 100 < STDERR_KEEP
