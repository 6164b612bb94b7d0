"""Rate-limit states in Redis or a Redis Cluster: one Lua script decides, with Redis's clock.

`RedisStorage` (asyncio, batching the decisions of an event-loop tick into one call) and
`SyncRedisStorage` (thread-safe, one call per decision) implement the storage protocols of
`agent.limits.limiter`; see docs/limits.md, "Redis storage".
"""

from __future__ import annotations

from agent.limits.redisstore.aio import RedisBinding, RedisStorage
from agent.limits.redisstore.sync import SyncRedisBinding, SyncRedisStorage

__all__ = ["RedisBinding", "RedisStorage", "SyncRedisBinding", "SyncRedisStorage"]
