"""Physical base backups of a PostgreSQL cluster (`pg_basebackup`) and the state of its WAL
archiver.

`pg_basebackup -D - -Ft -X fetch` writes one tar to its stdout: the data directory, the WAL from
the backup's start to its end (`pg_wal/`, so a base backup restores on its own, without the
archive) and, as its last member, the `backup_manifest`. The stream goes straight into the
`base.tar` artifact (compressed, encrypted and hashed in one pass: nothing uncompressed ever
touches the disk), while a small tar header walker copies the `backup_manifest` member into an
artifact of its own and keeps `backup_label`, whose start LSN and timeline, with the manifest's
WAL range, become the backup's details. Writing to stdout has two limits, both PostgreSQL's:
WAL cannot be streamed (`-X stream`), so WAL must stay on the server until the backup ends, which
`archive_mode = on` guarantees (a segment is kept until archived); and a cluster with tablespaces
outside the data directory cannot be backed up this way (pg_basebackup refuses, and says so).
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import threading
from collections.abc import Callable
from typing import Any

from agent.backup.artifact import CHUNK, Codec, Writable
from agent.backup.errors import BackupError, Reason
from agent.backup.manifest import ArtifactInfo
from agent.backup.pgsql import one_row
from agent.backup.pgtools import PgTarget, binary, failure
from agent.backup.repository import Staging
from agent.backup.walnames import format_lsn, parse_lsn, segment_of
from agent.config.backup import PostgresJob

BASE = "base.tar"
MANIFEST = "backup_manifest"
LABEL = "backup_label"
_BLOCK = 512
_READ_BYTES = CHUNK * 8
_TAIL_BYTES = 1 << 16
_START = re.compile(r"^START WAL LOCATION: ([0-9A-F]+/[0-9A-F]+) \(file ([0-9A-F]{24})\)$", re.M)
_TIMELINE = re.compile(r"^START TIMELINE: (\d+)$", re.M)
_START_TIME = re.compile(r"^START TIME: (.+)$", re.M)
_RANGE = re.compile(
    r'"Timeline":\s*(\d+),\s*"Start-LSN":\s*"([0-9A-F/]+)",\s*"End-LSN":\s*"([0-9A-F/]+)"'
)


@dataclasses.dataclass(frozen=True, slots=True)
class BaseBackupResult:
    """What a base backup stored (for the manifest) and what it is (its details)."""

    artifacts: tuple[ArtifactInfo, ...]
    details: dict[str, Any]


class _TarTap:
    """Passes a tar stream through to `out` while walking its headers: counts the files, copies
    the `backup_manifest` member into `manifest` and keeps the `backup_label` member."""

    def __init__(self, out: Writable, manifest: Writable) -> None:
        self.out = out
        self.manifest = manifest
        self.files = 0
        self.label = bytearray()
        self.manifest_tail = bytearray()
        self.manifest_seen = False
        self._header = bytearray()
        self._data_left = 0  # member bytes still to come
        self._pad_left = 0  # padding to the next 512-byte block
        self._into: bytearray | Writable | None = None
        self._long_name: str | None = None
        self._meta: bytearray | None = None  # a GNU long name or PAX header being read
        self._meta_kind = b""

    def write(self, data: bytes | memoryview) -> int:
        """Pass `data` on and walk the headers it holds."""
        self.out.write(data)
        view = memoryview(data)
        while view:
            if self._data_left:
                n = min(self._data_left, len(view))
                self._take(view[:n])
                self._data_left -= n
                view = view[n:]
                if not self._data_left:
                    self._member_done()
            elif self._pad_left:
                n = min(self._pad_left, len(view))
                self._pad_left -= n
                view = view[n:]
            else:
                n = _BLOCK - len(self._header)
                self._header += view[:n]
                view = view[n:]
                if len(self._header) == _BLOCK:
                    self._begin(bytes(self._header))
                    self._header.clear()
        return len(data)

    def _take(self, chunk: memoryview) -> None:
        """Route a piece of the current member's data to whoever keeps it."""
        if self._meta is not None:
            self._meta += chunk
        elif self._into is self.manifest:
            self.manifest.write(chunk)
            self.manifest_tail += chunk
            del self.manifest_tail[:-_TAIL_BYTES]
        elif isinstance(self._into, bytearray):
            self._into += chunk

    def _begin(self, block: bytes) -> None:
        """Start the member whose 512-byte header is `block`."""
        if not any(block):
            return  # end-of-archive blocks
        size = _octal(block[124:136])
        kind = block[156:157]
        name = self._long_name or _name(block)
        self._long_name = None
        self._into = None
        if kind in (b"L", b"x"):
            self._meta = bytearray()
        elif kind in (b"0", b"\0"):
            self.files += 1
            if name == MANIFEST:
                self.manifest_seen = True
                self._into = self.manifest
            elif name == LABEL:
                self._into = self.label
        self._meta_kind = kind
        self._data_left = size
        self._pad_left = -size % _BLOCK
        if not size:
            self._member_done()

    def _member_done(self) -> None:
        """End the current member; a long name or PAX path applies to the next one."""
        if self._meta is not None:
            raw = bytes(self._meta)
            self._meta = None
            if self._meta_kind == b"L":
                self._long_name = raw.rstrip(b"\0").decode("utf-8", "replace")
            else:
                match = re.search(rb"\d+ path=([^\n]*)\n", raw)
                self._long_name = match.group(1).decode("utf-8", "replace") if match else None
        self._into = None


def _octal(field: bytes) -> int:
    """A tar header number: octal text, or base-256 when its first bit is set."""
    if field[0] & 0x80:  # base-256, for members of 8 GiB and more
        return int.from_bytes(field[1:], "big")
    text = field.rstrip(b"\0 ").strip()
    return int(text, 8) if text else 0


def _name(block: bytes) -> str:
    """A ustar header's member name, its prefix field joined in front."""
    name = block[:100].split(b"\0", 1)[0]
    if block[257:262] == b"ustar":
        prefix = block[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    return name.decode("utf-8", "replace").removeprefix("./")


def _server_facts(target: PgTarget) -> dict[str, Any]:
    """The server's version, system identifier, WAL segment size, archive mode and clock."""
    sql = (
        "SELECT current_setting('server_version'), current_setting('server_version_num')::int,"
        " (SELECT system_identifier::text FROM pg_control_system()),"
        " (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'),"  # bytes
        " current_setting('archive_mode'),"
        " extract(epoch FROM clock_timestamp())::float8"
    )
    row = one_row(target, sql, f"query {target.host}:{target.port}")
    return {
        "server_version": row[0],
        "server_version_num": row[1],
        "system_identifier": row[2],
        "wal_segment_bytes": row[3],
        "archive_mode": row[4],
        "server_time": row[5],
    }


def base_backup(
    job: PostgresJob,
    target: PgTarget,
    staging: Staging,
    codec: Codec,
    progress: Callable[[int], None] | None = None,
    timeout: float | None = None,
) -> BaseBackupResult:
    """Run `pg_basebackup` into the `base.tar` and `backup_manifest` artifacts of `staging`;
    BackupError (source, tool, timeout, storage) when it fails."""
    before = _server_facts(target)
    label = f"vigil {job.name} {staging.id}"
    argv = [
        binary("pg_basebackup", target.bin_dir),
        "--pgdata=-",
        "--format=tar",
        "--wal-method=fetch",
        "--checkpoint=fast",
        "--manifest-checksums=SHA256",
        f"--label={label}",
        "--no-password",
    ]
    with (
        staging.artifact(BASE, codec, progress) as base,
        staging.artifact(MANIFEST, codec) as manifest,
    ):
        tap = _TarTap(base, manifest)
        _stream(argv, target.env(), tap, timeout)
        if not tap.manifest_seen:
            raise BackupError(Reason.TOOL, "pg_basebackup wrote no backup_manifest")
        base_info = base.finish()
        manifest_info = manifest.finish()
    after = _server_facts(target)
    details = _details(before, after, tap, label)
    return BaseBackupResult((base_info, manifest_info), details)


def _stream(argv: list[str], env: dict[str, str], out: _TarTap, timeout: float | None) -> None:
    """Run `argv`, its stdout into `out`; killed (BackupError timeout) past `timeout`."""
    try:
        proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except OSError as exc:
        raise BackupError(Reason.TOOL, f"cannot run pg_basebackup: {exc.strerror}") from None
    assert proc.stdout is not None
    assert proc.stderr is not None
    stdout: Any = proc.stdout  # a BufferedReader, which reads into a buffer
    stderr = bytearray()
    err_pipe = proc.stderr
    reader = threading.Thread(target=lambda: stderr.extend(err_pipe.read()), daemon=True)
    reader.start()
    expired = threading.Event()

    def expire() -> None:
        """Kill pg_basebackup, remembering why."""
        expired.set()
        proc.kill()

    timer = threading.Timer(timeout, expire) if timeout else None
    if timer is not None:
        timer.start()
    buffer = bytearray(_READ_BYTES)
    view = memoryview(buffer)
    try:
        while size := stdout.readinto(buffer):
            out.write(view[:size])
    except BaseException:
        proc.kill()
        raise
    finally:
        if timer is not None:
            timer.cancel()
        returncode = proc.wait()
        reader.join()
        proc.stdout.close()
        proc.stderr.close()
    if expired.is_set():
        raise BackupError(Reason.TIMEOUT, f"pg_basebackup did not finish in {timeout:.0f} s")
    if returncode != 0:
        raise failure("pg_basebackup", returncode, bytes(stderr))


def _details(
    before: dict[str, Any], after: dict[str, Any], tap: _TarTap, label: str
) -> dict[str, Any]:
    """The backup's facts from the server, its backup_label and its manifest's WAL range."""
    text = tap.label.decode("utf-8", "replace")
    start = _START.search(text)
    timeline = _TIMELINE.search(text)
    ranges = _RANGE.findall(tap.manifest_tail.decode("utf-8", "replace"))
    if start is None or timeline is None or not ranges:
        raise BackupError(Reason.TOOL, "pg_basebackup's backup_label or WAL range is unreadable")
    if before["system_identifier"] != after["system_identifier"]:
        raise BackupError(Reason.SOURCE, "the server changed during the backup")
    segment_bytes = int(before["wal_segment_bytes"])
    tli, stop = int(ranges[-1][0]), parse_lsn(ranges[-1][2])
    start_time = _START_TIME.search(text)
    return {
        "label": label,
        "server_version": before["server_version"],
        "server_version_num": before["server_version_num"],
        "system_identifier": before["system_identifier"],
        "archive_mode": before["archive_mode"],
        "timeline": int(timeline.group(1)),
        "stop_timeline": tli,
        "start_lsn": start.group(1),
        "stop_lsn": format_lsn(stop),
        "wal_start": start.group(2),
        "wal_stop": segment_of(stop, tli, segment_bytes).name(segment_bytes),
        "wal_segment_bytes": segment_bytes,
        "wal_included": True,
        "files": tap.files,
        "backup_start_time": start_time.group(1) if start_time else None,
        "server_start_time": before["server_time"],
        # Read after pg_basebackup returned: never earlier than the backup's real end, so a
        # backup chosen as having ended before a target time really did.
        "backup_end_time": after["server_time"],
    }


@dataclasses.dataclass(frozen=True, slots=True)
class ArchiverStatus:
    """The WAL archiver of a server: counts, the age of the last success, files waiting."""

    archived_count: int
    failed_count: int
    last_archived_age_seconds: float | None
    pending: int
    """`.ready` files in `pg_wal/archive_status`: WAL not archived yet."""
    failing: bool
    """The last attempt failed (its failure is newer than the last success)."""


def archiver_status(target: PgTarget) -> ArchiverStatus:
    """`pg_stat_archiver` and the `.ready` count of `target` (needs pg_monitor or superuser);
    BackupError (source) when the server cannot be asked."""
    sql = (
        "SELECT archived_count, failed_count,"
        " extract(epoch FROM now() - last_archived_time)::float8,"
        " (SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'),"
        " coalesce(last_failed_time > coalesce(last_archived_time, '-infinity'), false)"
        " FROM pg_stat_archiver"
    )
    row = one_row(target, sql, f"read the archiver of {target.host}:{target.port}")
    return ArchiverStatus(int(row[0]), int(row[1]), row[2], int(row[3]), bool(row[4]))
