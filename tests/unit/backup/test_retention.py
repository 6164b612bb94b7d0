"""Retention over a synthetic calendar: the keep-* rules, chains kept whole, the newest verified
backup kept, and the newest backup never deleted, whatever the policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from agent.backup.manifest import BackupType, Kind, Manifest
from agent.backup.retention import decide
from agent.config.backup import RetentionSettings

START = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)


def _backup(n: int, when: datetime, kind: BackupType, parent: str | None) -> Manifest:
    stamp = when.strftime("%Y%m%dT%H%M%SZ")
    return Manifest(
        f"{stamp}-{kind.letter}",
        "job",
        Kind.FILES,
        kind,
        parent,
        when.timestamp(),
        when.timestamp() + 60,
        (),
    )


def _daily_fulls(days: int) -> list[Manifest]:
    return [_backup(n, START + timedelta(days=n), BackupType.FULL, None) for n in range(days)]


def _ids(manifests: tuple[Manifest, ...]) -> list[str]:
    return [m.id[:8] for m in manifests]


def test_keep_last_keeps_the_newest_n() -> None:
    """With only keep_last, the newest n stay and the rest go."""
    backups = _daily_fulls(10)
    decision = decide(backups, RetentionSettings(keep_last=3), backups[-1].started)
    assert _ids(decision.keep) == ["20260108", "20260109", "20260110"]
    assert len(decision.delete) == 7


def test_daily_weekly_monthly_tiers() -> None:
    """Over 100 days of daily backups: 7 dailies, 4 weeklies and 3 monthlies overlap as
    restic's rules say (newest of each period)."""
    backups = _daily_fulls(100)  # 2026-01-01 .. 2026-04-10
    policy = RetentionSettings(keep_last=1, daily=7, weekly=4, monthly=3)
    decision = decide(backups, policy, backups[-1].started)
    kept = _ids(decision.keep)
    # Dailies: Apr 4-10. Weeklies (ISO weeks end on Sunday): Apr 10 (this week), Apr 5, Mar 29,
    # Mar 22. Monthlies: Apr 10, Mar 31, Feb 28.
    assert kept == [
        "20260228",
        "20260322",
        "20260329",
        "20260331",
        "20260404",
        "20260405",
        "20260406",
        "20260407",
        "20260408",
        "20260409",
        "20260410",
    ]
    assert decision.reasons[backups[-1].id] == ("last", "daily", "weekly", "monthly")


def test_a_kept_incremental_keeps_its_whole_chain() -> None:
    """Keeping only the newest incremental keeps its parents down to the full."""
    full = _backup(0, START, BackupType.FULL, None)
    diff = _backup(1, START + timedelta(hours=1), BackupType.DIFFERENTIAL, full.id)
    inc1 = _backup(2, START + timedelta(hours=2), BackupType.INCREMENTAL, diff.id)
    inc2 = _backup(3, START + timedelta(hours=3), BackupType.INCREMENTAL, inc1.id)
    older = _backup(4, START - timedelta(days=1), BackupType.FULL, None)
    decision = decide([older, full, diff, inc1, inc2], RetentionSettings(keep_last=1), inc2.started)
    assert decision.keep == (full, diff, inc1, inc2)
    assert decision.delete == (older,)
    assert decision.reasons[full.id] == (f"needed by {diff.id}",)


def test_the_newest_verified_backup_stays() -> None:
    """A backup outside every rule stays while it is the newest one verified good."""
    backups = _daily_fulls(5)
    decision = decide(backups, RetentionSettings(keep_last=1), backups[-1].started, {backups[1].id})
    assert _ids(decision.keep) == ["20260102", "20260105"]
    assert decision.reasons[backups[1].id] == ("newest verified",)


@given(
    days=st.lists(st.integers(0, 400), min_size=1, max_size=40),
    keep_last=st.integers(1, 5),
    daily=st.integers(0, 10),
    weekly=st.integers(0, 6),
    monthly=st.integers(0, 4),
)
def test_never_deletes_the_newest_or_a_needed_parent(
    days: list[int], keep_last: int, daily: int, weekly: int, monthly: int
) -> None:
    """Whatever the calendar and policy: the newest backup stays, every kept backup's parent
    stays, keep and delete split the backups, and at least keep_last stay."""
    backups: list[Manifest] = []
    for n, day in enumerate(sorted(set(days))):
        when = START + timedelta(days=day)
        kind = BackupType.FULL if n % 3 == 0 else BackupType.INCREMENTAL
        parent = None if kind is BackupType.FULL else backups[-1].id
        backups.append(_backup(n, when, kind, parent))
    policy = RetentionSettings(keep_last=keep_last, daily=daily, weekly=weekly, monthly=monthly)
    decision = decide(backups, policy, backups[-1].started)
    kept = {m.id for m in decision.keep}
    assert backups[-1].id in kept
    assert kept | {m.id for m in decision.delete} == {m.id for m in backups}
    assert not kept & {m.id for m in decision.delete}
    assert all(m.parent in kept for m in decision.keep if m.parent)
    assert len(kept) >= min(keep_last, len(backups))
