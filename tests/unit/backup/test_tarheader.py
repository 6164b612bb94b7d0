"""The direct tar header encoder reads back with Python's tarfile as written: any name (long,
non-ASCII, undecodable bytes), link target, size, mode, owner and mtime."""

from __future__ import annotations

import io
import tarfile

from hypothesis import given
from hypothesis import strategies as st

from agent.backup import tarheader

NAMES = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00/"),
    min_size=1,
    max_size=60,
)
PATHS = st.lists(NAMES, min_size=1, max_size=6).map("/".join)


@given(
    path=PATHS,
    mode=st.integers(0, 0o7777),
    uid=st.integers(0, 2**32 - 1),
    gid=st.integers(0, 2**32 - 1),
    mtime=st.integers(0, 2**40),
    size=st.integers(0, 3000),
)
def test_file_headers_read_back(
    path: str, mode: int, uid: int, gid: int, mtime: int, size: int
) -> None:
    """A file member's every field and content come back from tarfile."""
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    raw = tarheader.header(path, tarheader.FILE, mode, uid, gid, mtime, size)
    raw += data + bytes(-size % 512) + bytes(1024)
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r|") as archive:
        [member] = [
            m for m in archive if (extracted := archive.extractfile(m)) and extracted.read() == data
        ]
    assert (member.name, member.mode, member.uid, member.gid) == (path, mode, uid, gid)
    assert (member.mtime, member.size, member.isreg()) == (mtime, size, True)


@given(path=PATHS, target=st.text(min_size=1, max_size=300).filter(lambda t: "\x00" not in t))
def test_links_and_directories_read_back(path: str, target: str) -> None:
    """A link keeps its target (long or not ASCII), a directory its trailing-slash name."""
    raw = tarheader.header(path, tarheader.LINK, 0o777, 0, 0, 0, link=target)
    raw += tarheader.header(path + "/d/", tarheader.DIRECTORY, 0o755, 0, 0, 0)
    raw += bytes(1024)
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r|") as archive:
        link, directory = list(archive)
    assert (link.name, link.linkname, link.issym()) == (path, target, True)
    assert (directory.name, directory.isdir()) == (path + "/d", True)


def test_huge_sizes_use_pax() -> None:
    """A size past the 11 octal digits of ustar is carried by a pax record."""
    size = 9 * 2**30
    raw = tarheader.header("big", tarheader.FILE, 0o644, 0, 0, 0, size)
    info = tarfile.TarInfo.frombuf(raw[:512], "utf-8", "surrogateescape")
    assert info.type == b"x"
    assert b"size=9663676416" in raw
