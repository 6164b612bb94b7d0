"""Files jobs end to end: scan the source, store what a full, differential or incremental backup
needs (`data.tar` artifact) and the tree of the moment (`tree.json` artifact); restore a backup by
writing its tree from the data of every backup in its chain; check a restored tree.

The tree of each backup is also kept, unencrypted, in the agent's data directory (the job's
tree cache): the next incremental compares against it without needing the private key that the
backup host is meant not to hold. Without it (a new host, a lost data directory) the tree is read
from the repository when an identity is configured, and otherwise the backup becomes a full.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import zstandard

from agent.backup import files, tree
from agent.backup.artifact import Codec, Plain, fsync_dir, pump, verify
from agent.backup.errors import BackupError, IntegrityError
from agent.backup.manifest import BackupType, Manifest
from agent.backup.progress import Tracker
from agent.backup.repository import Repository, Staging
from agent.backup.tree import Entry, EntryType
from agent.config.backup import FilesJob

DATA = "data.tar"
TREE = "tree.json"


class TreeCache:
    """The trees of a job's recent backups, in `<data_dir>/backup-trees/<job>/<id>.tree.zst`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, job: str, backup_id: str) -> Path:
        return self.root / job / f"{backup_id}.tree.zst"

    def store(self, job: str, backup_id: str, encoded: bytes) -> None:
        """Keep a tree (as `tree.encode` gives it), atomically."""
        path = self._path(job, backup_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as file:
            file.write(zstandard.ZstdCompressor(level=1).compress(encoded))
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)

    def load(self, job: str, backup_id: str) -> list[Entry] | None:
        """A cached tree, or None when absent or unreadable."""
        try:
            raw = self._path(job, backup_id).read_bytes()
            return tree.decode(zstandard.ZstdDecompressor().decompress(raw))
        except (OSError, zstandard.ZstdError, IntegrityError):
            return None

    def keep_only(self, job: str, keep: set[str]) -> None:
        """Drop the cached trees of backups not in `keep`."""
        folder = self.root / job
        if folder.is_dir():
            for path in folder.glob("*.tree.zst"):
                if path.name.removesuffix(".tree.zst") not in keep:
                    path.unlink(missing_ok=True)


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """What a files backup will be: its type, parent and the reference tree (None: full)."""

    type: BackupType
    parent: Manifest | None
    reference: list[Entry] | None
    note: str | None = None


def read_tree(repository: Repository, manifest: Manifest, identities: Sequence[Any]) -> list[Entry]:
    """The tree of a committed backup, from its artifact."""
    info = manifest.artifact(TREE)
    path = repository.backup_path(manifest.job, manifest.id) / info.name
    sink = _Collect()
    pump(path, info, sink, identities)
    return tree.decode(bytes(sink.data))


class _Collect:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes | memoryview) -> int:
        self.data += data
        return len(data)


def plan(
    wanted: BackupType,
    history: Sequence[Manifest],
    cache: TreeCache,
    repository: Repository,
    identities: Sequence[Any],
) -> Plan:
    """The parent and reference tree of a new backup of type `wanted` over the job's `history`
    (oldest first); a full when there is nothing to build on."""
    if wanted is BackupType.FULL:
        return Plan(BackupType.FULL, None, None)
    fulls = [m for m in history if m.type is BackupType.FULL]
    if not fulls:
        return Plan(BackupType.FULL, None, None, "no full backup yet: a full was taken")
    parent = fulls[-1] if wanted is BackupType.DIFFERENTIAL else history[-1]
    reference = cache.load(parent.job, parent.id)
    if reference is None and identities:
        reference = read_tree(repository, parent, identities)
    if reference is None:
        note = f"no tree of {parent.id} here and no identity to read it: a full was taken"
        return Plan(BackupType.FULL, None, None, note)
    return Plan(wanted, parent, reference)


def backup(
    job: FilesJob,
    staging: Staging,
    codec: Codec,
    planned: Plan,
    tracker: Tracker,
) -> tuple[list[Any], dict[str, Any], bytes]:
    """Write the data and tree artifacts of one backup into `staging`; its artifact records,
    details and tree (encoded)."""
    scanner = tree.Scanner(Path(job.source), job.exclude, job.one_file_system)
    reference = tree.by_path(planned.reference) if planned.reference is not None else None
    # The scan feeds the tar as it walks: no pass over the tree before the first byte.
    tracker.phase("backing up", None)
    items = _changes(scanner.walk(), reference, job, tracker)
    with staging.artifact(DATA, codec) as writer:
        entries, stored = files.write_tar(
            Path(job.source), items, _Tracked(writer, tracker), staging.id
        )
        # Ending the data artifact waits for zstd's last block, the encryption thread and the
        # disk, all outside the GIL: the tree is encoded and its own artifact written meanwhile.
        with ThreadPoolExecutor(1, thread_name_prefix="vigil-finish") as pool:
            finishing = pool.submit(writer.finish)
            encoded = tree.encode(entries)
            tracker.phase("writing the tree", None)
            with staging.artifact(TREE, codec) as tree_writer:
                tree_writer.write(encoded)
                tree_info = tree_writer.finish()
            data = finishing.result()
    skipped = scanner.skipped()
    kinds = [e.type for e in entries]
    details = {
        "source": job.source,
        "files": kinds.count(EntryType.FILE),
        "directories": kinds.count(EntryType.DIR),
        "links": kinds.count(EntryType.LINK),
        "source_bytes": sum(e.size for e in entries if e.type is EntryType.FILE),
        "stored_files": stored.files,
        "stored_bytes": stored.bytes,
        "changed_during_backup": stored.changed_during,
        "vanished": len(stored.vanished),
        "skipped_special": skipped.special,
        "skipped_other_filesystems": skipped.other_filesystem,
    }
    if planned.note:
        details["note"] = planned.note
    return [data, tree_info], details, encoded


def _changes(
    entries: Iterable[Entry],
    reference: dict[str, Entry] | None,
    job: FilesJob,
    tracker: Tracker,
) -> Iterator[tuple[Entry, bool]]:
    """Each entry, and whether its content must be stored: every file of a full backup (no
    reference); else a file that is new or whose state differs from the reference's (with
    `rehash`, also one whose content hash differs). An unchanged file takes the reference's
    hash and holder."""
    if reference is None:
        # Every entry as it is (the tar writer stores only files): no Python frame per entry.
        return zip(entries, itertools.repeat(True))
    return _compared(entries, reference, job, tracker)


def _compared(
    entries: Iterable[Entry], reference: dict[str, Entry], job: FilesJob, tracker: Tracker
) -> Iterator[tuple[Entry, bool]]:
    for entry in entries:
        if entry.type is not EntryType.FILE:
            yield entry, False
            continue
        before = reference.get(entry.path)
        if before is None or not entry.same_state(before):
            yield entry, True
            continue
        if job.rehash:
            tracker.check()
            try:
                digest = files.hash_file(Path(job.source) / entry.path)
            except OSError:
                digest = ""
            if digest != before.digest:
                yield entry, True
                continue
        yield dataclasses.replace(entry, digest=before.digest, holder=before.holder), False


class _Tracked:
    """A writer that reports every write to the tracker (which may stop the run)."""

    def __init__(self, writer: Any, tracker: Tracker) -> None:
        self.writer = writer
        self.tracker = tracker

    def write(self, data: bytes | memoryview) -> int:
        size = self.writer.write(data)
        self.tracker.advance(len(data))
        return int(size)


def chain(repository: Repository, manifest: Manifest) -> list[Manifest]:
    """The backups a restore of `manifest` reads, full first; IntegrityError when a link is
    missing or not of the same job."""
    found = [manifest]
    seen = {manifest.id}
    while found[-1].parent is not None:
        parent_id = found[-1].parent
        if parent_id in seen:
            raise IntegrityError(f"backup {manifest.id}: its chain loops at {parent_id}")
        try:
            parent = repository.read(manifest.job, parent_id)
        except BackupError as exc:
            raise IntegrityError(
                f"backup {manifest.id} needs {parent_id}, which is unusable: {exc}"
            ) from None
        seen.add(parent_id)
        found.append(parent)
    return list(reversed(found))


def verify_chain(
    repository: Repository, backups: Sequence[Manifest], identities: Sequence[Any], tracker: Tracker
) -> None:
    """Read every artifact of `backups` through every layer."""
    total = sum(m.stored_bytes for m in backups)
    tracker.phase("verifying", total)
    for manifest in backups:
        folder = repository.backup_path(manifest.job, manifest.id)
        for info in manifest.artifacts:
            verify(folder / info.name, info, identities, tracker.advance)


def verify_backup(
    repository: Repository, manifest: Manifest, identities: Sequence[Any], tracker: Tracker
) -> None:
    """Every artifact of the backup through every layer, then its tree: every file's data must
    be in a backup of its chain that is still there."""
    backups = chain(repository, manifest)
    verify_chain(repository, [manifest], identities, tracker)
    entries = read_tree(repository, manifest, identities)
    missing = {e.holder for e in entries if e.holder} - {m.id for m in backups}
    if missing:
        raise IntegrityError(f"backup {manifest.id} needs data of {min(missing)}, which is gone")


def restore(
    repository: Repository,
    manifest: Manifest,
    destination: Path,
    identities: Sequence[Any],
    tracker: Tracker,
    force: bool = False,
) -> dict[str, Any]:
    """Write the tree of `manifest` into `destination` (empty unless `force`), from its chain,
    verified first; what it wrote."""
    files.check_destination(destination, force)
    backups = chain(repository, manifest)
    verify_chain(repository, backups, identities, tracker)
    entries = read_tree(repository, manifest, identities)
    holders = {e.holder for e in entries if e.type is EntryType.FILE}
    unknown = holders - {m.id for m in backups}
    if unknown:
        raise IntegrityError(
            f"backup {manifest.id} names data of {sorted(unknown)[0]}, not in its chain"
        )
    total = sum(e.size for e in entries if e.type is EntryType.FILE)
    tracker.phase("restoring", total)
    with files.TreeWriter(destination, entries, force) as writer:
        writer.directories()
        for backup in backups:
            if backup.id not in holders:
                continue
            info = backup.artifact(DATA)
            path = repository.backup_path(backup.job, backup.id) / info.name
            with Plain(path, info, identities) as stream:
                writer.extract(stream, backup.id, tracker.advance)
        writer.links()
        writer.metadata()
    kinds = [e.type for e in entries]
    return {
        "destination": str(destination),
        "files": kinds.count(EntryType.FILE),
        "directories": kinds.count(EntryType.DIR),
        "links": kinds.count(EntryType.LINK),
        "bytes": total,
        "chain": [m.id for m in backups],
    }


def check_restored(destination: Path, required: Sequence[str]) -> list[str]:
    """What a drill finds wrong with a restored tree: required paths that are missing."""
    problems = []
    for relative in required:
        if not (destination / relative).exists():
            problems.append(f"{relative} is missing")
    return problems
