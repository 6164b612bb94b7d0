"""The manifest beside each backup's artifacts: what the backup is, what it depends on, and the
size and SHA-256 of every artifact, sealed with its own checksum. A repository's manifests alone
can rebuild the catalogue."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from agent.backup.errors import IntegrityError

Compression = Literal["zstd", "gzip", "none"]

FORMAT = 1
ID_PATTERN = re.compile(r"^\d{8}T\d{6}Z-[FDI](\.\d{1,4})?$")
JOB_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


@dataclasses.dataclass(frozen=True, slots=True)
class ArtifactInfo:
    """What was stored: the file's name, sizes before and after encoding, and its SHA-256."""

    name: str
    plain_bytes: int
    stored_bytes: int
    sha256: str
    compression: Compression
    key_id: str | None

    def as_json(self) -> dict[str, Any]:
        """The manifest's record of this artifact."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ArtifactInfo:
        """The record read back; IntegrityError when it lacks a field or has a wrong type."""
        try:
            info = cls(
                name=str(data["name"]),
                plain_bytes=int(data["plain_bytes"]),
                stored_bytes=int(data["stored_bytes"]),
                sha256=str(data["sha256"]),
                compression=data["compression"],
                key_id=None if data["key_id"] is None else str(data["key_id"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise IntegrityError(f"artifact record is malformed: {exc!r}") from None
        if (
            info.compression not in ("zstd", "gzip", "none")
            or "/" in info.name
            or info.name.startswith(".")
        ):
            raise IntegrityError(f"artifact record is malformed: {info.name!r}")
        return info


class Kind(enum.StrEnum):
    """What a backup holds."""

    FILES = "files"
    POSTGRES_LOGICAL = "postgres_logical"
    POSTGRES_PHYSICAL = "postgres_physical"


class BackupType(enum.StrEnum):
    """Full; differential (changes since the last full); incremental (since the last backup)."""

    FULL = "full"
    DIFFERENTIAL = "differential"
    INCREMENTAL = "incremental"

    @property
    def letter(self) -> str:
        """The letter ending a backup id: F, D or I."""
        return self.value[0].upper()


def backup_id(started: float, backup_type: BackupType, taken: set[str] | frozenset[str]) -> str:
    """A new id that sorts by start time: `20261207T051500Z-F`, with `.1`, `.2`... when that
    second already has one in `taken`."""
    stamp = datetime.fromtimestamp(started, UTC).strftime("%Y%m%dT%H%M%SZ")
    base = f"{stamp}-{backup_type.letter}"
    candidate, n = base, 0
    while candidate in taken:
        n += 1
        candidate = f"{base}.{n}"
    return candidate


@dataclasses.dataclass(frozen=True, slots=True)
class Manifest:
    """One backup, as its repository records it."""

    id: str
    job: str
    kind: Kind
    type: BackupType
    parent: str | None
    """The backup this one's changes are relative to (none for a full)."""
    started: float
    ended: float
    artifacts: tuple[ArtifactInfo, ...]
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Kind-specific facts: file counts, LSNs, the server version."""
    version: str = ""
    """The Vigil that wrote it."""

    @property
    def duration(self) -> float:
        """Seconds from start to end."""
        return self.ended - self.started

    @property
    def plain_bytes(self) -> int:
        """Bytes before compression and encryption, over every artifact."""
        return sum(a.plain_bytes for a in self.artifacts)

    @property
    def stored_bytes(self) -> int:
        """Bytes in the repository, over every artifact."""
        return sum(a.stored_bytes for a in self.artifacts)

    @property
    def key_id(self) -> str | None:
        """The recipient set its artifacts are encrypted to, if any."""
        return next((a.key_id for a in self.artifacts if a.key_id), None)

    def artifact(self, stem: str) -> ArtifactInfo:
        """The artifact `stem` whatever its codec's suffix (`data.tar` is `data.tar.zst.age`);
        IntegrityError when the manifest has none."""
        for info in self.artifacts:
            if info.name == stem or info.name.startswith(stem + "."):
                return info
        raise IntegrityError(f"backup {self.id} has no artifact {stem}")

    def to_json(self) -> bytes:
        """The sealed JSON document (sorted keys, `checksum` over the rest)."""
        body = {
            "format": FORMAT,
            "id": self.id,
            "job": self.job,
            "kind": self.kind.value,
            "type": self.type.value,
            "parent": self.parent,
            "started": self.started,
            "ended": self.ended,
            "artifacts": [a.as_json() for a in self.artifacts],
            "details": dict(self.details),
            "version": self.version,
        }
        sealed = {**body, "checksum": _checksum(body)}
        return orjson.dumps(sealed, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b"\n"

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        """Parse and check a sealed manifest; IntegrityError when anything is off."""
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise IntegrityError(f"manifest is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise IntegrityError("manifest is not a JSON object")
        checksum = data.pop("checksum", None)
        if checksum != _checksum(data):
            raise IntegrityError("manifest checksum does not match its content")
        if data.get("format") != FORMAT:
            raise IntegrityError(f"manifest format {data.get('format')!r} is not {FORMAT}")
        try:
            manifest = cls(
                id=str(data["id"]),
                job=str(data["job"]),
                kind=Kind(data["kind"]),
                type=BackupType(data["type"]),
                parent=None if data["parent"] is None else str(data["parent"]),
                started=float(data["started"]),
                ended=float(data["ended"]),
                artifacts=tuple(ArtifactInfo.from_json(a) for a in data["artifacts"]),
                details=dict(data["details"]),
                version=str(data.get("version", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise IntegrityError(f"manifest is malformed: {exc!r}") from None
        if not ID_PATTERN.match(manifest.id) or not JOB_PATTERN.match(manifest.job):
            raise IntegrityError(f"manifest names an impossible backup {manifest.id!r}")
        if (manifest.type is BackupType.FULL) != (manifest.parent is None):
            raise IntegrityError(f"{manifest.id}: a full backup has no parent, others have one")
        return manifest


def _checksum(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
