"""Rate limiters: strategies (pure arithmetic) over storages (this process's memory, Redis).

    limiter = Limiter("api", Limit.parse("100/minute"))
    decision = await limiter.decide(client_id)
    if not decision.allowed: ...  # decision.retry_after, decision.remaining, ...

See docs/limits.md for each strategy's exact bound and the failure policy.
"""

from __future__ import annotations

from agent.limits.decision import Decision, Outcome
from agent.limits.errors import LimitError, StorageError, StorageTimeoutError
from agent.limits.limiter import FailurePolicy, Limiter, LimiterStats, SyncLimiter
from agent.limits.memory import MemoryStorage
from agent.limits.policy import Limit, Strategy

__all__ = [
    "Decision",
    "FailurePolicy",
    "Limit",
    "LimitError",
    "Limiter",
    "LimiterStats",
    "MemoryStorage",
    "Outcome",
    "StorageError",
    "StorageTimeoutError",
    "Strategy",
    "SyncLimiter",
]
