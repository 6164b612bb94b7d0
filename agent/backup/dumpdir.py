"""pg_dump's directory format as one tar: written flat (toc.dat first) into an artifact, and read
back into a scratch directory with nothing but the plain files pg_dump writes (no path, link or
device can reach the disk)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent.backup.artifact import CHUNK, Plain, Writable, storage_error
from agent.backup.errors import BackupError, IntegrityError, Reason
from agent.backup.manifest import ArtifactInfo
from agent.backup.pgprocess import remaining

READ_BYTES = 1 << 20
_BLOCK = 512
# What pg_dump -Fd writes: toc.dat, <dumpId>.dat, blobs.toc, blob_<oid>.dat; flat, plain names.
_MEMBER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$")


def write_tar(folder: Path, out: Writable, deadline: float | None = None) -> int:
    """Write the files of pg_dump's output directory as a PAX tar (toc.dat first); the count."""
    names = sorted(os.listdir(folder), key=lambda n: (n != "toc.dat", n))
    for name in names:
        remaining(deadline)
        path = folder / name
        try:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode) or not _MEMBER.match(name):
                raise BackupError(Reason.TOOL, f"pg_dump wrote {name!r}, which is not a dump file")
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = st.st_size, 0o600, int(st.st_mtime)
            out.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
            left = st.st_size
            with open(path, "rb") as file:
                while left and (chunk := file.read(min(READ_BYTES, left))):
                    out.write(chunk)
                    left -= len(chunk)
        except OSError as exc:
            raise storage_error(exc, f"cannot read {path}") from None
        if left:
            raise BackupError(Reason.INTERNAL, f"{name} shrank while it was archived")
        out.write(bytes(-st.st_size % _BLOCK))
    out.write(bytes(2 * _BLOCK))
    return len(names)


def untar(
    path: Path,
    info: ArtifactInfo,
    identities: Sequence[Any],
    dest: Path,
    progress: Callable[[int], None] | None = None,
    wanted: frozenset[str] | None = None,
) -> None:
    """Decode a directory-format artifact into the new directory `dest` (only the `wanted`
    members, when given), refusing any member pg_dump does not write: a path, a link, a device.
    Every byte is decoded and checked before this returns."""
    dest.mkdir(mode=0o700)
    plain = Plain(path, info, identities, progress)
    seen: set[str] = set()
    try:
        with tarfile.open(fileobj=plain, mode="r|", bufsize=READ_BYTES) as tar:  # type: ignore[call-overload]
            for member in tar:
                if not member.isreg() or not _MEMBER.match(member.name) or member.name in seen:
                    raise IntegrityError(f"{info.name}: {member.name!r} is not a pg_dump file")
                seen.add(member.name)
                if wanted is not None and member.name not in wanted:
                    continue
                source = tar.extractfile(member)
                assert source is not None
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                with os.fdopen(os.open(dest / member.name, flags, 0o600), "wb") as out:
                    shutil.copyfileobj(source, out, READ_BYTES)
        # Read to the end, so the decoder checks the hash of the whole artifact.
        while plain.read(CHUNK):
            pass
    except tarfile.TarError as exc:
        # The decoder's error (a wrong key, a bad hash) is the real cause, if it has one; read
        # to the end so that it finishes rather than being cut off.
        with contextlib.suppress(OSError):
            while plain.read(CHUNK):
                pass
        plain.close()
        raise IntegrityError(f"{info.name}: not a valid tar: {exc}") from None
    except BaseException:
        with contextlib.suppress(BackupError):  # the error raised here says more
            plain.close()
        raise
    plain.close()
    if "toc.dat" not in seen:
        raise IntegrityError(f"{info.name}: holds no toc.dat")
