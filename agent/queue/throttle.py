"""A rate factor in (0, 1] from queue load (AIMD) and the degradation level, for rate limiters.

`Throttle.tick()` reads whether backpressure is on and, optionally, the degradation level, and
updates two factors: the load factor falls multiplicatively (`decrease_factor`) on each tick with
backpressure on and rises additively (`increase_step`) on each tick without it, up to 1; the
level factor is looked up in `level_factors`. The published factor is their product, never below
`min_factor`, and subscribers (e.g. `limiter.scale`) are called with it whenever it changes.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping

import structlog

from agent.queue.clock import Clock, MonotonicClock
from agent.queue.config import is_finite, require

log = structlog.get_logger("vigil.queue.throttle")

# The agent's degradation levels, mildest first, with the share of the normal rate each allows.
DEFAULT_LEVEL_FACTORS: Mapping[str, float] = {
    "full": 1.0,
    "degraded": 0.5,
    "minimal": 0.2,
    "maintenance": 0.1,
}

Subscriber = Callable[[float], None]


@dataclasses.dataclass(frozen=True, slots=True)
class ThrottleConfig:
    """How fast the load factor moves, its floor, the tick period and the factor of each level.

    `level_factors` lists the levels mildest first, each with a factor in (0, 1] no higher than
    the one before. A level is given by name, or by its position in that order (an int, like
    the agent's `Level`); a level past the last, or a name not listed, gets the last factor.
    """

    decrease_factor: float = 0.5
    increase_step: float = 0.1
    min_factor: float = 0.05
    interval_seconds: float = 1.0
    level_factors: Mapping[str, float] = dataclasses.field(
        default_factory=lambda: dict(DEFAULT_LEVEL_FACTORS)
    )

    def __post_init__(self) -> None:
        """Reject factors outside (0, 1] and a level order that raises the rate as it worsens."""
        require(
            is_finite(self.decrease_factor) and self.decrease_factor < 1,
            "ThrottleConfig.decrease_factor",
            "must be in (0, 1)",
        )
        require(
            is_finite(self.increase_step) and self.increase_step <= 1,
            "ThrottleConfig.increase_step",
            "must be in (0, 1]",
        )
        require(
            is_finite(self.min_factor) and self.min_factor <= 1,
            "ThrottleConfig.min_factor",
            "must be in (0, 1]",
        )
        require(is_finite(self.interval_seconds), "ThrottleConfig.interval_seconds", "> 0")
        factors = (
            list(self.level_factors.values()) if isinstance(self.level_factors, Mapping) else []
        )
        require(
            len(factors) > 0
            and all(isinstance(k, str) and k for k in self.level_factors)
            and all(is_finite(f) and f <= 1 for f in factors)
            and all(a >= b for a, b in itertools.pairwise(factors)),
            "ThrottleConfig.level_factors",
            "must list level names mildest first, each with a factor in (0, 1] not above the last",
        )


class Throttle:
    """Turns backpressure and the degradation level into one rate factor for subscribers."""

    def __init__(
        self,
        backpressure: Callable[[], bool],
        level: Callable[[], int | str] | None = None,
        config: ThrottleConfig | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        """Read `backpressure()` (e.g. `lambda: queue.backpressure_active`) and `level()`."""
        self._backpressure = backpressure
        self._level = level
        self._config = config if config is not None else ThrottleConfig()
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._names = list(self._config.level_factors)
        self._load = 1.0
        self._level_factor = 1.0
        self._factor = 1.0
        self._subscribers: list[Subscriber] = []
        self._unknown: set[int | str] = set()

    @property
    def factor(self) -> float:
        """The current rate factor, in (0, 1]."""
        return self._factor

    @property
    def load_factor(self) -> float:
        """The AIMD part of the factor."""
        return self._load

    @property
    def level_factor(self) -> float:
        """The degradation-level part of the factor."""
        return self._level_factor

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call `subscriber(factor)` now and on every change; returns a function to unsubscribe."""
        self._subscribers.append(subscriber)
        self._notify([subscriber])

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe

    def tick(self) -> float:
        """Read the load and the level once, update the factor, tell subscribers if it changed."""
        config = self._config
        if self._backpressure():
            self._load = max(config.min_factor, self._load * config.decrease_factor)
        else:
            self._load = min(1.0, self._load + config.increase_step)
        if self._level is not None:
            self._level_factor = self._factor_of(self._level())
        factor = min(1.0, max(config.min_factor, self._load * self._level_factor))
        if factor != self._factor:
            self._factor = factor
            self._notify(self._subscribers)
        return factor

    async def run(self) -> None:
        """Tick every `interval_seconds` until cancelled."""
        while True:
            self.tick()
            await self._clock.sleep(self._config.interval_seconds)

    def _factor_of(self, level: int | str) -> float:
        """The factor of a level given by name or position; the last one when not listed."""
        factors = self._config.level_factors
        if isinstance(level, str) and level in factors:
            return factors[level]
        if isinstance(level, int) and not isinstance(level, bool) and level >= 0:
            return factors[self._names[min(level, len(self._names) - 1)]]
        if level not in self._unknown:
            # Fail safe: an unknown level throttles as hard as the worst known one.
            self._unknown.add(level)
            log.warning("throttle.level.unknown", level=str(level), levels=self._names)
        return factors[self._names[-1]]

    def _notify(self, subscribers: list[Subscriber]) -> None:
        """Hand the factor to `subscribers`; one that raises is logged and the rest still run."""
        for subscriber in list(subscribers):
            try:
                subscriber(self._factor)
            except Exception:
                log.exception("throttle.subscriber.failed")
