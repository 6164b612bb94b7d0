"""What the asyncio and the thread-safe Redis storages share: settings, limit sets, errors."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import redis.exceptions as rexc

from agent.limits.decision import Decision, Outcome
from agent.limits.errors import LimitError, StorageError, StorageTimeoutError
from agent.limits.policy import Cost, Limit, costs
from agent.limits.redisstore import script
from agent.limits.redisstore.cache import DenyCache
from agent.telemetry.redact import redactor

DEFAULT_PREFIX = "vigil:ratelimit:"
# The errors a call to Redis may raise: redis-py's own, the cluster client's, and the socket's.
FAILURES = (rexc.RedisError, rexc.RedisClusterException, OSError)


class LimitSet:
    """One limiter's limits as the script reads them; replaced whole when they are rescaled."""

    __slots__ = ("names", "reading", "size", "smallest", "text")

    def __init__(self, limits: Sequence[Limit]) -> None:
        self.text = script.encode(limits)
        self.reading = script.Reading(limits)
        self.names = [limit.name for limit in limits]
        self.size = len(limits)
        # A larger cost is `never` for some limit: Redis reports it, never the deny cache.
        self.smallest = min(self.reading.quotas)


def spending(limits: LimitSet, cost: Cost) -> tuple[int | list[int], bool, object]:
    """`cost` as the script takes it (one number, or one per limit), whether some limit can
    never admit it, and the token the deny cache compares."""
    if cost.__class__ is int:
        return cost, cost > limits.smallest, cost
    spend = costs(cost, limits.names)
    never = any(each > quota for each, quota in zip(spend, limits.reading.quotas, strict=True))
    return spend, never, tuple(spend)


def encode_costs(index: int, spend: int | list[int]) -> list[int]:
    """A decision's words in the script's request string: `index cost`, or `-index costs...`."""
    if spend.__class__ is int:
        return [index, spend]
    return [-index, *spend]  # type: ignore[misc]


def check_rescaled(current: LimitSet, limits: Sequence[Limit]) -> LimitSet:
    """The limit set for `limits`, which must be the bound limits rescaled."""
    if [limit.name for limit in limits] != current.names:
        raise LimitError("a binding keeps its limits; only their rates may change")
    return LimitSet(limits)


def check_settings(timeout: float, deny_cache_seconds: float) -> None:
    """Refuse a timeout or a cache lifetime that is not a positive finite number of seconds."""
    for name, value in (("timeout", timeout), ("deny_cache_seconds", deny_cache_seconds)):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
            or (name == "timeout" and value == 0)
        ):
            raise LimitError(f"{name} must be a finite number of seconds > 0, not {value!r}")


def register_password(client: Any) -> None:
    """Register the client's password with the redactor, so no error message ever holds it."""
    kwargs: dict[str, Any] = {}
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        kwargs = pool.connection_kwargs
    manager = getattr(client, "nodes_manager", None)
    if manager is not None:
        kwargs = manager.connection_kwargs
    password = kwargs.get("password")
    if isinstance(password, str):
        redactor.register(password)


def failure(exc: BaseException) -> StorageError:
    """A StorageError describing `exc` (a timeout as StorageTimeoutError), secrets masked."""
    detail = redactor.text(" ".join(str(exc).split()) or "no answer in time")
    message = f"Redis rate-limit storage: {type(exc).__name__}: {detail}"
    if isinstance(exc, rexc.TimeoutError | TimeoutError):
        return StorageTimeoutError(message)
    return StorageError(message)


class BindingBase:
    """What both storages' bindings share: the limits, the key prefix, the deny cache."""

    def __init__(
        self,
        prefix: str,
        limits: Sequence[Limit],
        namespace: str,
        deny_cache_seconds: float,
        deny_cache_entries: int,
    ) -> None:
        self._limits = LimitSet(limits)
        self._start = script.key_prefix(prefix, namespace)
        self._cache = (
            DenyCache(deny_cache_seconds, deny_cache_entries) if deny_cache_seconds > 0 else None
        )

    def use(self, limits: Sequence[Limit]) -> None:
        """Decide by these (rescaled) limits from now on; cached denials are forgotten."""
        self._limits = check_rescaled(self._limits, limits)
        if self._cache is not None:
            self._cache.clear()

    def keys(self, key: str) -> list[str]:
        """The Redis keys holding `key`'s states, one per limit."""
        return script.state_keys(self._start, key, self._limits.names)

    def _recall(self, key: str, token: object, now: float, never: bool) -> Decision | None:
        """A denial of this key and cost still cached at `now`, or None (ask Redis)."""
        if never or self._cache is None:
            return None
        return self._cache.get(key, token, now)

    def _remember(
        self, key: str, token: object, now: float, never: bool, decision: Decision
    ) -> Decision:
        """Cache a denial until its retry-after, forget one on an admission; `decision`."""
        if never or self._cache is None:
            return decision
        if decision.outcome is Outcome.DENIED:
            self._cache.put(key, token, now, decision)
        elif decision.outcome is Outcome.ALLOWED:
            self._cache.admitted(key)
        return decision
