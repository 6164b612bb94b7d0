"""The direct tar header encoder reads back with Python's tarfile as written: any name (long,
non-ASCII, undecodable bytes), link target, size, mode, owner and mtime. A pax header comes only
when a value does not fit ustar, and the ustar block then holds the stand-in a reader without
pax support shows."""

from __future__ import annotations

import io
import tarfile
from typing import Any

import pytest
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


MAX_ID = 0o7777777  # 7 octal digits: the largest uid or gid ustar holds
MAX_BIG = 0o77777777777  # 11 octal digits: the largest size or mtime ustar holds
PLAIN: dict[str, Any] = {"path": "a", "link": "", "size": 0, "mtime": 0, "uid": 0, "gid": 0}


def _member(
    path: str = "a", link: str = "", size: int = 0, mtime: int = 0, uid: int = 0, gid: int = 0
) -> bytes:
    """The header block(s) of a member with mode 0640: a link when `link` is given, else a file."""
    kind = tarheader.LINK if link else tarheader.FILE
    return tarheader.header(path, kind, 0o640, uid, gid, mtime, size, link)


def _read(raw: bytes) -> tarfile.TarInfo:
    """The first member as tarfile reads it, pax values applied (its data is not read)."""
    with tarfile.open(fileobj=io.BytesIO(raw + bytes(1024)), mode="r|") as archive:
        member = archive.next()
    assert member is not None
    return member


def _block(raw: bytes) -> tarfile.TarInfo:
    """One 512-byte header block read alone, as a reader without pax support sees it."""
    return tarfile.TarInfo.frombuf(raw, "utf-8", "surrogateescape")


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"path": "p" * 100},
        {"link": "t" * 100},
        {"size": MAX_BIG},
        {"mtime": MAX_BIG},
        {"uid": MAX_ID, "gid": MAX_ID},
        {"uid": 1, "gid": 1, "mtime": 1, "size": 1},
    ],
)
def test_values_that_fit_ustar_take_one_block(values: dict[str, Any]) -> None:
    """A member whose values all fit ustar (up to the edges) is one block, no pax header."""
    raw = _member(**values)
    assert len(raw) == 512
    assert raw[257:265] == b"ustar\x0000"
    got = _block(raw)
    v = PLAIN | values
    assert (got.name, got.linkname, got.size, got.mtime) == (
        v["path"],
        v["link"],
        v["size"],
        v["mtime"],
    )
    assert (got.uid, got.gid, got.mode) == (v["uid"], v["gid"], 0o640)


@pytest.mark.parametrize(
    ("values", "records", "fallback"),
    [
        ({"path": "p" * 101}, {"path": "p" * 101}, {"name": "p" * 100}),
        ({"path": "d/é"}, {"path": "d/é"}, {"name": "d/?"}),
        ({"path": "caf\udce9"}, {"path": "caf\udce9"}, {"name": "caf?"}),
        ({"link": "t" * 101}, {"linkpath": "t" * 101}, {"linkname": ""}),
        ({"link": "é"}, {"linkpath": "é"}, {"linkname": ""}),
        ({"link": "caf\udce9"}, {"linkpath": "caf\udce9"}, {"linkname": ""}),
        ({"size": MAX_BIG + 1}, {"size": str(MAX_BIG + 1)}, {"size": 0}),
        ({"mtime": MAX_BIG + 1}, {"mtime": str(MAX_BIG + 1)}, {"mtime": MAX_BIG}),
        ({"mtime": -1}, {"mtime": "-1"}, {"mtime": 0}),
        ({"uid": MAX_ID + 1}, {"uid": str(MAX_ID + 1)}, {"uid": 0}),
        ({"uid": -1}, {"uid": "-1"}, {"uid": 0}),
        ({"gid": MAX_ID + 1}, {"gid": str(MAX_ID + 1)}, {"gid": 0}),
        ({"gid": -1}, {"gid": "-1"}, {"gid": 0}),
        (
            {
                "path": "é" * 60,
                "link": "t" * 200,
                "size": 2**40,
                "mtime": -5,
                "uid": 2**32,
                "gid": -7,
            },
            {
                "path": "é" * 60,
                "linkpath": "t" * 200,
                "size": str(2**40),
                "mtime": "-5",
                "uid": str(2**32),
                "gid": "-7",
            },
            {"name": "?" * 60, "linkname": "", "size": 0, "mtime": 0, "uid": 0, "gid": 0},
        ),
    ],
)
def test_values_past_ustar_go_to_pax(
    values: dict[str, Any], records: dict[str, str], fallback: dict[str, Any]
) -> None:
    """A value ustar cannot hold is a pax record, read back exactly, and the ustar block shows
    a stand-in (a truncated ASCII name, no link, zero or the clamped mtime)."""
    raw = _member(**values)
    member = _read(raw)
    assert member.pax_headers == records
    v = PLAIN | values
    assert (member.name, member.linkname, member.size) == (v["path"], v["link"], v["size"])
    assert (member.mtime, member.uid, member.gid) == (v["mtime"], v["uid"], v["gid"])
    ustar = _block(raw[-512:])
    assert {key: getattr(ustar, key) for key in fallback} == fallback
    assert (ustar.mode, ustar.type) == (0o640, tarheader.LINK if v["link"] else tarheader.FILE)


def test_the_pax_header_block() -> None:
    """The pax header block names `././@PaxHeader`, mode 0644, owner and mtime 0, no link,
    and its size is the records' length, padded to whole blocks before the member."""
    raw = _member(path="p" * 200)
    record = b"210 path=" + b"p" * 200 + b"\n"
    pax = _block(raw[:512])
    assert (pax.name, pax.type, pax.size, pax.linkname) == ("././@PaxHeader", b"x", 210, "")
    assert (pax.mode, pax.uid, pax.gid, pax.mtime) == (0o644, 0, 0, 0)
    assert raw[512:1024] == record + bytes(512 - len(record))
    assert len(raw) == 3 * 512


def test_links_and_directories_carry_no_data() -> None:
    """Without `size` and `link`, a directory's header says size 0 and no link target."""
    raw = tarheader.header("d/", tarheader.DIRECTORY, 0o755, 0, 0, 0)
    directory = _block(raw)
    assert (directory.name, directory.size, directory.linkname) == ("d", 0, "")
    assert directory.isdir()
    link = _block(tarheader.header("l", tarheader.LINK, 0o777, 0, 0, 0, link="d"))
    assert (link.size, link.linkname) == (0, "d")


@pytest.mark.parametrize(
    ("values", "record"),
    [
        ({"uid": -1}, b"9 uid=-1\n"),
        ({"path": "é"}, "11 path=é\n".encode()),
        ({"path": "é" * 45}, ("99 path=" + "é" * 45 + "\n").encode()),
        ({"path": "é" * 45 + "a"}, ("101 path=" + "é" * 45 + "a\n").encode()),
    ],
)
def test_a_pax_record_length_counts_itself_in_fewest_digits(
    values: dict[str, Any], record: bytes
) -> None:
    """A pax record starts with its own length in bytes, written with the fewest digits that
    make it true (9 not 10; 11 where 10 cannot be; 101 where 100 cannot be)."""
    raw = _member(**values)
    assert int(record.split(b" ")[0]) == len(record)
    assert _block(raw[:512]).size == len(record)
    assert raw[512 : 512 + len(record)] == record
