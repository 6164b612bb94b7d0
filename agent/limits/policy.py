"""What a limit is: a strategy, a quota per period and a burst, in whole microseconds."""

from __future__ import annotations

import dataclasses
import enum
import math
import re
from collections.abc import Mapping, Sequence

from agent.limits.errors import LimitError

MICROS = 1_000_000
# The memory storage counts in nanoseconds: the monotonic clock's own unit, no division.
NANOS = 1_000_000_000


class Strategy(enum.StrEnum):
    """How a limit counts; see docs/limits.md for each one's exact bound."""

    # One theoretical arrival time per key (one integer): `burst` at once, then one request
    # every period/limit. Token bucket and GCRA admit the same requests; leaky bucket admits
    # them too but spaces them out with a delay (a shaping queue).
    GCRA = "gcra"
    TOKEN_BUCKET = "token_bucket"  # noqa: S105 (a strategy name, not a password)
    LEAKY_BUCKET = "leaky_bucket"
    # Counters per aligned window: cheap, and up to twice the quota across a window boundary.
    FIXED_WINDOW = "fixed_window"
    # Two counters, the previous window weighted by how much of it still overlaps.
    SLIDING_WINDOW = "sliding_window"
    # Every admission remembered until it leaves the window: exact, O(limit) state per key.
    SLIDING_LOG = "sliding_log"


# Strategies whose state is one theoretical arrival time.
TAT_STRATEGIES = frozenset({Strategy.GCRA, Strategy.TOKEN_BUCKET, Strategy.LEAKY_BUCKET})

_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_RATE = re.compile(r"^\s*(\d+)\s*(?:/|per)\s*(\d*)\s*(second|minute|hour|day)s?\s*$")


@dataclasses.dataclass(frozen=True, slots=True)
class Limit:
    """At most `limit` cost units per `period_seconds`, counted by `strategy`.

    `burst` is the most a key may spend at once from rest (GCRA, token and leaky bucket only;
    default `limit`). `name` labels the limit in headers (`RateLimit-Policy`) and in a
    multi-limit decision.
    """

    limit: int
    period_seconds: float
    strategy: Strategy = Strategy.GCRA
    burst: int | None = None
    name: str = "default"

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise LimitError(f"limit must be a whole number >= 1, not {self.limit!r}")
        if (
            isinstance(self.period_seconds, bool)
            or not isinstance(self.period_seconds, int | float)
            or not math.isfinite(self.period_seconds)
            or not 1e-3 <= self.period_seconds <= 366 * 86400
        ):
            raise LimitError(
                f"period_seconds must be between 0.001 and 31622400, not {self.period_seconds!r}"
            )
        object.__setattr__(self, "strategy", Strategy(self.strategy))
        if self.burst is not None:
            if self.strategy not in TAT_STRATEGIES:
                raise LimitError(
                    f"burst applies to gcra, token_bucket and leaky_bucket, not {self.strategy}"
                )
            if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
                raise LimitError(f"burst must be a whole number >= 1, not {self.burst!r}")
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise LimitError(
                f"name must be 1-64 letters, digits or _.:- characters, not {self.name!r}"
            )

    @classmethod
    def parse(cls, text: str, strategy: Strategy = Strategy.GCRA, name: str = "default") -> Limit:
        """`"100/minute"`, `"10 per second"`, `"1000/5 minutes"` as a limit."""
        found = _RATE.match(text)
        if found is None:
            raise LimitError(f"{text!r} is not a rate such as '100/minute' or '10 per 5 seconds'")
        count, multiple, unit = found.groups()
        return cls(int(count), int(multiple or 1) * _UNITS[unit], strategy, name=name)

    @property
    def period_us(self) -> int:
        """The period in whole microseconds."""
        return max(1, round(self.period_seconds * MICROS))

    @property
    def capacity(self) -> int:
        """How much a key may spend at once from rest: `burst`, else `limit`."""
        return self.limit if self.burst is None else self.burst

    def scaled(self, factor: float) -> Limit:
        """This limit with its rate multiplied by `factor` (throttling); never below 1 per period.

        Burst scales with the rate, so a throttled limiter also admits smaller bursts.
        """
        if not 0 < factor <= 1:
            raise LimitError(f"a scale factor is in (0, 1], not {factor!r}")
        limit = max(1, math.floor(self.limit * factor))
        burst = None if self.burst is None else max(1, math.floor(self.burst * factor))
        return dataclasses.replace(self, limit=limit, burst=burst)


def interval_us(limit: Limit) -> int:
    """The emission interval of a TAT strategy: period / limit, rounded up to a microsecond.

    Rounding up keeps the admitted rate at or under the configured one.
    """
    return -(-limit.period_us // limit.limit)


# What one decision spends: the same number under every limit, or a number per limit name.
Cost = int | Mapping[str, int]


def costs(cost: Cost, names: Sequence[str]) -> list[int]:
    """One whole cost >= 0 per limit in `names`, from `cost`; a clear error otherwise."""
    if isinstance(cost, Mapping):
        if set(cost) != set(names) or len(cost) != len(names):
            raise LimitError(f"costs must name each limit once: {sorted(names)}")
        found = [cost[name] for name in names]
    else:
        found = [cost] * len(names)
    for each in found:
        if each.__class__ is not int or each < 0:
            raise LimitError(f"cost must be a whole number >= 0, not {each!r}")
    return found


def period_ns(limit: Limit) -> int:
    """The period in nanoseconds: the microsecond period, so memory and Redis round alike."""
    return limit.period_us * 1000


def interval_ns(limit: Limit) -> int:
    """The emission interval in nanoseconds (see `interval_us`)."""
    return interval_us(limit) * 1000
