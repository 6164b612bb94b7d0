"""Plain-integer counts of one limiter's decisions: what its metrics publish, at no SDK cost."""

from __future__ import annotations

from agent.limits.decision import Decision, Outcome


class Counts:
    """Decisions by outcome, storage errors, and the peak used share of any key's quota.

    Updated on the decision path with attribute increments only (an SDK measurement costs
    3-9 µs, many times a decision); read by the observable instruments at collection time.
    """

    __slots__ = ("allowed", "denied", "errors", "fail_closed", "fail_open", "never", "peak")

    def __init__(self) -> None:
        self.allowed = 0
        self.denied = 0
        self.never = 0
        self.fail_open = 0
        self.fail_closed = 0
        self.errors = 0
        self.peak = 0.0

    def note(self, decision: Decision) -> Decision:
        """Count `decision` (returned as is)."""
        outcome = decision.outcome
        if outcome is Outcome.ALLOWED:
            self.allowed += 1
            if decision.limit:
                used = 1.0 - decision.remaining / decision.limit
                if used > self.peak:
                    self.peak = used
            return decision
        if outcome is Outcome.DENIED:
            self.denied += 1
        elif outcome is Outcome.NEVER:
            self.never += 1
        elif outcome is Outcome.FAIL_OPEN:
            self.fail_open += 1
        else:
            self.fail_closed += 1
        if outcome is not Outcome.FAIL_OPEN:
            self.peak = 1.0
        return decision

    def by_outcome(self) -> dict[Outcome, int]:
        """The decision counts keyed by outcome."""
        return {
            Outcome.ALLOWED: self.allowed,
            Outcome.DENIED: self.denied,
            Outcome.NEVER: self.never,
            Outcome.FAIL_OPEN: self.fail_open,
            Outcome.FAIL_CLOSED: self.fail_closed,
        }
