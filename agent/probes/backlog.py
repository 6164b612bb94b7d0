"""How every queue kind is rated: its depth against its capacity, and its oldest item's age."""

from __future__ import annotations

from typing import Any

from agent.config.checks import AgeLimits, QueueLimits
from agent.probes.result import CheckResult, Reason


def judge(
    check: QueueLimits, depth: int, oldest_age_seconds: float | None = None, **details: Any
) -> CheckResult:
    """Rate a queue holding `depth` items whose oldest has waited `oldest_age_seconds`.

    Unhealthy at `unhealthy_ratio` of `capacity` or `unhealthy_age_seconds`, degraded at the
    `degraded_*` thresholds; every threshold of the worse status crossed is in the message, the
    first one (depth before age) gives the reason. `oldest_age_seconds` is None when the queue
    cannot tell: then an empty queue reports an age of 0, a non-empty one none. The depth,
    capacity, ratio and age join `details`.
    """
    ratio = depth / check.capacity
    details |= {"depth": depth, "capacity": check.capacity, "depth_ratio": round(ratio, 4)}
    degraded_age = unhealthy_age = None
    if isinstance(check, AgeLimits):  # only kinds that can date their items report an age
        degraded_age, unhealthy_age = check.degraded_age_seconds, check.unhealthy_age_seconds
        if oldest_age_seconds is None and depth == 0:
            oldest_age_seconds = 0.0
        if oldest_age_seconds is not None:
            details["oldest_age_seconds"] = round(oldest_age_seconds, 3)
    age = oldest_age_seconds
    queued = f"{depth} of {check.capacity} items queued ({ratio:.0%})"
    waiting = f"oldest item waiting {age or 0:.0f}s"
    unhealthy = [
        (Reason.SATURATION, queued, ratio >= check.unhealthy_ratio),
        (Reason.LATENCY, waiting, _over(age, unhealthy_age)),
    ]
    degraded = [
        (Reason.SATURATION, queued, ratio >= check.degraded_ratio),
        (Reason.LATENCY, waiting, _over(age, degraded_age)),
    ]
    for make, findings in ((CheckResult.unhealthy, unhealthy), (CheckResult.degraded, degraded)):
        breaches = [(reason, message) for reason, message, breached in findings if breached]
        if breaches:
            return make(breaches[0][0], "; ".join(m for _, m in breaches), **details)
    return CheckResult.healthy(**details)


def _over(age: float | None, limit: float | None) -> bool:
    """Whether a known age reached a set limit."""
    return age is not None and limit is not None and age >= limit
