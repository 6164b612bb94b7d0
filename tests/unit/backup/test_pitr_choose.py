"""Which base backup a recovery starts from: the newest that ended before the target, by the
server's clock; a target older than every backup is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.backup.cluster import _SETTING, conf_quote, unquote
from agent.backup.errors import BackupError, Reason
from agent.backup.manifest import BackupType, Kind, Manifest
from agent.backup.pitr import RecoveryTarget, choose_base, restore_command
from agent.backup.walnames import format_lsn

EPOCH = datetime(2026, 12, 1, tzinfo=UTC).timestamp()


def _backup(
    n: int, ended: float, stop_lsn: int = 0, kind: Kind = Kind.POSTGRES_PHYSICAL
) -> Manifest:
    stamp = datetime.fromtimestamp(EPOCH + n, UTC).strftime("%Y%m%dT%H%M%SZ")
    return Manifest(
        id=f"{stamp}-F",
        job="main",
        kind=kind,
        type=BackupType.FULL,
        parent=None,
        started=ended - 10,
        ended=ended + 5,  # the agent's clock: later than the server's record below
        artifacts=(),
        details={"backup_end_time": ended, "stop_lsn": format_lsn(stop_lsn)},
    )


def _at(seconds: float) -> RecoveryTarget:
    return RecoveryTarget(time=datetime.fromtimestamp(EPOCH + seconds, UTC))


def test_newest_backup_ended_before_the_time() -> None:
    """The newest backup whose server-side end precedes the target time is chosen."""
    backups = [_backup(1, EPOCH + 100), _backup(2, EPOCH + 200), _backup(3, EPOCH + 300)]
    assert choose_base(backups, _at(250)) is backups[1]
    assert choose_base(backups, _at(300.001)) is backups[2]
    assert choose_base(backups, _at(300)) is backups[1]  # ended *before*, not at
    assert choose_base(backups, None) is backups[2]
    assert choose_base(backups, RecoveryTarget(name="before_upgrade")) is backups[2]


def test_a_target_older_than_every_backup_is_refused() -> None:
    """Nothing ended before the target: refused, naming the target."""
    backups = [_backup(1, EPOCH + 100)]
    with pytest.raises(BackupError, match="older than the oldest backup") as refused:
        choose_base(backups, _at(50))
    assert refused.value.reason is Reason.REFUSED
    with pytest.raises(BackupError, match="older than the oldest backup"):
        choose_base([_backup(1, EPOCH, stop_lsn=0x3000000)], RecoveryTarget(lsn="0/2FFFFFF"))


def test_only_physical_backups_count() -> None:
    """A logical dump cannot start a recovery, however recent."""
    physical = _backup(1, EPOCH + 100)
    logical = _backup(2, EPOCH + 200, kind=Kind.POSTGRES_LOGICAL)
    assert choose_base([physical, logical], _at(500)) is physical
    with pytest.raises(BackupError, match="no physical backup"):
        choose_base([logical], _at(500))


def test_lsn_targets_use_the_stop_lsn() -> None:
    """For an LSN the newest backup that stopped at or before it is chosen."""
    backups = [_backup(1, EPOCH, 0x2000100), _backup(2, EPOCH + 1, 0x5000100)]
    assert choose_base(backups, RecoveryTarget(lsn="0/5000100")) is backups[1]
    assert choose_base(backups, RecoveryTarget(lsn="0/50000FF")) is backups[0]


@given(st.lists(st.floats(0, 10_000), min_size=1, max_size=8), st.floats(0, 10_000))
def test_choice_is_the_latest_eligible(ends: list[float], target: float) -> None:
    """Whatever the backups, the choice ended before the target and none chosen-able is newer."""
    backups = [_backup(i, EPOCH + end) for i, end in enumerate(ends)]
    limit = _at(target).time.timestamp()  # type: ignore[union-attr]  # microseconds, as PostgreSQL
    eligible = [b for b in backups if b.details["backup_end_time"] < limit]
    if not eligible:
        with pytest.raises(BackupError):
            choose_base(backups, _at(target))
        return
    chosen = choose_base(backups, _at(target))
    assert chosen.details["backup_end_time"] == max(b.details["backup_end_time"] for b in eligible)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"time": datetime(2026, 1, 1, tzinfo=UTC), "name": "x"}, {"time": datetime(2026, 1, 1)}],
)
def test_a_target_is_one_thing_with_its_offset(kwargs: dict[str, object]) -> None:
    """No target, two targets, or a time without offset are refused."""
    with pytest.raises(BackupError) as refused:
        RecoveryTarget(**kwargs)  # type: ignore[arg-type]
    assert refused.value.reason is Reason.REFUSED


def test_settings_and_restore_command() -> None:
    """Targets become recovery_target_* settings; the restore command quotes its parts."""
    target = RecoveryTarget(time=datetime(2026, 12, 7, 5, 30, tzinfo=UTC) + timedelta(0, 0, 1))
    assert target.settings() == {
        "recovery_target_time": "2026-12-07 05:30:00.000001+00:00",
        "recovery_target_inclusive": "on",
    }
    assert RecoveryTarget(lsn="0/3000060", inclusive=False).settings() == {
        "recovery_target_lsn": "0/3000060",
        "recovery_target_inclusive": "off",
    }
    line = restore_command(Path("/etc/vigil it.yaml"), "main", ["/opt/py", "-m", "agent.wal_cli"])
    assert line == (
        "/opt/py -m agent.wal_cli wal-fetch --config '/etc/vigil it.yaml' --job main %f \"%p\""
    )


@given(st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\0\n")))
def test_config_quoting_round_trips(value: str) -> None:
    """A value written into postgresql.auto.conf reads back unchanged."""
    quoted = conf_quote(value)
    assert unquote(quoted[1:-1]) == value
    assert _SETTING.findall(f"restore_command = {quoted}\n") == [quoted[1:-1]]
