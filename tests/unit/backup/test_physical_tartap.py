"""The tar header walker of physical backups: whatever the chunking of pg_basebackup's stream,
it passes every byte through, copies the backup_manifest member out and keeps the
backup_label."""

from __future__ import annotations

import io
import tarfile

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.backup.physical import _TarTap

LABEL = b"START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nSTART TIMELINE: 1\n"
MANIFEST = b'{"PostgreSQL-Backup-Manifest-Version": 1, "Files": []}\n' * 40


def _tar(long_names: bool) -> bytes:
    out = io.BytesIO()
    fmt = tarfile.PAX_FORMAT if long_names else tarfile.USTAR_FORMAT
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        members = [
            ("backup_label", LABEL),
            ("base/1/1259", bytes(range(256)) * 33),
            ("global/pg_control", b"\x01" * 8192),
            ("empty", b""),
        ]
        if long_names:
            members.append(("pg_wal/" + "x" * 150, b"long"))
        members.append(("backup_manifest", MANIFEST))
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        directory = tarfile.TarInfo("pg_wal")
        directory.type = tarfile.DIRTYPE
        tar.addfile(directory)
    return out.getvalue()


@settings(max_examples=60)
@given(st.booleans(), st.lists(st.integers(1, 5000), min_size=1, max_size=40))
def test_any_chunking_gives_the_same_result(long_names: bool, cuts: list[int]) -> None:
    """Fed in arbitrary pieces, the walker passes the stream whole, copies the manifest exactly,
    keeps the label and counts the regular files."""
    stream = _tar(long_names)
    out, manifest = io.BytesIO(), io.BytesIO()
    tap = _TarTap(out, manifest)
    position, i = 0, 0
    while position < len(stream):
        size = cuts[i % len(cuts)]
        tap.write(memoryview(stream)[position : position + size])
        position += size
        i += 1
    assert out.getvalue() == stream
    assert manifest.getvalue() == MANIFEST
    assert tap.manifest_seen
    assert bytes(tap.label) == LABEL
    assert bytes(tap.manifest_tail) == MANIFEST[-len(tap.manifest_tail) :]
    assert tap.files == 5 + long_names


def test_a_member_named_like_the_manifest_in_a_subdirectory_is_not_it() -> None:
    """Only the top-level backup_manifest is copied out."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("base/backup_manifest")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    manifest = io.BytesIO()
    tap = _TarTap(io.BytesIO(), manifest)
    tap.write(out.getvalue())
    assert not tap.manifest_seen
    assert manifest.getvalue() == b""
