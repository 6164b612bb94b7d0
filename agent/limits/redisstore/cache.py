"""A local cache of denied keys: denials answered without a round trip until they could change.

A denial of `cost` at time t with `retry_after` r means that cost cannot be admitted before
t + r, whatever else happens, for every strategy here: a key's state only moves towards denying
by admissions (a TAT never decreases, window counts and log entries only grow) and towards
admitting by time, which `retry_after` already counts exactly. So until then the same request
is denied from the cache, soundly, and with the same numbers Redis would give (but for the
seconds, counted down locally): the entry is only used for the same cost (a smaller one may
fit, a larger one may be bound by another limit), and an admission of the key through the
same binding drops it. What other processes admit meanwhile can make its `remaining` stale,
never its verdict. Each entry is also capped at `max_seconds`, because Redis can lose state
the cache cannot see (a restart without persistence, a flush, a failover losing writes):
then Redis would admit again and the cache keeps denying for at most that long.

Times are this process's monotonic clock, from when the request was submitted: Redis decided
later than that, so the cached deadline is never later than the one Redis computed.
"""

from __future__ import annotations

from agent.limits.decision import Decision, Outcome


class DenyCache:
    """Key -> (deadline, cost, denial); bounded to `max_entries` keys."""

    __slots__ = ("entries", "max_entries", "max_seconds")

    def __init__(self, max_seconds: float, max_entries: int) -> None:
        self.max_seconds = max_seconds
        self.max_entries = max_entries
        self.entries: dict[str, tuple[float, object, float, Decision]] = {}

    def get(self, key: str, cost: object, now: float) -> Decision | None:
        """The cached denial for `key` if it still holds for `cost` at `now`, else None.

        `cost` is compared whole: a number, or a tuple of one number per limit.
        """
        entry = self.entries.get(key)
        if entry is None:
            return None
        until, denied_cost, at, denial = entry
        if now >= until:
            del self.entries[key]
            return None
        if cost != denied_cost:
            return None
        waited = now - at
        return Decision(
            Outcome.DENIED,
            denial.limit,
            denial.remaining,
            denial.retry_after - waited,
            max(0.0, denial.reset_after - waited),
            0.0,
            denial.policy,
            denial.period_seconds,
            denial.parts,
        )

    def put(self, key: str, cost: object, at: float, denial: Decision) -> None:
        """Remember `denial` of `cost` for a request submitted at `at`."""
        if len(self.entries) >= self.max_entries:
            self.entries = {k: e for k, e in self.entries.items() if e[0] > at}
            if len(self.entries) >= self.max_entries:
                self.entries.clear()
        self.entries[key] = (at + min(denial.retry_after, self.max_seconds), cost, at, denial)

    def admitted(self, key: str) -> None:
        """Forget `key`'s denial: an admission changed what it holds."""
        if key in self.entries:
            del self.entries[key]

    def clear(self) -> None:
        """Forget every denial (the limits changed)."""
        self.entries.clear()
