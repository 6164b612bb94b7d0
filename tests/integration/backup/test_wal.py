"""`vigil wal-push` and `vigil wal-fetch` as PostgreSQL runs them: exit codes that keep a good
archive, and that stop recovery on a corrupt file, a wrong key or a broken config instead of
ending it early."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyrage  # type: ignore[import-untyped]
import pytest
import yaml

from agent.backup import wal
from agent.backup.artifact import Codec
from agent.backup.errors import BackupError, Reason
from agent.backup.repository import Repository

pytestmark = pytest.mark.integration

IDENTITY = pyrage.x25519.Identity.generate()
OTHER = pyrage.x25519.Identity.generate()
SEGMENT = "000000010000000000000003"
CONTENT = os.urandom(1 << 20) + bytes(3 << 20)


def _config(tmp_path: Path, identity: object = IDENTITY, name: str = "vigil.yaml") -> Path:
    key = tmp_path / f"{name}.key"
    key.write_text(f"# test key\n{identity}\n")
    doc = {
        "checks": [{"name": "disk", "kind": "disk", "path": str(tmp_path)}],
        "backup": {
            "repository": {"path": str(tmp_path / "repo")},
            "encryption": {
                "recipients": [str(IDENTITY.to_public())],
                "identity_file": str(key),
            },
            "jobs": [{"name": "main", "kind": "postgres", "mode": "physical"}],
        },
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return path


def _vigil(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m agent.wal_cli ARGS` as PostgreSQL would."""
    argv = [sys.executable, "-m", "agent.wal_cli", *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=cwd, check=False)


def _push(config: Path, path: Path) -> subprocess.CompletedProcess[str]:
    return _vigil("wal-push", "--config", config, "--job", "main", path)


def _fetch(config: Path, name: str, dest: Path) -> subprocess.CompletedProcess[str]:
    return _vigil("wal-fetch", "--config", config, "--job", "main", name, dest)


def _wal_file(tmp_path: Path, name: str = SEGMENT, content: bytes = CONTENT) -> Path:
    folder = tmp_path / "pg_wal"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_bytes(content)
    return path


def _stored(tmp_path: Path, name: str = SEGMENT) -> Path:
    stored = wal.find(Repository(tmp_path / "repo"), "main", name)
    assert stored is not None
    return stored.path


def test_push_then_fetch_gives_the_same_bytes(tmp_path: Path) -> None:
    """A pushed segment is stored encrypted and compressed and fetched back byte for byte."""
    config = _config(tmp_path)
    pushed = _push(config, _wal_file(tmp_path))
    assert pushed.returncode == 0, pushed.stderr
    stored = _stored(tmp_path)
    assert stored.name.endswith(".zst.age")
    assert stored.stat().st_size < len(CONTENT) // 2
    assert CONTENT[-4096:] not in stored.read_bytes()
    fetched = _fetch(config, SEGMENT, tmp_path / "RECOVERYXLOG")
    assert fetched.returncode == 0, fetched.stderr
    assert (tmp_path / "RECOVERYXLOG").read_bytes() == CONTENT
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    # The same through `vigil` (python -m agent), where the commands are registered too.
    argv = ["wal-fetch", "--config", str(config), "--job", "main", SEGMENT, "again"]
    vigil = subprocess.run(
        [sys.executable, "-m", "agent", *argv], cwd=tmp_path, capture_output=True, timeout=60
    )
    assert vigil.returncode == 0, vigil.stderr
    assert (tmp_path / "again").read_bytes() == CONTENT


def test_fetch_of_a_file_not_archived_exits_1(tmp_path: Path) -> None:
    """A file the archive does not hold is the normal end of recovery: exit 1, nothing written."""
    config = _config(tmp_path)
    assert _push(config, _wal_file(tmp_path)).returncode == 0
    for name in ("000000010000000000000004", "00000002.history"):
        result = _fetch(config, name, tmp_path / "RECOVERYXLOG")
        assert result.returncode == 1, result.stderr
    assert not (tmp_path / "RECOVERYXLOG").exists()


def test_a_flipped_byte_stops_recovery(tmp_path: Path) -> None:
    """One changed byte in a stored file makes wal-fetch exit 126 (fatal), writing nothing."""
    config = _config(tmp_path)
    assert _push(config, _wal_file(tmp_path)).returncode == 0
    stored = _stored(tmp_path)
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    stored.write_bytes(bytes(data))
    result = _fetch(config, SEGMENT, tmp_path / "RECOVERYXLOG")
    assert result.returncode == 126
    assert SEGMENT in result.stderr
    assert not (tmp_path / "RECOVERYXLOG").exists()


def test_a_truncated_file_stops_recovery(tmp_path: Path) -> None:
    """A stored file cut short makes wal-fetch exit 126."""
    config = _config(tmp_path)
    assert _push(config, _wal_file(tmp_path)).returncode == 0
    stored = _stored(tmp_path)
    stored.write_bytes(stored.read_bytes()[:-100])
    assert _fetch(config, SEGMENT, tmp_path / "RECOVERYXLOG").returncode == 126


def test_the_wrong_key_stops_recovery(tmp_path: Path) -> None:
    """An identity the file was not encrypted to is refused with 126, not taken as the end."""
    config = _config(tmp_path)
    assert _push(config, _wal_file(tmp_path)).returncode == 0
    wrong = _config(tmp_path, OTHER, "wrong.yaml")
    result = _fetch(wrong, SEGMENT, tmp_path / "RECOVERYXLOG")
    assert result.returncode == 126
    assert "identity" in result.stderr
    assert str(OTHER) not in result.stderr


def test_a_repeated_push_of_the_same_content_succeeds(tmp_path: Path) -> None:
    """PostgreSQL re-archives after a crash: the same name and content again is success."""
    config = _config(tmp_path)
    path = _wal_file(tmp_path)
    assert _push(config, path).returncode == 0
    first = _stored(tmp_path)
    again = _push(config, path)
    assert again.returncode == 0, again.stderr
    assert _stored(tmp_path) == first


def test_a_push_of_other_content_under_an_archived_name_fails(tmp_path: Path) -> None:
    """Another file under an archived name is refused (exit 1) and the archived one kept."""
    config = _config(tmp_path)
    assert _push(config, _wal_file(tmp_path)).returncode == 0
    first = _stored(tmp_path)
    other = _wal_file(tmp_path, content=CONTENT[::-1])
    result = _push(config, other)
    assert result.returncode == 1
    assert "different" in result.stderr
    assert _stored(tmp_path) == first
    assert _fetch(config, SEGMENT, tmp_path / "out").returncode == 0
    assert (tmp_path / "out").read_bytes() == CONTENT


def test_a_bad_config_or_usage_stops_recovery(tmp_path: Path) -> None:
    """A missing config, an unknown job or a bad argument is fatal for wal-fetch (126) and a
    failure for wal-push (3, or 2 for bad arguments: never above 125, which goes uncounted)."""
    config = _config(tmp_path)
    missing = tmp_path / "nowhere.yaml"
    assert _fetch(missing, SEGMENT, tmp_path / "x").returncode == 126
    assert _vigil("wal-fetch", "--config", config, "--job", "nope", SEGMENT, "x").returncode == 126
    assert _vigil("wal-fetch", "--config", config, "--job", "main", SEGMENT).returncode == 126
    assert _vigil("wal-fetch", "--config", config, "--jbo", "main", SEGMENT, "x").returncode == 126
    assert _push(missing, _wal_file(tmp_path)).returncode == 3
    assert _vigil("wal-push", "--config", config, "--jbo", "main", "x").returncode == 2
    assert _push(config, tmp_path / "pg_wal" / "000000010000000000000009").returncode == 1


def test_relative_repository_is_refused(tmp_path: Path) -> None:
    """A relative repository path would land in the data directory: both commands refuse it."""
    config = _config(tmp_path)
    doc = yaml.safe_load(config.read_text())
    doc["backup"]["repository"]["path"] = "repo"
    config.write_text(yaml.safe_dump(doc))
    assert _push(config, _wal_file(tmp_path)).returncode == 3
    assert _fetch(config, SEGMENT, tmp_path / "x").returncode == 126


def test_archived_ranges_gaps_and_cleanup(tmp_path: Path) -> None:
    """The listing gives each timeline's first and last segment and its gaps; cleanup removes
    what is older than the cut on every timeline and keeps history files."""
    repo = Repository(tmp_path / "repo")
    codec = Codec(level=1)
    names = [
        "000000010000000000000001",
        "000000010000000000000002",
        "000000010000000000000002.00000028.backup",
        "0000000100000000000000FF",
        "000000010000000100000000",
        "00000002.history",
        "000000020000000100000000",
        "000000020000000100000001",
    ]
    for i, name in enumerate(names):
        wal.push(repo, "main", _wal_file(tmp_path, name, bytes([i]) * 100), codec)
    listing = wal.archived(repo, "main")
    one, two = listing.timelines
    assert (one.first, one.last, one.count) == (names[0], names[4], 4)
    assert len(one.missing) == 0xFE - 3 + 1  # 03 to FE
    assert one.missing[0] == "000000010000000000000003"
    assert (two.first, two.last, two.missing) == (names[6], names[7], ())
    assert listing.histories == ("00000002.history",)
    assert listing.backup_labels == (names[2],)
    assert listing.last_stored is not None
    assert listing.stored_bytes > 0
    with pytest.raises(BackupError) as refused:
        wal.cleanup(repo, "main", "00000002.history")
    assert refused.value.reason is Reason.REFUSED

    removed = wal.cleanup(repo, "main", "000000020000000100000000")
    assert sorted(removed) == sorted(names[:4])
    after = wal.archived(repo, "main")
    assert [(t.timeline, t.first) for t in after.timelines] == [
        (1, "000000010000000100000000"),
        (2, "000000020000000100000000"),
    ]
    assert after.histories == ("00000002.history",)
    out = tmp_path / "fetched"
    assert wal.fetch(repo, "main", names[7], out)
    assert out.read_bytes() == bytes([7]) * 100
    assert not wal.fetch(repo, "main", names[0], out)


def test_concurrent_pushes_of_one_name_store_one_file(tmp_path: Path) -> None:
    """Pushers racing with different content under one name: exactly one wins, the others are
    refused, and the archive holds the winner's bytes; racing with the same content all win."""
    from concurrent.futures import ThreadPoolExecutor

    from agent.backup.errors import IntegrityError

    repo = Repository(tmp_path / "repo")
    sources = []
    for i in range(6):
        folder = tmp_path / f"src{i}"
        folder.mkdir()
        (folder / SEGMENT).write_bytes(bytes([i]) * 50_000)
        sources.append(folder / SEGMENT)

    def attempt(path: Path) -> bytes | None:
        try:
            wal.push(repo, "main", path, Codec(level=1, threads=1))
        except IntegrityError:
            return None
        return path.read_bytes()

    with ThreadPoolExecutor(len(sources)) as pool:
        results = list(pool.map(attempt, sources))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert wal.fetch(repo, "main", SEGMENT, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == winners[0]

    with ThreadPoolExecutor(4) as pool:
        same = list(pool.map(attempt, [sources[results.index(winners[0])]] * 4))
    assert same == [winners[0]] * 4


def test_only_the_backup_section_decides(tmp_path: Path) -> None:
    """A mistake elsewhere in the file does not stop the archive; one in `backup` does, with
    its key path."""
    config = _config(tmp_path)
    document = yaml.safe_load(config.read_text())
    document["checks"] = [{"name": "broken", "kind": "no-such-kind"}]
    config.write_text(yaml.safe_dump(document))
    assert _push(config, _wal_file(tmp_path)).returncode == 0

    document["backup"]["jobs"][0]["compression_level"] = 99
    config.write_text(yaml.safe_dump(document))
    refused = _push(config, _wal_file(tmp_path, name="000000010000000000000004"))
    assert refused.returncode == 3
    assert "backup.jobs[0].compression_level" in refused.stderr


def test_cleanup_sweeps_what_killed_pushes_left(tmp_path: Path) -> None:
    """A push's temporary file an hour old goes at the next cleanup; a fresh one (a push going
    on now) and every stored segment needed stay."""
    repo = Repository(tmp_path / "repo")
    segment = "000000010000000000000005"
    wal.push(repo, "main", _wal_file(tmp_path, segment), Codec(level=1))
    folder = wal.job_dir(repo, "main") / segment[:16]
    old, fresh = folder / f".tmp-{segment}-aaaa", folder / f".tmp-{segment}-bbbb"
    old.write_bytes(b"half a push")
    fresh.write_bytes(b"a push going on")
    now = fresh.stat().st_mtime
    os.utime(old, (now - wal.STALE_TEMP_SECONDS - 1,) * 2)
    assert wal.cleanup(repo, "main", segment, now=now) == []
    assert not old.exists()
    assert fresh.exists()
    assert wal.find(repo, "main", segment) is not None
