"""Vigil's rate limiters against `limits` (alisaifee/limits 5.8), in decisions per CPU second.

Goals (from the issue):

* Memory: Vigil's asyncio `Limiter.hit` >= 10x `limits.aio`'s memory storage on the same
  strategy and keys (`memory_ratio`: the lowest over strategies and key patterns). The
  thread-safe `SyncLimiter.hit` against `limits`' sync memory storage is reported beside it
  (`sync_memory_ratio`).
* Redis: Vigil's `RedisStorage` >= 5x `limits.aio`'s Redis storage with 64 concurrent asyncio
  tasks (`redis_ratio`: the lowest over strategies and key patterns).

Method:

* The same three strategies on both sides: fixed window, sliding window counter, and sliding log
  (`limits`' moving window); a limit of 1000 per minute, cost 1, and two key patterns: 10,000
  keys round robin (almost everything admitted) and one hot key (almost everything denied).
* Decisions per CPU second of this process (`time.process_time`: every thread, so `limits`'
  memory expiry thread counts, and the client work of Redis calls; not the Redis server's).
  Each case runs `--repeats` times for at least `--seconds` of CPU each after a warm-up, from
  fresh state; the median is reported. Vigil's figures include its decision counts (kept on
  every decision) and, over Redis, its deny cache (on by default).
* Redis: a private `redis-server` on a free loopback port, started and stopped (by PID) here,
  flushed before each run. 64 tasks each call `hit` in a loop; `limits.aio` uses redis-py
  (`implementation="redispy"`, the client Vigil uses) with its default connection pool.

`--json` makes the last line of the output one JSON object. Exit codes: 0 done (goals met or
not), 1 something failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import limits
import limits.aio.storage
import limits.aio.strategies
import limits.storage
import limits.strategies
import redis.asyncio
from _common import BenchError, Services, free_port, print_ratios, say, stop_on_signals
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from agent.limits import Limit, Limiter, Strategy, SyncLimiter
from agent.limits.redisstore import RedisStorage

STRATEGIES = {
    "fixed_window": (
        Strategy.FIXED_WINDOW,
        limits.strategies.FixedWindowRateLimiter,
        limits.aio.strategies.FixedWindowRateLimiter,
    ),
    "sliding_window": (
        Strategy.SLIDING_WINDOW,
        limits.strategies.SlidingWindowCounterRateLimiter,
        limits.aio.strategies.SlidingWindowCounterRateLimiter,
    ),
    "sliding_log": (
        Strategy.SLIDING_LOG,
        limits.strategies.MovingWindowRateLimiter,
        limits.aio.strategies.MovingWindowRateLimiter,
    ),
}
PATTERNS = {"10k_keys": [f"client-{i}" for i in range(10_000)], "hot_key": ["hot"]}
QUOTA = 1000
TASKS = 64
CHUNK = 2000
GOALS = {"memory_ratio": 10.0, "redis_ratio": 5.0}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="CPU seconds per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per case (median)")
    parser.add_argument("--no-redis", action="store_true", help="memory cases only")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return parser.parse_args(argv)


def rate_sync(step: Callable[[str], object], keys: list[str], seconds: float) -> float:
    """Decisions per CPU second of `step(key)` over `keys` round robin."""
    cycle = itertools.cycle(keys)
    for _ in range(CHUNK):
        step(next(cycle))
    done = 0
    start = time.process_time()
    while True:
        for _ in range(CHUNK):
            step(next(cycle))
        done += CHUNK
        spent = time.process_time() - start
        if spent >= seconds:
            return done / spent


async def rate_async(
    step: Callable[[str], Awaitable[object]], keys: list[str], seconds: float, tasks: int
) -> float:
    """Decisions per CPU second of `await step(key)` from `tasks` tasks, keys round robin.

    Each task looks at the CPU clock itself every 100 decisions: a memory limiter's `await`
    never suspends, so no other coroutine could stop it.
    """
    cycle = itertools.cycle(keys)
    counts = [0] * tasks

    async def worker(index: int, until: float) -> None:
        while time.process_time() < until:
            for _ in range(100):
                await step(next(cycle))
            counts[index] += 100

    warm = time.process_time() + min(0.1, seconds / 5)
    await asyncio.gather(*(worker(i, warm) for i in range(tasks)))
    counts = [0] * tasks
    start = time.process_time()
    await asyncio.gather(*(worker(i, start + seconds) for i in range(tasks)))
    return sum(counts) / (time.process_time() - start)


def median_of(args: argparse.Namespace, run: Callable[[], float]) -> float:
    """The median decisions per CPU second of `--repeats` fresh runs."""
    return statistics.median(run() for _ in range(args.repeats))


async def _noop(key: str) -> bool:
    return True


def loop_floor(args: argparse.Namespace) -> float:
    """Steps per CPU second of the async measuring loop around a coroutine that does nothing:
    what no limiter measured here can exceed (its cost is in both sides of every ratio)."""
    return median_of(args, lambda: asyncio.run(rate_async(_noop, ["k"], args.seconds, 1)))


def memory_cases(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Vigil's memory limiters against `limits`' memory storages, async and sync."""
    cases: dict[str, dict[str, float]] = {}
    for (name, classes), (pattern, keys) in itertools.product(STRATEGIES.items(), PATTERNS.items()):
        say(args, f"memory {name} {pattern}")
        cases[f"{name}.{pattern}"] = memory_case(args, *classes, keys)
    return cases


def memory_case(
    args: argparse.Namespace, strategy: Strategy, sync_cls: Any, aio_cls: Any, keys: list[str]
) -> dict[str, float]:
    """One strategy and key pattern in memory, both faces, both libraries."""
    item = limits.RateLimitItemPerMinute(QUOTA)

    def vigil_async() -> float:
        limiter = Limiter("bench", Limit(QUOTA, 60, strategy))
        return asyncio.run(rate_async(limiter.hit, keys, args.seconds, 1))

    def limits_async() -> float:
        async def run() -> float:
            limiter = aio_cls(limits.aio.storage.MemoryStorage())
            return await rate_async(lambda key: limiter.hit(item, key), keys, args.seconds, 1)

        return asyncio.run(run())

    def vigil_sync() -> float:
        limiter = SyncLimiter("bench", Limit(QUOTA, 60, strategy))
        return rate_sync(limiter.hit, keys, args.seconds)

    def limits_sync() -> float:
        limiter = sync_cls(limits.storage.MemoryStorage())
        return rate_sync(lambda key: limiter.hit(item, key), keys, args.seconds)

    case = {
        "vigil_async": median_of(args, vigil_async),
        "limits_async": median_of(args, limits_async),
        "vigil_sync": median_of(args, vigil_sync),
        "limits_sync": median_of(args, limits_sync),
    }
    case["async_ratio"] = case["vigil_async"] / case["limits_async"]
    case["sync_ratio"] = case["vigil_sync"] / case["limits_sync"]
    return case


def start_redis(services: Services, workdir: Path) -> int:
    """A private redis-server on a free loopback port; its port once it answers."""
    port = free_port()
    argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
    argv += ["--appendonly", "no", "--dir", str(workdir)]
    try:
        services.start("redis", argv)
    except FileNotFoundError as exc:
        raise BenchError("redis-server is not installed") from exc
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(subprocess.CalledProcessError, OSError):
            subprocess.run(["redis-cli", "-p", str(port), "ping"], check=True, capture_output=True)
            return port
        time.sleep(0.05)
    raise BenchError(f"redis-server did not answer: {services.log_tail('redis')}")


def redis_cases(args: argparse.Namespace, port: int) -> dict[str, dict[str, float]]:
    """Vigil's RedisStorage against `limits.aio`'s Redis storage, 64 tasks each."""
    cases: dict[str, dict[str, float]] = {}
    for (name, (strategy, _, aio_cls)), (pattern, keys) in itertools.product(
        STRATEGIES.items(), PATTERNS.items()
    ):
        say(args, f"redis {name} {pattern}")
        cases[f"{name}.{pattern}"] = redis_case(args, port, strategy, aio_cls, keys)
    return cases


def redis_case(
    args: argparse.Namespace, port: int, strategy: Strategy, aio_cls: Any, keys: list[str]
) -> dict[str, float]:
    """One strategy and key pattern over the private Redis, both libraries."""
    item = limits.RateLimitItemPerMinute(QUOTA)

    def vigil() -> float:
        async def run() -> float:
            client = redis.asyncio.Redis(port=port, retry=Retry(NoBackoff(), 0))
            await client.flushdb()
            limiter = Limiter(
                "bench", Limit(QUOTA, 60, strategy), RedisStorage(client, timeout=5.0)
            )
            try:
                rate = await rate_async(limiter.hit, keys, args.seconds, TASKS)
            finally:
                await client.aclose()
            if limiter.stats().storage_errors:
                raise BenchError(f"Vigil: {limiter.stats().storage_errors} storage errors")
            return rate

        return asyncio.run(run())

    def anchor() -> float:
        async def run() -> float:
            storage = limits.aio.storage.RedisStorage(
                f"async+redis://127.0.0.1:{port}", implementation="redispy"
            )
            await storage.reset()
            limiter = aio_cls(storage)
            return await rate_async(lambda key: limiter.hit(item, key), keys, args.seconds, TASKS)

        return asyncio.run(run())

    case = {"vigil": median_of(args, vigil), "limits": median_of(args, anchor)}
    case["ratio"] = case["vigil"] / case["limits"]
    return case


def summarize(
    memory: dict[str, dict[str, float]], over_redis: dict[str, dict[str, float]]
) -> dict[str, Any]:
    """The figures and the ratios judged against the goals."""
    summary: dict[str, Any] = {
        "python": platform.python_version(),
        "limits_version": limits.__version__,
        "memory": memory,
        "redis": over_redis,
        "memory_ratio": min(case["async_ratio"] for case in memory.values()),
        "sync_memory_ratio": min(case["sync_ratio"] for case in memory.values()),
    }
    summary["memory_ratio_case"] = min(memory, key=lambda name: memory[name]["async_ratio"])
    if over_redis:
        summary["redis_ratio"] = min(case["ratio"] for case in over_redis.values())
        summary["redis_ratio_case"] = min(over_redis, key=lambda name: over_redis[name]["ratio"])
    summary["goals_met"] = {
        key: summary[key] >= goal for key, goal in GOALS.items() if key in summary
    }
    return summary


def print_report(summary: dict[str, Any]) -> None:
    """The tables and the ratios."""
    print(f"limits {summary['limits_version']}, Python {summary['python']}; decisions per CPU s")
    print(f"the async measuring loop alone: {summary['async_loop_floor']:,.0f} steps per CPU s")
    print(f"\n{'memory case':<28}{'vigil async':>13}{'limits.aio':>12}{'ratio':>8}"
          f"{'vigil sync':>13}{'limits':>11}{'ratio':>8}")  # fmt: skip
    for name, case in summary["memory"].items():
        print(
            f"{name:<28}{case['vigil_async']:>13,.0f}{case['limits_async']:>12,.0f}"
            f"{case['async_ratio']:>8.1f}{case['vigil_sync']:>13,.0f}"
            f"{case['limits_sync']:>11,.0f}{case['sync_ratio']:>8.1f}"
        )
    if summary["redis"]:
        print(f"\n{'redis case (64 tasks)':<28}{'vigil':>13}{'limits.aio':>12}{'ratio':>8}")
        for name, case in summary["redis"].items():
            print(f"{name:<28}{case['vigil']:>13,.0f}{case['limits']:>12,.0f}{case['ratio']:>8.1f}")
    print()
    print_ratios(
        summary,
        [
            ("memory_ratio", f"goal >= 10, lowest async case: {summary['memory_ratio_case']}"),
            ("sync_memory_ratio", "reported, no goal"),
            ("redis_ratio", f"goal >= 5, lowest case: {summary.get('redis_ratio_case')}"),
        ],
        20,
        ".1f",
    )


def main(argv: list[str] | None = None) -> int:
    """Run the cases and print the report; the exit code says whether it measured."""
    args = parse_args(argv)
    stop_on_signals()
    with tempfile.TemporaryDirectory(prefix="vigil-bench-ratelimit-") as tmp:
        services = Services(Path(tmp))
        try:
            floor = loop_floor(args)
            memory = memory_cases(args)
            over_redis = (
                {} if args.no_redis else redis_cases(args, start_redis(services, Path(tmp)))
            )
        except BenchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        finally:
            say(args, f"stopped pids {services.stop_all()}")
    summary = summarize(memory, over_redis)
    summary["async_loop_floor"] = floor
    print_report(summary)
    if args.json:
        print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
