"""Retention over a synthetic calendar: the keep-* rules (on UTC days), chains kept whole, the
newest verified backup and backups from the future kept, the newest backup never deleted, and
pruning twice deleting nothing more, whatever the policy."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.backup.manifest import BackupType, Kind, Manifest
from agent.backup.retention import Decision, decide
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


@pytest.fixture
def pacific_local_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone is UTC-8 for the test, then back to what it was."""
    monkeypatch.setenv("TZ", "PST8")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("pacific_local_time")
def test_days_are_utc_days_whatever_the_local_zone() -> None:
    """The daily rule groups backups by UTC day, not by the host's local day."""
    early = _backup(0, datetime(2026, 1, 1, 3, 0, tzinfo=UTC), BackupType.FULL, None)
    late = _backup(1, datetime(2026, 1, 1, 20, 0, tzinfo=UTC), BackupType.FULL, None)
    next_day = _backup(2, datetime(2026, 1, 2, 2, 0, tzinfo=UTC), BackupType.FULL, None)
    # In UTC-8 these are Dec 31 19:00, Jan 1 12:00 and Jan 1 18:00: the newest of each local
    # day would keep `early` and drop `late`.
    decision = decide(
        [early, late, next_day], RetentionSettings(keep_last=1, daily=2), next_day.started
    )
    assert decision.keep == (late, next_day)
    assert decision.delete == (early,)


def test_backups_from_the_future_stay() -> None:
    """Backups started after `now` (the clock stepped back) stay, each saying so."""
    backups = _daily_fulls(4)
    decision = decide(backups, RetentionSettings(keep_last=1), backups[1].started)
    assert decision.delete == (backups[0], backups[1])
    assert decision.reasons == {
        backups[2].id: ("from the future",),
        backups[3].id: ("last", "from the future"),
    }


def test_a_chain_older_than_a_deleted_backup_is_kept() -> None:
    """A kept backup's chain stays even when a newer backup between them goes."""
    full = _backup(0, START, BackupType.FULL, None)
    inc = _backup(1, START + timedelta(hours=1), BackupType.INCREMENTAL, full.id)
    dropped = _backup(2, START + timedelta(days=1), BackupType.FULL, None)
    newest = _backup(3, START + timedelta(days=2), BackupType.FULL, None)
    backups = [full, inc, dropped, newest]
    decision = decide(backups, RetentionSettings(keep_last=1), newest.started, {inc.id})
    assert decision.keep == (full, inc, newest)
    assert decision.delete == (dropped,)
    assert decision.reasons[full.id] == (f"needed by {inc.id}",)


def test_a_chain_ends_where_its_parent_is_gone() -> None:
    """An incremental whose parent is no longer there stays alone, for its own reasons."""
    orphan = _backup(0, START, BackupType.INCREMENTAL, "20251231T030000Z-F")
    decision = decide([orphan], RetentionSettings(keep_last=1), orphan.started)
    assert decision.keep == (orphan,)
    assert decision.reasons == {orphan.id: ("last",)}


def test_the_decision_as_json() -> None:
    """`as_json` lists the kept ids with their reasons and the deleted ids, oldest first."""
    full = _backup(0, START, BackupType.FULL, None)
    inc = _backup(1, START + timedelta(hours=1), BackupType.INCREMENTAL, full.id)
    older = _backup(2, START - timedelta(days=1), BackupType.FULL, None)
    decision = decide([inc, older, full], RetentionSettings(keep_last=1), inc.started)
    assert decision.as_json() == {
        "keep": [
            {"id": full.id, "reasons": [f"needed by {inc.id}"]},
            {"id": inc.id, "reasons": ["last"]},
        ],
        "delete": [older.id],
    }
    empty = Decision((), (), {})
    assert empty.as_json() == {"keep": [], "delete": []}


@given(
    days=st.lists(st.integers(0, 400), min_size=1, max_size=40),
    keep_last=st.integers(1, 5),
    daily=st.integers(0, 10),
    weekly=st.integers(0, 6),
    monthly=st.integers(0, 4),
    verified=st.sets(st.integers(0, 39)),
)
def test_pruning_twice_deletes_nothing_more(
    days: list[int], keep_last: int, daily: int, weekly: int, monthly: int, verified: set[int]
) -> None:
    """The same policy applied again to what it kept keeps all of it (pruning is idempotent)."""
    backups: list[Manifest] = []
    for n, day in enumerate(sorted(set(days))):
        when = START + timedelta(days=day)
        kind = BackupType.FULL if n % 3 == 0 else BackupType.INCREMENTAL
        parent = None if kind is BackupType.FULL else backups[-1].id
        backups.append(_backup(n, when, kind, parent))
    good = {backups[n].id for n in verified if n < len(backups)}
    policy = RetentionSettings(keep_last=keep_last, daily=daily, weekly=weekly, monthly=monthly)
    first = decide(backups, policy, backups[-1].started, good)
    again = decide(first.keep, policy, backups[-1].started, good)
    assert again.keep == first.keep
    assert again.delete == ()
