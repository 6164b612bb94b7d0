"""Retention, pure: which of a job's backups stay and why, from the policy, the calendar and what
depends on what. No clock is read here: `now` is given.

A backup stays when it is among the last `keep_last`, or the newest of one of the last `daily`
days, `weekly` ISO weeks or `monthly` months that have backups (restic's keep-* rules), or it is
the newest verified backup, or a kept backup's chain needs it (an incremental needs its parent
and so on down to the full). Everything else goes. The newest backup always stays.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from agent.backup.manifest import Manifest
from agent.config.backup import RetentionSettings


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """The backups kept (with why) and deleted, each oldest first."""

    keep: tuple[Manifest, ...]
    delete: tuple[Manifest, ...]
    reasons: dict[str, tuple[str, ...]]

    def as_json(self) -> dict[str, Any]:
        """The decision as `--dry-run` and `--json` print it."""
        return {
            "keep": [{"id": m.id, "reasons": list(self.reasons[m.id])} for m in self.keep],
            "delete": [m.id for m in self.delete],
        }


def _buckets(
    backups: Sequence[Manifest], count: int, key: Callable[[datetime], Any], label: str
) -> Iterable[tuple[str, str]]:
    """The newest backup of each of the `count` newest periods (by `key`) that have one."""
    seen: list[Any] = []
    for manifest in reversed(backups):
        period = key(datetime.fromtimestamp(manifest.started, UTC))
        if period in seen:
            continue
        if len(seen) >= count:
            break
        seen.append(period)
        yield manifest.id, label


def decide(
    backups: Sequence[Manifest],
    policy: RetentionSettings,
    now: float,
    verified: set[str] | frozenset[str] = frozenset(),
) -> Decision:
    """Apply `policy` to one job's `backups` (any order); `verified` are ids whose last
    verification passed. Backups started after `now` (a clock stepped back) always stay."""
    ordered = sorted(backups, key=lambda m: (m.started, m.id))
    by_id = {m.id: m for m in ordered}
    reasons: dict[str, list[str]] = {m.id: [] for m in ordered}
    for manifest in ordered[-policy.keep_last :]:
        reasons[manifest.id].append("last")
    rules: list[tuple[int, Callable[[datetime], Any], str]] = [
        (policy.daily, lambda d: d.date(), "daily"),
        (policy.weekly, lambda d: d.isocalendar()[:2], "weekly"),
        (policy.monthly, lambda d: (d.year, d.month), "monthly"),
    ]
    for count, key, label in rules:
        if count:
            for backup_id, why in _buckets(ordered, count, key, label):
                reasons[backup_id].append(why)
    newest_verified = next((m for m in reversed(ordered) if m.id in verified), None)
    if newest_verified is not None:
        reasons[newest_verified.id].append("newest verified")
    for manifest in ordered:
        if manifest.started > now:
            reasons[manifest.id].append("from the future")
    # A kept backup keeps its chain: walk each kept one's parents down to its full.
    for manifest in reversed(ordered):
        if not reasons[manifest.id]:
            continue
        parent = manifest.parent
        child = manifest.id
        while parent is not None and parent in by_id:
            why = f"needed by {child}"
            if why not in reasons[parent]:
                reasons[parent].append(why)
            child, parent = parent, by_id[parent].parent
    keep = tuple(m for m in ordered if reasons[m.id])
    delete = tuple(m for m in ordered if not reasons[m.id])
    return Decision(keep, delete, {k: tuple(v) for k, v in reasons.items() if v})
