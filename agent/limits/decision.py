"""What a limiter answers: allowed or not, what is left, when to retry, when the key is at rest."""

from __future__ import annotations

import enum
import math


class Outcome(enum.StrEnum):
    """How a decision was made; the label of `vigil.ratelimit.decisions`."""

    ALLOWED = "allowed"
    DENIED = "denied"
    # The cost is larger than the limit's capacity: no wait would ever admit it.
    NEVER = "never"
    # The storage failed and the limiter's failure policy decided.
    FAIL_OPEN = "fail_open"
    FAIL_CLOSED = "fail_closed"


class Decision:
    """One decision for one key and cost.

    - `allowed`: whether the request may proceed (also true when it failed open).
    - `limit`: the quota of the binding limit (the one that denied, else the one with the least
      remaining), `remaining`: what that limit still admits after this decision.
    - `retry_after`: seconds until the same cost could be admitted (0 when allowed, `inf` when
      `outcome` is `never`); `reset_after`: seconds until the key is back at rest.
    - `delay`: seconds the caller should wait before proceeding (leaky bucket only: its place in
      the shaping queue); 0 otherwise.
    - `policy`: the binding limit's name; `period_seconds`: its period.
    - `parts`: each limit's own decision when several were checked together, else empty.
    """

    __slots__ = (
        "allowed",
        "delay",
        "limit",
        "outcome",
        "parts",
        "period_seconds",
        "policy",
        "remaining",
        "reset_after",
        "retry_after",
    )

    def __init__(
        self,
        outcome: Outcome,
        limit: int,
        remaining: int,
        retry_after: float,
        reset_after: float,
        delay: float = 0.0,
        policy: str = "default",
        period_seconds: float = 0.0,
        parts: tuple[Decision, ...] = (),
    ) -> None:
        self.outcome = outcome
        self.allowed = outcome is Outcome.ALLOWED or outcome is Outcome.FAIL_OPEN
        self.limit = limit
        self.remaining = remaining
        self.retry_after = retry_after
        self.reset_after = reset_after
        self.delay = delay
        self.policy = policy
        self.period_seconds = period_seconds
        self.parts = parts

    def __repr__(self) -> str:
        return (
            f"Decision({self.outcome.value}, limit={self.limit}, remaining={self.remaining}, "
            f"retry_after={self.retry_after:.6f}, reset_after={self.reset_after:.6f}, "
            f"delay={self.delay:.6f}, policy={self.policy!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Decision):
            return NotImplemented
        return self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())

    def key(self) -> tuple[object, ...]:
        """Every field, for comparisons (two storages deciding alike)."""
        return (
            self.outcome,
            self.limit,
            self.remaining,
            self.retry_after,
            self.reset_after,
            self.delay,
            self.policy,
            self.period_seconds,
            self.parts,
        )

    @property
    def retry_after_header(self) -> int | None:
        """`Retry-After` in whole seconds, rounded up (never 0 for a denial); None if never."""
        if self.allowed:
            return None
        if math.isinf(self.retry_after):
            return None
        return max(1, math.ceil(self.retry_after))
