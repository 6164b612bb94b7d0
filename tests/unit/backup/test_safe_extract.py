"""Restoring never writes outside the destination: traversal, absolute and device members, hard
links and writes through a link are refused, and a tree naming such paths does not decode."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from agent.backup import tree
from agent.backup.errors import BackupError, IntegrityError
from agent.backup.files import TreeWriter, content_hash
from agent.backup.tree import Entry, EntryType

HOLDER = "20260101T000000Z-F"


def _file(path: str, data: bytes) -> Entry:
    digest = content_hash(data).hexdigest()
    return Entry(path, EntryType.FILE, 0o644, 0, 0, 0, len(data), digest, "", HOLDER)


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    buffer.seek(0)
    return buffer


def _member(
    name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = ""
) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data if kind == tarfile.REGTYPE else None


@pytest.mark.parametrize(
    "member",
    [
        _member("../escape.txt", b"evil"),
        _member("ok/../../escape.txt", b"evil"),
        _member("/tmp/absolute.txt", b"evil"),
        _member("dev", kind=tarfile.CHRTYPE),
        _member("fifo", kind=tarfile.FIFOTYPE),
        _member("hard", kind=tarfile.LNKTYPE, link="/etc/passwd"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "device", "fifo", "hardlink"],
)
def test_forbidden_members_are_refused(
    tmp_path: Path, member: tuple[tarfile.TarInfo, bytes | None]
) -> None:
    """A member that could write outside or create a device stops the restore; nothing escapes."""
    destination = tmp_path / "out"
    good = _file("good.txt", b"fine")
    stream = _tar(_member("good.txt", b"fine"), member)
    with TreeWriter(destination, [good]) as writer, pytest.raises(IntegrityError):
        writer.extract(stream, HOLDER, None)
    assert not (tmp_path / "escape.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_file_is_never_written_through_a_link(tmp_path: Path) -> None:
    """A destination directory swapped for a link to elsewhere is not followed."""
    outside = tmp_path / "outside"
    outside.mkdir()
    destination = tmp_path / "out"
    entries = [
        Entry("dir", EntryType.DIR, 0o755, 0, 0, 0),
        _file("dir/file.txt", b"data"),
    ]
    with TreeWriter(destination, entries) as writer:
        (destination / "dir").symlink_to(outside)
        with pytest.raises(BackupError, match=r"cannot write dir/file\.txt"):
            writer.extract(_tar(_member("dir/file.txt", b"data")), HOLDER, None)
    assert list(outside.iterdir()) == []


def test_content_not_matching_its_hash_is_refused(tmp_path: Path) -> None:
    """A member whose bytes differ from the tree's hash fails the restore."""
    entry = _file("f.txt", b"expected")
    with (
        TreeWriter(tmp_path / "out", [entry]) as writer,
        pytest.raises(IntegrityError, match="its hash"),
    ):
        writer.extract(_tar(_member("f.txt", b"tampered")), HOLDER, None)


def test_a_file_missing_from_its_holder_is_refused(tmp_path: Path) -> None:
    """A tree file its holder's data lacks fails the restore instead of being skipped."""
    with (
        TreeWriter(tmp_path / "out", [_file("f.txt", b"x")]) as writer,
        pytest.raises(IntegrityError, match="lacks"),
    ):
        writer.extract(_tar(), HOLDER, None)


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "a/../../x", "a//b", "./a", "", "a/\x00"])
def test_unsafe_tree_paths_do_not_decode(path: str) -> None:
    """A tree naming an unsafe path is refused as a whole."""
    raw = tree.encode([Entry(path, EntryType.FILE, 0o644, 0, 0, 0)])
    with pytest.raises(IntegrityError):
        tree.decode(raw)


def test_a_tree_listing_a_child_before_its_directory_does_not_decode() -> None:
    """Every path's parent must be a directory listed before it (no file as a parent)."""
    raw = tree.encode(
        [Entry("a", EntryType.FILE, 0o644, 0, 0, 0), Entry("a/b", EntryType.FILE, 0o644, 0, 0, 0)]
    )
    with pytest.raises(IntegrityError):
        tree.decode(raw)
