"""Vigil's degradation webhook against a bare aiohttp handler, and its flags against Unleash.

Goals (from the issue):

* Webhook-to-transition latency: p99 of `POST /webhooks/alertmanager` on the real agent is
  <= 3x the p99 of a bare aiohttp handler that only parses the same JSON
  (`webhook_p99_ratio = agent_p99 / bare_p99`).
* Flag evaluations per CPU second: >= 30x UnleashClient's local evaluation of the same features,
  flags that use constraints (`flag_eval_ratio = vigil_per_s / unleash_per_s`), both sides
  giving the same answer for every evaluated context.

Method:

* Webhook. The real agent runs as a subprocess (`python -m agent run --config FILE`): one disk
  check, degradation on with the default SQLite store in a temp data dir, Bearer token from the
  environment, a rule `alertname="DemoDown"` -> `minimal`, `hold_seconds: 0` (a resolve recovers
  at once) and a flap guard that never trips. The bare server (`_degradation_services.py bare`)
  does `json.loads(await request.read())` and answers 200 `{}`. A load generator, its own process
  (`_degradation_services.py load`), posts the captured Alertmanager 0.25 payload over keep-alive
  at `--concurrency`, after a warm-up, `--requests` per run: worker `w` alternates firing and
  resolved of its own alert, each pair a new episode (`startsAt` increases), so on the agent
  every request is a stored change (one SQLite transaction, the state and its audit entries,
  synced to the write-ahead log: the webhook answers only after that). Every answer is checked:
  200, `changes` exactly `fired` / `resolved`, versions distinct and contiguous but for a clock
  tick's commit (at most one per `tick_seconds`), and at the end
  `GET /api/v1/degradation` reports the last version, level `full`, no active alert.
  With several workers the level changes only when the set of firing alerts becomes empty or not
  empty, so the same is also run serially (concurrency 1, one alert): there every request is a
  level transition (full -> minimal -> full ...), checked per answer, and reported as
  `webhook_p99_ratio_serial`. Sides are interleaved per repeat (bare, agent); medians reported.
  The CPU of each server process per request (`/proc/PID/stat`) is reported beside the latency.
* Where the agent's time goes: the engine path in-process (`DegradationEngine` over an
  in-memory store and a `SqliteStateStore`) timed per `receive()`, the durable store's `commit`
  timed on its own beside one bare `write` + `fdatasync` of a line (the floor of any durable
  commit), and the payload validation timed; `--profile`
  prints a cProfile to stderr.
* Flags, in-process, CPU time (`time.process_time`): one Unleash client-features document
  (`unleash_toggles`: a plain 25 % rollout, and four features whose strategies use constraints of
  every family: IN/NOT_IN, STR_STARTS_WITH case-insensitive, NUM_GTE/NUM_LT, SEMVER_GT,
  DATE_AFTER on the current time, IN_CIDR through a remoteAddress strategy, an inverted REGEX, a
  segment, userWithId, several strategies, strategy variants) is loaded into UnleashClient
  (bootstrapped from a dict, no server: registration, metrics and fetching off) and translated
  into Vigil flags by the translation of `vigil flags import`. Over 10,000 varied contexts, every
  feature's answer (and variant, when on) must be the same on both sides, and every feature
  must be on for some contexts and off for others, before anything is timed. Then
  `--evaluations` calls cycle over the contexts, each asking every feature in turn: Vigil's
  `Flags.evaluate` (and the bare `FlagSet.evaluate`) with its flat context against
  `UnleashClient.is_enabled` with Unleash's. The plain rollout alone is reported beside.
  `--flags-only` runs this part alone.

Everything binds 127.0.0.1 on free ports; loads are bounded in count and time; every process
started here is stopped by PID on the way out, errors included. `--json` makes the last line of
the output one JSON object. Exit codes: 0 done (goals met or not), 1 something failed a check.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import dataclasses
import gc
import io
import itertools
import json
import logging
import os
import platform
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from _agent import SERVICES, TICK_SECONDS, agent_config, helper_env, start_agent, start_bare
from _common import (
    START_SECONDS,
    BenchError,
    Services,
    http_get,
    print_ratios,
    proc_cpu_seconds,
    quantile,
    read_line,
    say,
    stop_on_signals,
)

from agent.config.model import DegradationSettings
from agent.degradation.alerts import WebhookPayload
from agent.degradation.audit import AuditPage, AuditQuery
from agent.degradation.engine import Actor, DegradationEngine
from agent.degradation.flags import Flags, FlagSet, Reason
from agent.degradation.flags.unleash import flag_key, translate_features, vigil_context
from agent.degradation.sqlitestore import SqliteStateStore

REPO = Path(__file__).resolve().parents[1]
GOALS = {"webhook_p99_ratio": 3.0, "flag_eval_ratio": 30.0}  # at most / at least
FLAG = "checkout-v2"
USERS = 10_000
EPOCH = 1_800_000_000.0  # startsAt of the first episode; each run starts 10^7 s later


@dataclasses.dataclass
class WebhookRun:
    """One measured load against one server."""

    side: str
    concurrency: int
    requests: int
    wall_seconds: float
    p50_seconds: float
    p99_seconds: float
    max_seconds: float
    cpu_seconds: float  # of the server process, every thread
    level_transitions: int | None = None

    @property
    def per_second(self) -> float:
        """Wall-clock throughput."""
        return self.requests / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def cpu_ms_per_request(self) -> float:
        """Server CPU milliseconds per request."""
        return 1000 * self.cpu_seconds / self.requests if self.requests else 0.0


# --- webhook --------------------------------------------------------------------------------


class WebhookBench:
    """The two servers and the loads against them."""

    def __init__(self, services: Services, workdir: Path, args: Any) -> None:
        self.services, self.args = services, args
        token = f"bench-{os.getpid()}-{time.time_ns()}"
        self.env = helper_env(token)
        self.bare, self.bare_port = start_bare(services)
        self.agent, self.agent_port = start_agent(services, workdir, token)
        self.runs = 0

    def measure(self, side: str, concurrency: int) -> WebhookRun:
        """One load of `--requests` against `side` (bare or agent) at `concurrency`."""
        proc, port = (
            (self.agent, self.agent_port) if side == "agent" else (self.bare, self.bare_port)
        )
        url = f"http://127.0.0.1:{port}/webhooks/alertmanager"
        epoch = EPOCH + 10_000_000 * self.runs
        self.runs += 1
        args = self.args
        argv = [sys.executable, str(SERVICES), "load", url, side, str(args.requests)]
        argv += [str(args.warmup), str(concurrency), str(args.max_seconds), str(epoch)]
        before_state = self.state() if side == "agent" else None
        began = time.monotonic()
        load = self.services.start("load", argv, self.env)
        try:
            first = read_line(load, args.max_seconds + START_SECONDS)
            if first != "ready":
                raise BenchError(f"{side} warm-up: {first} {self.services.log_tail('load')}")
            cpu = proc_cpu_seconds(proc.pid)
            assert load.stdin is not None
            load.stdin.write(b"go\n")
            tally = json.loads(read_line(load, args.max_seconds + START_SECONDS))
            cpu = proc_cpu_seconds(proc.pid) - cpu
        finally:
            self.services.procs.remove(("load", load))
            self.services.stop(load)
        if tally["bad"] or tally["errors"] or not tally["ok"]:
            raise BenchError(f"{side} at concurrency {concurrency}: {tally}")
        if tally["ok"] < args.requests:
            raise BenchError(f"{side}: only {tally['ok']}/{args.requests} within --max-seconds")
        run = WebhookRun(
            side,
            concurrency,
            tally["ok"],
            tally["wall_seconds"],
            tally["p50"],
            tally["p99"],
            tally["max"],
            cpu,
        )
        if side == "agent":
            assert before_state is not None
            self.check_agent(tally, before_state, concurrency, time.monotonic() - began)
            run.level_transitions = tally["level_transitions"]
        return run

    def state(self) -> dict[str, Any]:
        """`GET /api/v1/degradation` of the agent."""
        url = f"http://127.0.0.1:{self.agent_port}/api/v1/degradation"
        return dict(json.loads(http_get(url)))

    def check_agent(
        self, tally: dict[str, Any], before: dict[str, Any], concurrency: int, seconds: float
    ) -> None:
        """Every measured request was a stored change, and the agent says so too.

        Besides the requests, only the engine's clock tick (every `tick_seconds`, 60 here) may
        store a version: it prunes the flap guard's history of level changes, so at most one
        version per tick that fell in the `seconds` the run took is not a request's.
        """
        n, first, last = tally["ok"], tally["first_version"], tally["last_version"]
        ticks = int(seconds // TICK_SECONDS) + 1
        if tally["distinct_versions"] != n or not n <= last - first + 1 <= n + ticks:
            raise BenchError(
                f"agent versions: {tally['distinct_versions']} distinct, {first}..{last}"
                f" for {n} requests in {seconds:.0f} s"
            )
        after = self.state()
        if after["version"] != last or after["level"] != "full" or after["active_alerts"]:
            raise BenchError(f"agent state after the load: {after} (last answer {last})")
        requests = n + (self.args.warmup + 1) // 2 * 2
        if not requests <= after["version"] - before["version"] <= requests + ticks:
            raise BenchError(
                f"agent version moved {after['version'] - before['version']}"
                f" for {n} requests and the warm-up in {seconds:.0f} s"
            )
        if concurrency == 1 and tally["level_transitions"] != n - 1:
            raise BenchError(f"serial: {tally['level_transitions']} transitions for {n} requests")


# --- the engine path in-process -------------------------------------------------------------


class MemoryStore:
    """A state store that keeps the last document in memory: the engine without durable I/O."""

    shared = False

    def __init__(self) -> None:
        self.state: dict[str, Any] | None = None
        self.entries = 0

    async def load(self) -> dict[str, Any] | None:
        """The stored document."""
        return self.state

    async def commit(
        self, expected_version: int, state: dict[str, Any], audit: Sequence[dict[str, Any]]
    ) -> None:
        """Keep `state`, count `audit`."""
        self.state = state
        self.entries += len(audit)

    async def history(self, query: AuditQuery) -> AuditPage:
        """No entries are kept."""
        return AuditPage([], None)

    async def listen(self, on_change: Any) -> None:
        """No other writer."""

    async def close(self) -> None:
        """Nothing to release."""


class TimedStore:
    """Any state store, with each commit's wall time recorded."""

    shared = False

    def __init__(self, store: SqliteStateStore) -> None:
        self.store = store
        self.commit_seconds: list[float] = []

    async def load(self) -> dict[str, Any] | None:
        """The wrapped store's load."""
        return await self.store.load()

    async def commit(
        self, expected_version: int, state: dict[str, Any], audit: Sequence[dict[str, Any]]
    ) -> None:
        """The wrapped store's commit, timed."""
        started = time.perf_counter()
        await self.store.commit(expected_version, state, audit)
        self.commit_seconds.append(time.perf_counter() - started)

    async def history(self, query: AuditQuery) -> AuditPage:
        """The wrapped store's history."""
        return await self.store.history(query)

    async def listen(self, on_change: Any) -> None:
        """The wrapped store's listen."""
        await self.store.listen(on_change)

    async def close(self) -> None:
        """The wrapped store's close."""
        await self.store.close()


def engine_settings() -> DegradationSettings:
    """The degradation settings the agent under test runs with."""
    return DegradationSettings.model_validate(agent_config(0, Path("."))["degradation"])


def engine_payloads(count: int) -> list[bytes]:
    """`count` alternating firing / resolved bodies of one alert, a new episode per pair."""
    sys.path.insert(0, str(SERVICES.parent))
    try:
        from _degradation_services import fixture_body, payload
    finally:
        sys.path.remove(str(SERVICES.parent))
    import datetime as dt

    base, start = fixture_body(), dt.datetime.fromtimestamp(EPOCH, dt.UTC)
    bodies = []
    for i in range(count):
        starts = start + dt.timedelta(seconds=i // 2)
        bodies.append(payload(base, "bench-engine", starts, firing=i % 2 == 0))
    return bodies


async def _receive_all(engine: DegradationEngine, payloads: list[WebhookPayload]) -> list[float]:
    """Wall seconds of each `engine.receive`, one after another; every one must transition."""
    actor = Actor("alertmanager", "bench")
    times = []
    for payload in payloads:
        started = time.perf_counter()
        step = await engine.receive(payload, actor, None)
        times.append(time.perf_counter() - started)
        if step.transition is None:
            raise BenchError(f"engine: no transition at version {step.state.version}")
    return times


def time_fdatasync(path: Path, count: int) -> float:
    """Wall ms (p50) of one line written and fdatasynced: what any durable commit pays at least."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    times = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            os.write(fd, b'{"action": "level_changed", "version": 1}\n')
            os.fdatasync(fd)
            times.append(time.perf_counter() - started)
    finally:
        os.close(fd)
    return 1000 * statistics.median(times)


async def _timed_receives(
    store: Any, payloads: list[WebhookPayload], profiler: cProfile.Profile | None
) -> tuple[list[float], float]:
    """Wall seconds of each receive() after 20 unmeasured ones, and their CPU seconds in all."""
    engine = DegradationEngine(engine_settings(), store)
    await engine.start()
    try:
        await _receive_all(engine, payloads[:20])  # warm-up
        cpu = time.process_time()
        if profiler is not None:
            profiler.enable()
        times = await _receive_all(engine, payloads[20:])
        if profiler is not None:
            profiler.disable()
        return times, time.process_time() - cpu
    finally:
        await engine.stop()


def measure_engine(workdir: Path, count: int, profile: bool) -> dict[str, Any]:
    """Per-call cost of the engine path: validation, receive() over SQLite and over memory."""
    bodies = engine_payloads(count)
    started = time.process_time()
    payloads = [WebhookPayload.model_validate_json(b) for b in bodies]
    validate_cpu = time.process_time() - started
    started = time.process_time()
    for body in bodies:
        json.loads(body)
    loads_cpu = time.process_time() - started
    result: dict[str, Any] = {
        "calls": count,
        "payload_bytes": len(bodies[0]),
        "validate_us": 1e6 * validate_cpu / count,
        "json_loads_us": 1e6 * loads_cpu / count,
    }
    profiler = cProfile.Profile() if profile else None
    for name in ("memory", "sqlite"):
        data = workdir / f"engine-{name}"
        store: Any
        if name == "memory":
            store = MemoryStore()
        else:
            store = TimedStore(SqliteStateStore.at(data / "vigil.db"))

        gc.collect()
        times, cpu = asyncio.run(
            _timed_receives(store, payloads, profiler if name == "sqlite" else None)
        )
        result[f"receive_{name}_p50_ms"] = 1000 * statistics.median(times)
        result[f"receive_{name}_p99_ms"] = 1000 * quantile(times, 0.99)
        result[f"receive_{name}_cpu_ms"] = 1000 * cpu / len(times)
        if isinstance(store, TimedStore):
            commits = store.commit_seconds[20:]
            result[f"commit_{name}_p50_ms"] = 1000 * statistics.median(commits)
            result[f"commit_{name}_p99_ms"] = 1000 * quantile(commits, 0.99)
    result["fdatasync_p50_ms"] = time_fdatasync(workdir / "fdatasync.jsonl", count // 2)
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
        print(out.getvalue(), file=sys.stderr)
    return result


# --- flags ----------------------------------------------------------------------------------


def unleash_toggles() -> dict[str, Any]:
    """`/api/client/features` with the benchmark's features: one plain rollout, the rest with
    constraints of every family (IN/NOT_IN, STR_*, NUM_*, SEMVER_*, DATE_*, IN_CIDR, REGEX,
    inversion, case-insensitivity), several strategies, strategy variants and a segment."""

    def rollout(percent: int, stickiness: str, group: str, **more: Any) -> dict[str, Any]:
        parameters = {"rollout": str(percent), "stickiness": stickiness, "groupId": group}
        return {"name": "flexibleRollout", "parameters": parameters, **more}

    def feature(name: str, *strategies: dict[str, Any], **more: Any) -> dict[str, Any]:
        return {
            "name": name,
            "type": "release",
            "project": "default",
            "enabled": True,
            "impressionData": False,
            "strategies": list(strategies),
            "variants": [],
            **more,
        }

    def payload(value: str) -> dict[str, str]:
        return {"type": "string", "value": value}

    return {
        "version": 2,
        "segments": [
            {
                "id": 7,
                "constraints": [{"contextName": "tier", "operator": "IN", "values": ["a", "b"]}],
            }
        ],
        "features": [
            feature(FLAG, rollout(25, "userId", FLAG)),
            feature(
                "search.beta",
                rollout(
                    50,
                    "default",
                    "search",
                    constraints=[
                        {"contextName": "region", "operator": "IN", "values": ["eu", "us"]},
                        {"contextName": "appVersion", "operator": "SEMVER_GT", "value": "2.1.0"},
                        {
                            "contextName": "plan",
                            "operator": "STR_STARTS_WITH",
                            "values": ["pro", "team"],
                            "caseInsensitive": True,
                        },
                    ],
                ),
            ),
            feature(
                "new-pricing",
                {"name": "userWithId", "parameters": {"userIds": "user-00001, user-00002"}},
                rollout(
                    30,
                    "userId",
                    "pricing",
                    constraints=[
                        {"contextName": "age", "operator": "NUM_GTE", "value": "18"},
                        {"contextName": "country", "operator": "NOT_IN", "values": ["DE", "FR"]},
                    ],
                    variants=[
                        {
                            "name": "low",
                            "weight": 500,
                            "stickiness": "userId",
                            "payload": payload("9"),
                        },
                        {
                            "name": "high",
                            "weight": 500,
                            "stickiness": "userId",
                            "payload": payload("12"),
                        },
                    ],
                ),
            ),
            feature(
                "office-only",
                {
                    "name": "remoteAddress",
                    "parameters": {"IPs": "10.1.0.0/16, 192.168.1.7"},
                    "constraints": [
                        {
                            "contextName": "currentTime",
                            "operator": "DATE_AFTER",
                            "value": "2020-01-01T00:00:00.000Z",
                        }
                    ],
                },
            ),
            feature(
                "no-example-mail",
                {
                    "name": "default",
                    "constraints": [
                        {
                            "contextName": "email",
                            "operator": "REGEX",
                            "value": "@example\\.(com|org)$",
                            "inverted": True,
                        },
                        {"contextName": "age", "operator": "NUM_LT", "value": "60"},
                    ],
                    "segments": [7],
                },
            ),
        ],
    }


def bench_contexts() -> list[dict[str, Any]]:
    """USERS Unleash contexts, varied so that every feature is on for some and off for others."""
    contexts = []
    for i in range(USERS):
        properties = {
            "region": ("eu", "us", "ap")[i % 3],
            "appVersion": ("1.9.0", "2.1.0", "2.1.1", "3.0.0-beta.1", "3.0.0")[i % 5],
            "plan": ("Pro-monthly", "team", "free", "PROFESSIONAL")[i % 4],
            "age": str(10 + i % 60),
            "country": ("DE", "US", "FR", "JP", "BR", "IN", "MX")[i % 7],
            "email": f"u{i}@" + ("example.com", "mail.test", "example.org", "corp.io")[i % 4],
            "tier": ("a", "b", "c")[i % 3],
        }
        address = f"10.{i % 3}.{i % 7}.{i % 250}" if i % 11 else "192.168.1.7"
        contexts.append(
            {"userId": f"user-{i:05d}", "remoteAddress": address, "properties": properties}
        )
    return contexts


@contextlib.contextmanager
def unleash_client(workdir: Path) -> Iterator[Any]:
    """An UnleashClient evaluating locally from a bootstrapped cache; nothing goes out."""
    from UnleashClient import UnleashClient
    from UnleashClient.cache import FileCache

    cache = FileCache("vigil-bench", directory=str(workdir / "unleash-cache"))
    cache.bootstrap_from_dict(unleash_toggles())
    client = UnleashClient(
        "http://127.0.0.1:9/api",  # never contacted: registration, metrics and fetching are off
        "vigil-bench",
        disable_registration=True,
        disable_metrics=True,
        refresh_interval=3600,
        cache=cache,
    )
    client.initialize_client(fetch_toggles=False)
    try:
        names = {feature["name"] for feature in unleash_toggles()["features"]}
        if not names <= set(client.feature_definitions()):
            raise BenchError(f"UnleashClient did not load the bootstrapped flags: {client!r}")
        yield client
    finally:
        client.destroy()


def cpu_rate(fn: Callable[[str, Any], Any], calls: list[tuple[str, Any]], count: int) -> float:
    """Calls of `fn(flag, ctx)` per CPU second over `count` calls cycling over `calls`."""
    cycle = list(itertools.islice(itertools.cycle(calls), count))
    gc.collect()
    started = time.process_time()
    for flag, ctx in cycle:
        fn(flag, ctx)
    return count / (time.process_time() - started)


def check_answers(
    flags: Flags, client: Any, names: list[str], contexts: list[dict[str, Any]]
) -> dict[str, Any]:
    """Both sides' answer for every feature and context: the same value (and, when on, the same
    variant), or BenchError naming the first difference; each feature's share on."""
    shares = {}
    for name in names:
        on = 0
        for context in contexts:
            vigil = flags.evaluate(flag_key(name), vigil_context(context))
            if vigil.reason is Reason.ERROR:
                raise BenchError(f"vigil answered {vigil} for {name} and {context}: an error path")
            unleash = client.is_enabled(name, context)
            if vigil.value is not unleash:
                raise BenchError(f"{name} for {context}: vigil {vigil.value}, unleash {unleash}")
            if unleash:
                variant = client.get_variant(name, context)["name"]
                mine = vigil.variant if vigil.variant != "on" else "disabled"
                if mine != variant:
                    raise BenchError(f"{name} for {context}: vigil {mine}, unleash {variant}")
            on += unleash
        shares[name] = on / len(contexts)
        if not 0 < shares[name] < 1:
            raise BenchError(f"{name} is on for {shares[name]:.0%} of the contexts: not a mix")
    return shares


def measure_flags(workdir: Path, args: Any) -> dict[str, Any]:
    """Evaluations per CPU second of Vigil (Flags, FlagSet) and UnleashClient over the same
    features (Vigil's translated by `vigil flags import`'s translation) and contexts; medians.

    Both sides must give the same answer for every feature and context first.
    """
    document = unleash_toggles()
    translation = translate_features(document)
    if translation.refused:
        raise BenchError(f"the translation refused {translation.refused}")
    definitions = list(translation.definitions.values())
    segments = list(translation.segments.values())
    flags = Flags(definitions, segments=segments)
    flag_set = FlagSet.build(definitions, segments=segments)
    names = [feature["name"] for feature in document["features"]]
    contexts = bench_contexts()
    flat = [vigil_context(context) for context in contexts]
    # Flag after flag for each context, as a request asks several flags.
    unleash_calls = [(name, ctx) for ctx in contexts for name in names]
    vigil_calls = [(flag_key(name), ctx) for ctx in flat for name in names]
    plain_unleash = [(FLAG, ctx) for ctx in contexts]
    plain_vigil = [(FLAG, ctx) for ctx in flat]
    rates: dict[str, list[float]] = {
        "vigil": [],
        "vigil_flagset": [],
        "unleash": [],
        "vigil_plain": [],
        "unleash_plain": [],
    }
    with unleash_client(workdir) as client:
        shares = check_answers(flags, client, names, contexts)
        for rep in range(args.repeat):
            say(args, f"flags repeat {rep + 1}/{args.repeat}")
            rates["vigil"].append(cpu_rate(flags.evaluate, vigil_calls, args.evaluations))
            rates["vigil_flagset"].append(
                cpu_rate(flag_set.evaluate, vigil_calls, args.evaluations)
            )
            rates["unleash"].append(cpu_rate(client.is_enabled, unleash_calls, args.evaluations))
            rates["vigil_plain"].append(cpu_rate(flags.evaluate, plain_vigil, args.evaluations))
            rates["unleash_plain"].append(
                cpu_rate(client.is_enabled, plain_unleash, args.evaluations)
            )
    med = {side: statistics.median(values) for side, values in rates.items()}
    return {
        "evaluations": args.evaluations,
        "users": USERS,
        "features": names,
        "vigil_per_s": med["vigil"],
        "vigil_flagset_per_s": med["vigil_flagset"],
        "unleash_per_s": med["unleash"],
        "vigil_plain_per_s": med["vigil_plain"],
        "unleash_plain_per_s": med["unleash_plain"],
        "runs_per_s": {side: [round(v) for v in values] for side, values in rates.items()},
        "share_on": shares,
        "answers_checked": len(names) * len(contexts),
        "unleash_version": _version("UnleashClient"),
        "yggdrasil_engine_version": _version("yggdrasil-engine"),
    }


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


# --- run and report -------------------------------------------------------------------------


def run_webhooks(services: Services, workdir: Path, args: Any) -> dict[str, list[WebhookRun]]:
    """Start both servers; measure bare and agent interleaved, at each concurrency, `--repeat`."""
    bench = WebhookBench(services, workdir, args)
    say(args, f"agent pid {bench.agent.pid} port {bench.agent_port}, bare pid {bench.bare.pid}")
    levels = [args.concurrency] + ([1] if args.concurrency != 1 and args.serial else [])
    results: dict[str, list[WebhookRun]] = {}
    for rep in range(args.repeat):
        for concurrency in levels:
            for side in ("bare", "agent"):
                say(args, f"repeat {rep + 1}/{args.repeat}: {side}, concurrency {concurrency}")
                run = bench.measure(side, concurrency)
                results.setdefault(f"{side}@{concurrency}", []).append(run)
    return results


def webhook_summary(runs: list[WebhookRun]) -> dict[str, Any]:
    """Medians of one side at one concurrency."""
    return {
        "concurrency": runs[0].concurrency,
        "requests_per_run": runs[0].requests,
        "p50_ms": statistics.median(1000 * r.p50_seconds for r in runs),
        "p99_ms": statistics.median(1000 * r.p99_seconds for r in runs),
        "max_ms": statistics.median(1000 * r.max_seconds for r in runs),
        "per_second": statistics.median(r.per_second for r in runs),
        "server_cpu_ms_per_request": statistics.median(r.cpu_ms_per_request for r in runs),
        "level_transitions": [r.level_transitions for r in runs]
        if runs[0].level_transitions is not None
        else None,
        "runs_p99_ms": [round(1000 * r.p99_seconds, 3) for r in runs],
    }


def summarize(
    webhooks: dict[str, list[WebhookRun]],
    engine: dict[str, Any],
    flags: dict[str, Any],
    args: Any,
) -> dict[str, Any]:
    """The JSON summary: ratios first, then the figures behind them."""
    sides = {key: webhook_summary(runs) for key, runs in webhooks.items()}
    c = args.concurrency
    ratio = sides[f"agent@{c}"]["p99_ms"] / sides[f"bare@{c}"]["p99_ms"]
    summary: dict[str, Any] = {"webhook_p99_ratio": ratio}
    if "agent@1" in sides and c != 1:
        summary["webhook_p99_ratio_serial"] = sides["agent@1"]["p99_ms"] / sides["bare@1"]["p99_ms"]
    summary["webhook_p50_ratio"] = sides[f"agent@{c}"]["p50_ms"] / sides[f"bare@{c}"]["p50_ms"]
    summary["webhook_throughput_ratio"] = (
        sides[f"agent@{c}"]["per_second"] / sides[f"bare@{c}"]["per_second"]
    )
    flag_part = flags_summary(flags, args)
    summary.update((k, v) for k, v in flag_part.items() if k.startswith("flag_eval_ratio"))
    summary["goals"] = GOALS
    summary["goals_met"] = {
        "webhook_p99_ratio": summary["webhook_p99_ratio"] <= GOALS["webhook_p99_ratio"],
        **flag_part["goals_met"],
    }
    summary["webhook"] = sides
    summary["engine"] = engine
    summary["flags"] = flags
    summary["settings"] = {
        "repeat": args.repeat,
        "requests": args.requests,
        "warmup": args.warmup,
        "concurrency": c,
        "evaluations": args.evaluations,
    }
    summary["machine"] = {
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "python": platform.python_version(),
    }
    return summary


def flags_summary(flags: dict[str, Any], args: Any) -> dict[str, Any]:
    """The ratios of the flags part, its goal, and its figures."""
    ratio = flags["vigil_per_s"] / flags["unleash_per_s"]
    return {
        "flag_eval_ratio": ratio,
        "flag_eval_ratio_flagset": flags["vigil_flagset_per_s"] / flags["unleash_per_s"],
        "flag_eval_ratio_plain": flags["vigil_plain_per_s"] / flags["unleash_plain_per_s"],
        "goals": {"flag_eval_ratio": GOALS["flag_eval_ratio"]},
        "goals_met": {"flag_eval_ratio": ratio >= GOALS["flag_eval_ratio"]},
        "flags": flags,
        "settings": {"repeat": args.repeat, "evaluations": args.evaluations},
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg": os.getloadavg(),
            "python": platform.python_version(),
        },
    }


FLAG_ROWS = [
    ("flag_eval_ratio", f">= {GOALS['flag_eval_ratio']}, features with constraints"),
    ("flag_eval_ratio_flagset", "info"),
    ("flag_eval_ratio_plain", "info, the plain rollout flag alone"),
]


def print_report(summary: dict[str, Any]) -> None:
    """The readable report."""
    s = summary["settings"]
    print(
        f"\nAlertmanager webhook, {s['requests']} requests per run after {s['warmup']} warm-up,"
        f" median of {s['repeat']} runs"
    )
    head = f"{'side':<10}{'conc':>5}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'req/s':>8}"
    head += f"{'srv CPU ms/req':>16}{'  level transitions'}"
    print(head + "\n" + "-" * len(head))
    for key, side in summary["webhook"].items():
        transitions = side["level_transitions"]
        row = f"{key.split('@')[0]:<10}{side['concurrency']:>5}{side['p50_ms']:>9.3f}"
        row += f"{side['p99_ms']:>9.3f}{side['max_ms']:>9.3f}{side['per_second']:>8.0f}"
        row += f"{side['server_cpu_ms_per_request']:>16.3f}"
        row += f"  {transitions}" if transitions is not None else ""
        print(row)
    e = summary["engine"]
    print(f"\nengine path in-process, {e['calls'] - 20} receive() calls, each a level transition")
    print(f"  payload ({e['payload_bytes']} B) json.loads          {e['json_loads_us']:8.1f} us")
    print(f"  WebhookPayload.model_validate_json       {e['validate_us']:8.1f} us")
    for name in ("memory", "sqlite"):
        print(
            f"  receive() over the {name + ' store':<14}  p50 {e[f'receive_{name}_p50_ms']:.3f} ms"
            f"  p99 {e[f'receive_{name}_p99_ms']:.3f} ms  CPU {e[f'receive_{name}_cpu_ms']:.3f} ms"
        )
    print(
        f"  of which SqliteStateStore.commit  p50 {e['commit_sqlite_p50_ms']:.3f} ms"
        f"  p99 {e['commit_sqlite_p99_ms']:.3f} ms"
        " (one transaction on the database thread, WAL, synchronous FULL)"
    )
    print(f"  for scale: one line written and fdatasynced  p50 {e['fdatasync_p50_ms']:.3f} ms")
    if "flags" in summary:
        print_flags(summary["flags"])
    print("\nratios (goal)")
    rows = [
        ("webhook_p99_ratio", f"<= {GOALS['webhook_p99_ratio']}"),
        ("webhook_p99_ratio_serial", "info, every request a level transition"),
        ("webhook_p50_ratio", "info"),
        ("webhook_throughput_ratio", "info"),
        *FLAG_ROWS,
    ]
    print_ratios(summary, rows, 28, "8.2f")


def print_flags(f: dict[str, Any]) -> None:
    """The flags part of the report."""
    print(
        f"\nflag evaluations per CPU second, {f['evaluations']} per run over"
        f" {len(f['features'])} features x {f['users']} contexts"
    )
    print(f"  vigil Flags.evaluate        {f['vigil_per_s']:12,.0f}")
    print(f"  vigil FlagSet.evaluate      {f['vigil_flagset_per_s']:12,.0f}")
    print(
        f"  UnleashClient.is_enabled    {f['unleash_per_s']:12,.0f}"
        f"  (UnleashClient {f['unleash_version']}, yggdrasil-engine"
        f" {f['yggdrasil_engine_version']})"
    )
    print(
        f"  the plain 25 % rollout alone: vigil {f['vigil_plain_per_s']:,.0f},"
        f" unleash {f['unleash_plain_per_s']:,.0f}"
    )
    shares = ", ".join(f"{name} {share:.0%}" for name, share in f["share_on"].items())
    print(f"  same answer (and variant) for all {f['answers_checked']:,} pairs; on: {shares}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # p99 of 5,000 answers is the 50th slowest: steadier than of 2,000 on a shared box.
    parser.add_argument("--requests", type=int, default=5000, help="webhooks per run (5000)")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured webhooks first (200)")
    parser.add_argument("--concurrency", type=int, default=4, help="webhooks in flight (4)")
    parser.add_argument(
        "--serial",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run at concurrency 1, every request a level transition (on)",
    )
    parser.add_argument(
        "--evaluations", type=int, default=300_000, help="flag evaluations per run (300000)"
    )
    parser.add_argument("--engine-calls", type=int, default=1000, help="in-process receive()s")
    parser.add_argument("--repeat", type=int, default=5, help="runs per side; medians (5)")
    parser.add_argument("--max-seconds", type=float, default=120, help="cap per load (120)")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    parser.add_argument("--flags-only", action="store_true", help="only the flags part")
    parser.add_argument("--profile", action="store_true", help="cProfile receive() to stderr")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    for name in ("requests", "concurrency", "evaluations", "repeat"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.requests % 2:
        parser.error("--requests must be even (firing / resolved pairs)")
    if args.warmup < 0 or args.warmup % 2:
        parser.error("--warmup must be even and not negative")
    if args.engine_calls < 40 or args.engine_calls % 2:
        parser.error("--engine-calls must be even and at least 40")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run both benchmarks and print the report; the exit code says whether it measured."""
    args = parse_args(argv)
    stop_on_signals()
    logging.getLogger("UnleashClient").setLevel(logging.ERROR)
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    with tempfile.TemporaryDirectory(prefix="vigil-bench-degradation-") as tmp:
        workdir = Path(tmp)
        services = Services(workdir)
        try:
            if args.flags_only:
                flags = measure_flags(workdir, args)
                summary = flags_summary(flags, args)
                print_flags(flags)
                print_ratios(summary, FLAG_ROWS, 28, "8.2f")
                if args.json:
                    print(json.dumps(summary), flush=True)
                return 0
            webhooks = run_webhooks(services, workdir, args)
            say(args, f"engine in-process: {args.engine_calls} receive() calls per store")
            engine = measure_engine(workdir, args.engine_calls, args.profile)
            flags = measure_flags(workdir, args)
        except BenchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        finally:
            say(args, f"stopped pids {services.stop_all()}")
    summary = summarize(webhooks, engine, flags, args)
    print_report(summary)
    if args.json:
        print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
