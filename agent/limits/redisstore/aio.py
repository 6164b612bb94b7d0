"""The asyncio Redis storage: the decisions of one event-loop tick as one script call.

`decide` queues the request and schedules a flush at the end of the tick; the flush sends up to
`max_batch` queued requests in one EVALSHA (on a cluster, one per hash slot, pipelined), with at
most `max_inflight` calls outstanding: while they are, requests queue up and leave together in
the next call. The script decides them in the order they were queued, so a batch decides exactly
as the same requests sent one by one. A request that gets no answer within `timeout` raises
StorageTimeoutError; a call that fails raises StorageError in each of its requests, and the
next call simply tries again (reconnecting, reloading the script after a restart).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import NoScriptError

from agent.limits.decision import Decision
from agent.limits.errors import LimitError, StorageError, StorageTimeoutError
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


class Request:
    """One queued decision: its keys, limit set and cost, and the future it answers."""

    __slots__ = ("cost", "deadline", "future", "keys", "limits", "slot")

    def __init__(
        self,
        keys: list[str],
        limits: LimitSet,
        cost: int | list[int],
        future: asyncio.Future[Decision],
        deadline: float,
        slot: int,
    ) -> None:
        self.keys = keys
        self.limits = limits
        self.cost = cost
        self.future = future
        self.deadline = deadline
        self.slot = slot


class RedisStorage:
    """Limiter states in Redis or a Redis Cluster, through a `redis.asyncio` client.

    - `prefix`: the start of every key (no braces); `timeout`: seconds a decision may wait.
    - `max_batch`: requests per script call; `max_inflight`: calls outstanding at once.
    - `deny_cache_seconds`: the longest a denial is answered locally (0: never); at most
      `deny_cache_entries` keys per limiter (see `cache.py` for why it is sound).

    Give the client no retries (`retry=Retry(NoBackoff(), 0)`): a call retried after Redis ran
    it but before its answer arrived would spend twice.
    """

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = 0.05,
        max_batch: int = 256,
        max_inflight: int = 4,
        deny_cache_seconds: float = 1.0,
        deny_cache_entries: int = 100_000,
    ) -> None:
        check_settings(timeout, deny_cache_seconds)
        for name, value in (("max_batch", max_batch), ("max_inflight", max_inflight)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4096:
                raise LimitError(f"{name} must be a whole number in 1..4096, not {value!r}")
        script.key_prefix(prefix, "")
        register_password(client)
        self.client = client
        self.prefix = prefix
        self.timeout = float(timeout)
        self.max_batch = max_batch
        self.max_inflight = max_inflight
        self.deny_cache_seconds = float(deny_cache_seconds)
        self.deny_cache_entries = deny_cache_entries
        self.cluster = isinstance(client, RedisCluster)
        self.calls = 0  # script calls made, for tests and benchmarks
        self._queue: list[Request] = []
        self._flying: set[tuple[Request, ...]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flush_scheduled = False
        self._watch: asyncio.TimerHandle | None = None

    def bind(self, limits: Sequence[Limit], namespace: str) -> RedisBinding:
        """The limits of the limiter named `namespace` (its keys' namespace in Redis)."""
        return RedisBinding(self, limits, namespace)

    def submit(self, request: Request) -> None:
        """Queue `request` for the flush at the end of this tick."""
        self._queue.append(request)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop = asyncio.get_running_loop()
            loop.call_soon(self._flush)
            if self._watch is None:
                self._watch = loop.call_later(self.timeout, self._expire)

    def _flush(self) -> None:
        """Send queued requests while fewer than `max_inflight` calls are outstanding."""
        self._flush_scheduled = False
        queue = self._queue
        while queue and len(self._flying) < self.max_inflight:
            batch = tuple(
                request for request in queue[: self.max_batch] if not request.future.done()
            )
            del queue[: self.max_batch]
            if not batch:
                continue
            self._flying.add(batch)
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _expire(self) -> None:
        """Fail every request past its deadline; look again at the next deadline."""
        self._watch = None
        now = monotonic()
        nearest = None
        for requests in (self._queue, *self._flying):
            for request in requests:
                future = request.future
                if future.done():
                    continue
                if request.deadline <= now:
                    future.set_exception(
                        StorageTimeoutError(
                            f"Redis rate-limit storage: no answer within {self.timeout:g}s"
                        )
                    )
                elif nearest is None or request.deadline < nearest:
                    nearest = request.deadline
        if nearest is not None:
            self._watch = asyncio.get_running_loop().call_later(nearest - now, self._expire)

    async def _send(self, batch: tuple[Request, ...]) -> None:
        """One call for `batch` (one script call per slot on a cluster); answer every request."""
        try:
            groups = self._groups(batch) if self.cluster else [batch]
            # A call that hangs (a frozen server) must not hold its place forever.
            async with asyncio.timeout(max(1.0, 4 * self.timeout)):
                replies = await self._call(groups)
            for group, reply in zip(groups, replies, strict=True):
                if isinstance(reply, BaseException):
                    self._fail(group, failure(reply))
                else:
                    self._answer(group, list(map(int, reply.split())))
        except FAILURES as exc:  # TimeoutError (the bound above) is an OSError
            self._fail(batch, failure(exc))
        finally:
            self._flying.discard(batch)
            if self._queue and not self._flush_scheduled:
                self._flush()

    @staticmethod
    def _groups(batch: Sequence[Request]) -> list[list[Request]]:
        """`batch` split by hash slot, each group in queue order."""
        slots: dict[int, list[Request]] = {}
        for request in batch:
            slots.setdefault(request.slot, []).append(request)
        return list(slots.values())

    async def _call(self, groups: Sequence[Sequence[Request]]) -> list[Any]:
        """The script's replies for `groups` (an exception in place of a failed group's)."""
        commands = [self._command(group) for group in groups]
        self.calls += 1
        if len(commands) == 1:
            try:
                return [await self.client.evalsha(*commands[0])]
            except NoScriptError:
                await self.client.script_load(script.SCRIPT)
                return [await self.client.evalsha(*commands[0])]
        replies = await self._pipeline(commands)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            # Only the groups that did not run are sent again: the others have spent.
            await self.client.script_load(script.SCRIPT)
            again = await self._pipeline([commands[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return replies

    async def _pipeline(self, commands: Sequence[list[Any]]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.evalsha(*command)
        return list(await pipe.execute(raise_on_error=False))

    @staticmethod
    def _command(group: Sequence[Request]) -> list[Any]:
        """EVALSHA's arguments for `group`: the limit sets once each, then index and cost."""
        indexes: dict[int, int] = {}
        sets: list[str] = []
        keys: list[str] = []
        tail: list[int] = []
        for request in group:
            limits = request.limits
            index = indexes.get(id(limits))
            if index is None:
                sets.append(limits.text)
                index = indexes[id(limits)] = len(sets)
            keys += request.keys
            tail += encode_costs(index, request.cost)
        return [script.SHA, len(keys), *keys, len(sets), *sets, " ".join(map(str, tail))]

    @staticmethod
    def _answer(group: Sequence[Request], reply: list[int]) -> None:
        at = 0
        for request in group:
            limits = request.limits
            future = request.future
            if not future.done():
                future.set_result(limits.reading.decision(request.cost, reply, at))
            at += 5 * limits.size

    @staticmethod
    def _fail(group: Sequence[Request], error: StorageError) -> None:
        for request in group:
            if not request.future.done():
                # One instance each: a shared one would gather every awaiter's traceback.
                request.future.set_exception(type(error)(*error.args))


class RedisBinding(BindingBase):
    """One limiter's limits in a RedisStorage: `await decide(key, cost)`."""

    def __init__(self, storage: RedisStorage, limits: Sequence[Limit], namespace: str) -> None:
        super().__init__(
            storage.prefix,
            limits,
            namespace,
            storage.deny_cache_seconds,
            storage.deny_cache_entries,
        )
        self._storage = storage
        self._slotted = storage.cluster

    async def decide(self, key: str, cost: Cost) -> Decision:
        """Admit `cost` for `key` under every limit or none; raises StorageError."""
        now = monotonic()
        limits = self._limits
        spend, never, token = spending(limits, cost)
        cached = self._recall(key, token, now, never)
        if cached is not None:
            return cached
        storage = self._storage
        keys = script.state_keys(self._start, key, limits.names)
        slot = key_slot(keys[0].encode()) if self._slotted else 0
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        storage.submit(Request(keys, limits, spend, future, now + storage.timeout, slot))
        return self._remember(key, token, now, never, await future)
