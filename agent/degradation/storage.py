"""Durable files: atomic replacement (temp file, fsync, rename, fsync of the directory) and an
append-only JSON-lines log whose torn last line, left by a crash, is ignored on read."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson


def atomic_write(path: Path, data: bytes, create_parent: bool = True) -> None:
    """Replace `path` with `data` so that a crash at any instant leaves the old or the new file.

    With `create_parent` false a missing directory is an error rather than created anew.
    """
    directory = path.parent
    if create_parent:
        directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_directory(directory)


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new file in `directory` durable."""
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def append_lines(path: Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Append one JSON object per line and fsync before returning."""
    append_bytes(path, b"".join(dump_line(r) + b"\n" for r in records))


def append_bytes(path: Path, data: bytes) -> None:
    """Append `data` (whole lines) and fsync before returning; a new file's entry too."""
    if not data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with path.open("a+b") as file:  # appends wherever it reads
        end = file.seek(0, os.SEEK_END)
        if end and os.pread(file.fileno(), 1, end - 1) != b"\n":
            # A torn last line (a crash mid-append): end it, or the first new line would be
            # glued to it and lost with it.
            data = b"\n" + data
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    if new:
        fsync_directory(path.parent)


def dump_line(record: Mapping[str, Any]) -> bytes:
    """`record` as compact UTF-8 JSON on one line: how every JSON-lines file here writes one."""
    try:
        return orjson.dumps(record, default=str, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # what orjson refuses (ints past 64 bits, lone surrogates): the stdlib
        return json.dumps(record, separators=(",", ":"), default=str).encode()


def read_lines(path: Path) -> list[dict[str, Any]]:
    """Every complete JSON line of `path`; a torn line (a crash mid-append) is skipped."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    return parse_lines(raw.split(b"\n"))


def parse_lines(lines: Iterable[bytes]) -> list[dict[str, Any]]:
    """The JSON objects among `lines`; anything else (blank, torn) is skipped."""
    records = []
    for line in lines:
        try:
            record = orjson.loads(line)
        except ValueError:  # blank lines included: orjson refuses empty input
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
