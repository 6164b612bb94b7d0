"""The thread-safe Redis storage: one script call per decision through a redis-py sync client.

redis-py's sync clients are thread-safe (each call takes a connection from the pool), so any
number of threads may decide at once; the deny cache is a dict, whose single operations the
interpreter keeps atomic. The timeout is the client's `socket_timeout`: a blocking call cannot
be abandoned half-way, so that is what bounds it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

from agent.limits.decision import Decision
from agent.limits.policy import Cost, Limit
from agent.limits.redisstore import script
from agent.limits.redisstore.common import (
    DEFAULT_PREFIX,
    FAILURES,
    BindingBase,
    LimitSet,
    check_settings,
    encode_costs,
    failure,
    register_password,
    spending,
)

monotonic = time.monotonic


class SyncRedisStorage:
    """Limiter states in Redis or a Redis Cluster, through a `redis` (sync) client.

    Give the client a `socket_timeout` (the longest a decision may block, e.g. 0.05) and no
    retries (`retry=Retry(NoBackoff(), 0)`): a call retried after Redis ran it would spend
    twice. `prefix` and the deny cache are as for `RedisStorage`.
    """

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = DEFAULT_PREFIX,
        deny_cache_seconds: float = 1.0,
        deny_cache_entries: int = 100_000,
    ) -> None:
        check_settings(1.0, deny_cache_seconds)
        script.key_prefix(prefix, "")
        register_password(client)
        self.client = client
        self.prefix = prefix
        self.deny_cache_seconds = float(deny_cache_seconds)
        self.deny_cache_entries = deny_cache_entries

    def bind(self, limits: Sequence[Limit], namespace: str) -> SyncRedisBinding:
        """The limits of the limiter named `namespace` (its keys' namespace in Redis)."""
        return SyncRedisBinding(self, limits, namespace)

    def call(self, limits: LimitSet, keys: list[str], spend: int | list[int]) -> list[int]:
        """The script's reply for one decision; StorageError when Redis cannot answer."""
        words = " ".join(map(str, encode_costs(1, spend)))
        command = [script.SHA, len(keys), *keys, 1, limits.text, words]
        try:
            try:
                reply = self.client.evalsha(*command)
            except NoScriptError:
                self.client.script_load(script.SCRIPT)
                reply = self.client.evalsha(*command)
        except FAILURES as exc:
            raise failure(exc) from None
        return list(map(int, reply.split()))


class SyncRedisBinding(BindingBase):
    """One limiter's limits in a SyncRedisStorage: `decide(key, cost)` from any thread."""

    def __init__(self, storage: SyncRedisStorage, limits: Sequence[Limit], namespace: str) -> None:
        super().__init__(
            storage.prefix,
            limits,
            namespace,
            storage.deny_cache_seconds,
            storage.deny_cache_entries,
        )
        self._storage = storage

    def decide(self, key: str, cost: Cost) -> Decision:
        """Admit `cost` for `key` under every limit or none; raises StorageError."""
        now = monotonic()
        limits = self._limits
        spend, never, token = spending(limits, cost)
        cached = self._recall(key, token, now, never)
        if cached is not None:
            return cached
        keys = script.state_keys(self._start, key, limits.names)
        decision = limits.reading.decision(spend, self._storage.call(limits, keys, spend), 0)
        return self._remember(key, token, now, never, decision)
