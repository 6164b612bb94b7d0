"""What a limiter holds now (`held`, `states`): read for the runtime API without moving the
utilization gauge's periods."""

from __future__ import annotations

import pytest

from agent.limits import Limit, Limiter, MemoryStorage, Strategy, SyncLimiter
from tests.harness.wait import MicroClock


@pytest.mark.parametrize("face", [Limiter, SyncLimiter])
async def test_held_is_the_busiest_keys_share_and_states_count_keys(
    face: type[Limiter] | type[SyncLimiter],
) -> None:
    """After 3 of 4 for one key and 1 of 4 for another, `held` is 0.75 and two keys are held."""
    clock = MicroClock()
    limiter = face("t", Limit(4, 60, Strategy.SLIDING_LOG), MemoryStorage(clock))
    assert (limiter.held(), limiter.states()) == (0.0, 0)

    for key in ("a", "a", "a", "b"):
        decided = limiter.decide(key)
        if not isinstance(limiter, SyncLimiter):
            await decided  # type: ignore[misc]

    assert limiter.held() == 0.75
    assert limiter.states() == 2


async def test_held_does_not_start_a_gauge_period() -> None:
    """Reading `held` after a denial leaves `utilization` reporting the denial (1.0)."""
    clock = MicroClock()
    limiter = Limiter("t", Limit(1, 60, Strategy.FIXED_WINDOW), MemoryStorage(clock))
    assert (await limiter.decide("a")).allowed
    assert not (await limiter.decide("a")).allowed

    assert limiter.held() == 1.0
    clock.now += 61_000_000  # the window is over: nothing is held now
    assert limiter.held() == 0.0
    assert limiter.utilization() == 1.0  # the refusal is still this period's


async def test_held_and_states_are_none_over_another_storage() -> None:
    """Over a storage other than memory (Redis), neither is known locally."""

    class Elsewhere:
        def bind(self, limits: object, namespace: str) -> object:
            return self

    limiter = Limiter("t", Limit(1, 60), Elsewhere())  # type: ignore[arg-type]
    assert (limiter.held(), limiter.states()) == (None, None)
