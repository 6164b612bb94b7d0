"""The artifact layers: what is written reads back byte for byte, and any change to the stored
bytes, a truncation or the wrong identity is refused, never decoded as good."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import pyrage  # type: ignore[import-untyped]
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.backup.artifact import (
    ArtifactWriter,
    Codec,
    Plain,
    load_identities,
    pump,
    verify,
)
from agent.backup.errors import BackupError, IntegrityError, Reason
from agent.backup.manifest import ArtifactInfo

IDENTITY = pyrage.x25519.Identity.generate()
OTHER = pyrage.x25519.Identity.generate()
RECIPIENT = str(IDENTITY.to_public())
DATA = os.urandom(200_000) + b"vigil " * 400_000
CODECS = [
    Codec(compression, recipients=recipients)
    for compression in ("zstd", "gzip", "none")
    for recipients in ((), (RECIPIENT,))
]


def _store(tmp_path: Path, codec: Codec, data: bytes = DATA) -> tuple[Path, ArtifactInfo]:
    path = tmp_path / ("data" + codec.suffix())
    with ArtifactWriter(path, codec) as writer:
        for start in range(0, len(data), 65_536):
            writer.write(data[start : start + 65_536])
        info = writer.finish()
    return path, info


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: f"{c.compression}-{bool(c.recipients)}")
def test_round_trip_pushed_and_pulled(tmp_path: Path, codec: Codec) -> None:
    """Every codec reads back the exact bytes, pushed into a writer or pulled from `Plain`."""
    path, info = _store(tmp_path, codec)
    assert info.plain_bytes == len(DATA)
    assert info.stored_bytes == path.stat().st_size
    assert (info.key_id is not None) == bool(codec.recipients)
    out = io.BytesIO()
    pump(path, info, out, [IDENTITY])
    assert out.getvalue() == DATA
    with Plain(path, info, [IDENTITY]) as plain:
        assert plain.read() == DATA
    if codec.compression != "none":
        assert info.stored_bytes < info.plain_bytes


def _flip(raw: bytes) -> bytes:
    middle = len(raw) // 2
    return raw[:middle] + bytes([raw[middle] ^ 0x01]) + raw[middle + 1 :]


TAMPERING: dict[str, Callable[[bytes], bytes]] = {
    "flipped byte": _flip,
    "truncated": lambda raw: raw[:-7],
    "appended": lambda raw: raw + b"\0\0",
    "empty": lambda raw: b"",
}


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: f"{c.compression}-{bool(c.recipients)}")
@pytest.mark.parametrize("how", sorted(TAMPERING))
def test_tampering_is_refused(tmp_path: Path, codec: Codec, how: str) -> None:
    """A flipped byte, a truncation, trailing bytes or an emptied file fail verification."""
    path, info = _store(tmp_path, codec)
    path.write_bytes(TAMPERING[how](path.read_bytes()))
    with pytest.raises(IntegrityError):
        verify(path, info, [IDENTITY])
    with pytest.raises(IntegrityError), Plain(path, info, [IDENTITY]) as plain:
        plain.read()


def test_the_wrong_identity_or_none_is_an_encryption_error(tmp_path: Path) -> None:
    """An artifact encrypted to one key is refused with another key or with none."""
    path, info = _store(tmp_path, Codec(recipients=(RECIPIENT,)))
    for identities in ([OTHER], []):
        with pytest.raises(BackupError) as caught:
            verify(path, info, identities)
        assert caught.value.reason is Reason.ENCRYPTION


def test_a_missing_artifact_is_an_integrity_error(tmp_path: Path) -> None:
    """A manifest naming a file the repository lacks is an integrity failure, not a crash."""
    path, info = _store(tmp_path, Codec())
    path.unlink()
    with pytest.raises(IntegrityError, match="missing"):
        verify(path, info)


def test_an_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    """A writer refuses a path that exists: a backup never replaces an artifact."""
    path, _ = _store(tmp_path, Codec())
    before = path.read_bytes()
    with pytest.raises(BackupError):
        ArtifactWriter(path, Codec())
    assert path.read_bytes() == before


def test_an_aborted_writer_leaves_nothing(tmp_path: Path) -> None:
    """An error inside the `with` block removes the partial file."""
    path = tmp_path / "data.zst.age"

    def fail_midway() -> None:
        with ArtifactWriter(path, Codec(recipients=(RECIPIENT,))) as writer:
            writer.write(b"x" * 100_000)
            raise RuntimeError("source failed")

    with pytest.raises(RuntimeError):
        fail_midway()
    assert not path.exists()


def test_identities_parse_and_never_echo_a_bad_key() -> None:
    """age-keygen output parses; a malformed line is refused without being quoted."""
    text = f"# created: now\n# public key: {RECIPIENT}\n{IDENTITY}\n"
    assert len(load_identities(text)) == 1
    secretish = "AGE-SECRET-KEY-1NOTAREALKEY"
    with pytest.raises(BackupError) as caught:
        load_identities(secretish)
    assert secretish not in str(caught.value)
    with pytest.raises(BackupError):
        load_identities("# only comments\n")


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=5000), codec=st.sampled_from(CODECS))
def test_any_bytes_round_trip(tmp_path: Path, data: bytes, codec: Codec) -> None:
    """Any content, empty included, reads back exactly."""
    for old in tmp_path.iterdir():
        old.unlink()
    path, info = _store(tmp_path, codec, data)
    out = io.BytesIO()
    pump(path, info, out, [IDENTITY])
    assert out.getvalue() == data
