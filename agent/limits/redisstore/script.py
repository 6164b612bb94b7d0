"""The Lua script and its encoding: limit sets as ARGV, state key names, replies as Decisions.

The script is the four strategy files of `agent/limits/lua/` followed by `decide.lua`, which
decides a batch of requests, each all-or-nothing over its limiter's limits. Key names carry a
Redis Cluster hash tag, `<prefix>{<namespace>:<key>}:<limit name>`, so every key of one decision
is in one slot.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from importlib import resources

from agent.limits.decision import Decision, Outcome
from agent.limits.errors import LimitError
from agent.limits.memory import combine
from agent.limits.policy import MICROS, TAT_STRATEGIES, Limit, Strategy, interval_us

_FILES = ("tat.lua", "fixed_window.lua", "sliding_window.lua", "sliding_log.lua", "decide.lua")
# The strategy files fill this table; a script may not create globals.
SCRIPT = "local STRATEGIES = {}\n" + "\n".join(
    resources.files("agent.limits").joinpath(f"lua/{name}").read_text("utf-8") for name in _FILES
)
SHA = hashlib.sha1(SCRIPT.encode(), usedforsecurity=False).hexdigest()

_CODES = {
    Strategy.FIXED_WINDOW: 2,
    Strategy.SLIDING_WINDOW: 3,
    Strategy.SLIDING_LOG: 4,
}
# Lua numbers are doubles: integers are exact below 2**53. Every product the script forms is
# at most twice limit x period (or capacity x interval), added to the time (about 2**51 µs).
EXACT = 2**51
INFINITE = float("inf")


def encode(limits: Sequence[Limit]) -> str:
    """One limit set as the script reads it: strategy code and three parameters per limit."""
    words: list[int] = []
    for limit in limits:
        if limit.strategy in TAT_STRATEGIES:
            interval = interval_us(limit)
            shaping = int(limit.strategy is Strategy.LEAKY_BUCKET)
            words += [1, interval, limit.capacity, shaping]
            span = limit.capacity * interval
        else:
            words += [_CODES[limit.strategy], limit.limit, limit.period_us, 0]
            span = limit.limit * limit.period_us
        if span >= EXACT:
            raise LimitError(
                f"limit {limit.name!r} is too large for the Redis storage, which computes in "
                f"exact doubles: its quota times its period in microseconds must stay below "
                f"2**51, not {span}"
            )
    return " ".join(map(str, words))


def quotas(limits: Sequence[Limit]) -> tuple[int, ...]:
    """The largest cost each limit can ever admit: capacity for TAT strategies, else limit."""
    return tuple(
        limit.capacity if limit.strategy in TAT_STRATEGIES else limit.limit for limit in limits
    )


def _escape(text: str, extra: str = "") -> str:
    """`text` with `%`, `}` (and `extra`) percent-encoded: injective, and no `}` ends the tag."""
    if "%" in text or "}" in text or (extra and extra in text):
        text = text.replace("%", "%25").replace("}", "%7D")
        if extra:
            text = text.replace(extra, "%3A")
    return text


def key_prefix(prefix: str, namespace: str) -> str:
    """The start of every key of limiter `namespace`, up to the user key."""
    if "{" in prefix or "}" in prefix:
        raise LimitError(f"a key prefix may not hold '{{' or '}}': {prefix!r}")
    # The namespace's `:` is escaped too, so namespace "a:b" and key "c" differ from "a", "b:c".
    return f"{prefix}{{{_escape(namespace, ':')}:"


def state_keys(start: str, key: str, names: Sequence[str]) -> list[str]:
    """The state key of each limit for user key `key` (after `key_prefix`)."""
    tag = f"{start}{_escape(key)}}}:"
    return [tag + name for name in names]


class Reading:
    """Turns the script's five integers per limit into a Decision for one limiter's limits."""

    __slots__ = ("limits", "quotas", "single")

    def __init__(self, limits: Sequence[Limit]) -> None:
        self.limits = tuple(limits)
        self.quotas = quotas(limits)
        self.single = len(limits) == 1

    def decision(self, cost: int | Sequence[int], reply: Sequence[int], at: int) -> Decision:
        """The decision for `cost` (one for every limit, or one each) from `reply[at:]`."""
        if cost.__class__ is int:
            if self.single:
                return self._part(0, cost, reply, at)
            spend: Sequence[int] = [cost] * len(self.limits)
        else:
            spend = cost  # type: ignore[assignment]
            if self.single:
                return self._part(0, spend[0], reply, at)
        parts = [self._part(i, spend[i], reply, at + 5 * i) for i in range(len(self.limits))]
        return combine(parts)

    def _part(self, index: int, cost: int, reply: Sequence[int], at: int) -> Decision:
        limit = self.limits[index]
        quota = self.quotas[index]
        if cost > quota:
            outcome = Outcome.NEVER
        else:
            outcome = Outcome.ALLOWED if reply[at] else Outcome.DENIED
        allowed = outcome is Outcome.ALLOWED
        return Decision(
            outcome,
            quota,
            reply[at + 1],
            INFINITE if outcome is Outcome.NEVER else reply[at + 2] / MICROS,
            reply[at + 3] / MICROS,
            reply[at + 4] / MICROS if allowed else 0.0,
            limit.name,
            limit.period_seconds,
        )
