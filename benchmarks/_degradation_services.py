"""Helper processes for `benchmarks/degradation.py` and `benchmarks/soak.py`, each its own process
so that its CPU is not counted against the server under test.

    python benchmarks/_degradation_services.py bare   # aiohttp server: json.loads, answers {}
    python benchmarks/_degradation_services.py load URL MODE N WARMUP CONCURRENCY MAX_SECONDS EPOCH
    python benchmarks/_degradation_services.py soak URL MODE SECONDS WARMUP_SECONDS WINDOW \
        CONCURRENCY ALERTS EPOCH

`bare` binds 127.0.0.1 on a free port, prints `port <n>` and answers every
`POST /webhooks/alertmanager` with `json.loads(await request.read())` and `200 {}`: the floor
any Python webhook receiver on aiohttp pays.

`load` posts Alertmanager v4 payloads (the captured fixture, one alert) at CONCURRENCY over
keep-alive connections. Worker `w` owns the alert with fingerprint `bench-w` and alternates
firing / resolved of it, each firing a new episode (`startsAt` = EPOCH + episode seconds), so on
the agent every request is a stored state change. With CONCURRENCY 1 there is one alert and every
request is also a level transition (full -> minimal -> full ...). Requests go in pairs, so each
worker ends with its alert resolved. It warms up (WARMUP requests), prints `ready`, waits for
`go` on stdin, sends N requests, prints one JSON line (counts, latencies, checks) and exits.
MODE `agent` checks every answer (200, `changes`, `level`, `version`); MODE `bare` checks 200 `{}`.

`soak` drives for a time instead of a count: worker `w` of CONCURRENCY owns alerts `soak-a` for
`a = w, w + CONCURRENCY, ...` below ALERTS, and in each cycle fires all of them in a new episode,
then resolves them all, so every request is a stored change. It warms up for WARMUP_SECONDS,
prints `ready`, waits for `go`, drives for SECONDS, and prints one JSON line: 2xx answers per
second, latency quantiles per WINDOW seconds, answers by status, and, in MODE `agent`, the
versions acknowledged and each alert's last acknowledged change.

Every helper exits at EOF on stdin, so nothing outlives a benchmark that was killed.
"""

from __future__ import annotations

import array
import asyncio
import copy
import datetime as dt
import itertools
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).resolve().parents[1] / "tests/fixtures/alertmanager/webhook_firing.json"
HOOK_ENV = "VIGIL_BENCH_HOOK"
RESOLVED_AFTER = dt.timedelta(seconds=6)


async def _watch_parent() -> None:
    """Return at EOF on stdin: the parent closed its end of the pipe, or is gone."""
    await asyncio.to_thread(sys.stdin.buffer.read)


async def serve_bare() -> None:
    """The bare handler: parse the same JSON, answer 200 `{}`."""
    from aiohttp import web

    async def webhook(request: web.Request) -> web.Response:
        json.loads(await request.read())
        return web.json_response({})

    app = web.Application()
    app.add_routes([web.post("/webhooks/alertmanager", webhook)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(f"port {runner.addresses[0][1]}", flush=True)
    try:
        await _watch_parent()
    finally:
        await runner.cleanup()


def fixture_body() -> dict[str, Any]:
    """The captured Alertmanager 0.25 firing notification."""
    return dict(json.loads(FIXTURE.read_text())["body"])


def payload(base: dict[str, Any], fingerprint: str, starts: dt.datetime, firing: bool) -> bytes:
    """The fixture as a firing or resolved message for one alert episode."""
    body = copy.deepcopy(base)
    status = "firing" if firing else "resolved"
    body["status"] = status
    alert = body["alerts"][0]
    alert["status"] = status
    alert["fingerprint"] = fingerprint
    alert["startsAt"] = starts.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    alert["endsAt"] = (
        "0001-01-01T00:00:00Z"
        if firing
        else (starts + RESOLVED_AFTER).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )
    return json.dumps(body).encode()


def quantile(values: list[float], q: float) -> float:
    """The `q` quantile of `values` (nearest rank), 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Load:
    """Workers that alternate firing / resolved of their own alert, one episode per pair."""

    def __init__(self, session: Any, url: str, mode: str, concurrency: int, epoch: float) -> None:
        self.session, self.url, self.mode, self.concurrency = session, url, mode, concurrency
        self.base = fixture_body()
        self.start = dt.datetime.fromtimestamp(epoch, dt.UTC)
        self.episodes = [0] * concurrency  # per worker, across warm-up and measured phases
        self.headers = {
            "Authorization": f"Bearer {os.environ.get(HOOK_ENV, '')}",
            "Content-Type": "application/json",
        }

    async def drive(self, count: int, deadline: float) -> dict[str, Any]:
        """Send `count` requests (rounded up to whole pairs) from the workers."""
        pairs = (count + 1) // 2
        tally = {"sent": 0, "ok": 0, "bad": 0, "errors": 0}
        latencies: list[float] = []
        answers: list[tuple[int, str, bool]] = []  # agent: (version, level, firing)
        first_bad = ""

        async def one(worker: int, firing: bool, body: bytes) -> None:
            nonlocal first_bad
            tally["sent"] += 1
            started = time.perf_counter()
            try:
                async with self.session.post(self.url, data=body, headers=self.headers) as resp:
                    raw = await resp.read()
                    status = resp.status
            except Exception as exc:
                tally["errors"] += 1
                first_bad = first_bad or f"{type(exc).__name__}: {exc}"
                return
            latencies.append(time.perf_counter() - started)
            problem = self.check(status, raw, firing, answers)
            if problem:
                tally["bad"] += 1
                first_bad = first_bad or f"worker {worker}: {problem}"
            else:
                tally["ok"] += 1

        async def worker(w: int, quota: int) -> None:
            fingerprint = f"bench-{w:04d}"
            for _ in range(quota):
                if time.monotonic() > deadline:
                    return
                starts = self.start + dt.timedelta(seconds=self.episodes[w])
                self.episodes[w] += 1
                fire = payload(self.base, fingerprint, starts, firing=True)
                resolve = payload(self.base, fingerprint, starts, firing=False)
                await one(w, True, fire)
                await one(w, False, resolve)

        quotas = [
            pairs // self.concurrency + (w < pairs % self.concurrency)
            for w in range(self.concurrency)
        ]
        wall = time.perf_counter()
        await asyncio.gather(*(worker(w, q) for w, q in enumerate(quotas)))
        wall = time.perf_counter() - wall
        result: dict[str, Any] = {
            **tally,
            "wall_seconds": wall,
            "p50": quantile(latencies, 0.5),
            "p99": quantile(latencies, 0.99),
            "max": max(latencies, default=0.0),
            "first_bad": first_bad,
        }
        if self.mode == "agent":
            result.update(self.order(answers))
        return result

    def check(
        self, status: int, raw: bytes, firing: bool, answers: list[tuple[int, str, bool]]
    ) -> str:
        """Why an answer is wrong, or "" when it is what this mode must answer."""
        if status != 200:
            return f"status {status}: {raw[:300]!r}"
        try:
            body = json.loads(raw)
        except ValueError:
            return f"not JSON: {raw[:300]!r}"
        if self.mode == "bare":
            return "" if body == {} else f"bare answered {raw[:300]!r}"
        want = {"fired": 1} if firing else {"resolved": 1}
        answers.append((int(body.get("version", -1)), str(body.get("level")), firing))
        if body.get("changes") != want:
            return f"changes {body.get('changes')} for a {'firing' if firing else 'resolve'}"
        expected = "minimal" if firing else "full"
        if self.concurrency == 1 and body.get("level") != expected:
            return f"level {body.get('level')} after a {'firing' if firing else 'resolve'}"
        return ""

    @staticmethod
    def order(answers: list[tuple[int, str, bool]]) -> dict[str, Any]:
        """The agent's answers in the order it stored them (by version)."""
        ordered = sorted(answers)
        versions = [v for v, _, _ in ordered]
        levels = [level for _, level, _ in ordered]
        return {
            "first_version": versions[0] if versions else None,
            "last_version": versions[-1] if versions else None,
            "distinct_versions": len(set(versions)),
            "level_transitions": sum(a != b for a, b in itertools.pairwise(levels)),
            "last_level": levels[-1] if levels else None,
        }


class Soak:
    """Workers that fire and then resolve their share of the alerts, a new episode per cycle."""

    def __init__(
        self, session: Any, url: str, mode: str, concurrency: int, alerts: int, epoch: float
    ) -> None:
        self.session, self.url, self.mode = session, url, mode
        self.base = fixture_body()
        self.start = dt.datetime.fromtimestamp(epoch, dt.UTC)
        self.owned = [
            [f"soak-{a:04d}" for a in range(w, alerts, concurrency)] for w in range(concurrency)
        ]
        self.cycles = [0] * concurrency  # per worker, across warm-up and measured phases
        self.last: dict[str, tuple[str, str, int]] = {}  # fingerprint: status, startsAt, version
        self.headers = {
            "Authorization": f"Bearer {os.environ.get(HOOK_ENV, '')}",
            "Content-Type": "application/json",
        }

    async def drive(self, seconds: float, window: int) -> dict[str, Any]:
        """Send from every worker for `seconds`; the tally, `window` seconds per latency row."""
        t0 = time.perf_counter()
        latencies: list[array.array[float]] = []  # of the answers that ended in second i
        ok_per_second: list[int] = []
        statuses: Counter[int] = Counter()
        tally = {"sent": 0, "ok": 0, "bad": 0, "errors": 0}
        versions: array.array[int] = array.array("q")
        first_bad = ""

        async def send(fingerprint: str, starts: dt.datetime, firing: bool) -> None:
            nonlocal first_bad
            body = payload(self.base, fingerprint, starts, firing)
            tally["sent"] += 1
            started = time.perf_counter()
            try:
                async with self.session.post(self.url, data=body, headers=self.headers) as resp:
                    raw = await resp.read()
                    status = resp.status
            except Exception as exc:
                tally["errors"] += 1
                first_bad = first_bad or f"{type(exc).__name__}: {exc}"
                return
            ended = time.perf_counter()
            second = int(ended - t0)
            while len(latencies) <= second:
                latencies.append(array.array("d"))
                ok_per_second.append(0)
            latencies[second].append(ended - started)
            statuses[status] += 1
            problem, version = self.check(status, raw, firing)
            if problem:
                tally["bad"] += 1
                first_bad = first_bad or f"{fingerprint}: {problem}"
                return
            tally["ok"] += 1
            ok_per_second[second] += 1
            if self.mode == "agent":
                versions.append(version)
                stamp = starts.isoformat(timespec="milliseconds").replace("+00:00", "Z")
                self.last[fingerprint] = ("firing" if firing else "resolved", stamp, version)

        async def worker(w: int) -> None:
            while time.perf_counter() - t0 < seconds:
                starts = self.start + dt.timedelta(seconds=self.cycles[w])
                self.cycles[w] += 1
                for firing in (True, False):
                    for fingerprint in self.owned[w]:
                        await send(fingerprint, starts, firing)

        await asyncio.gather(*(worker(w) for w in range(len(self.owned))))
        wall = time.perf_counter() - t0
        windows = []
        for first in range(0, int(seconds) - window + 1, window):
            values = [v for lat in latencies[first : first + window] for v in lat]
            windows.append(
                {
                    "from_second": first,
                    "ok": sum(ok_per_second[first : first + window]),
                    "p50": quantile(values, 0.5),
                    "p99": quantile(values, 0.99),
                    "max": max(values, default=0.0),
                }
            )
        ordered = sorted(versions)
        return {
            **tally,
            "wall_seconds": wall,
            "ok_per_second": ok_per_second[: int(seconds)],
            "windows": windows,
            "statuses": {str(code): n for code, n in sorted(statuses.items())},
            "first_bad": first_bad,
            "versions": {
                "count": len(ordered),
                "distinct": len(set(ordered)),
                "first": ordered[0] if ordered else None,
                "last": ordered[-1] if ordered else None,
            },
            "last_acknowledged": {fp: list(change) for fp, change in sorted(self.last.items())},
        }

    def check(self, status: int, raw: bytes, firing: bool) -> tuple[str, int]:
        """Why an answer is wrong ("" when it is right), and the version it reports."""
        if status != 200:
            return f"status {status}: {raw[:300]!r}", 0
        try:
            body = json.loads(raw)
        except ValueError:
            return f"not JSON: {raw[:300]!r}", 0
        if self.mode == "bare":
            return ("" if body == {} else f"bare answered {raw[:300]!r}"), 0
        want = {"fired": 1} if firing else {"resolved": 1}
        if body.get("changes") != want:
            return f"changes {body.get('changes')} for a {'firing' if firing else 'resolve'}", 0
        return "", int(body.get("version", -1))


async def run_soak(
    url: str,
    mode: str,
    seconds: float,
    warmup: float,
    window: int,
    concurrency: int,
    alerts: int,
    epoch: float,
) -> None:
    """Warm up, print `ready`, wait for `go`, drive for `seconds` and print the tally as JSON."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        soak = Soak(session, url, mode, concurrency, alerts, epoch)
        warm = await soak.drive(warmup, window)
        if warm["bad"] or warm["errors"]:
            print(json.dumps({"warmup_failed": warm}), flush=True)
            return
        print("ready", flush=True)
        line = await asyncio.to_thread(sys.stdin.readline)
        if line.strip() != "go":
            return
        print(json.dumps(await soak.drive(seconds, window)), flush=True)


async def run_load(
    url: str, mode: str, count: int, warmup: int, concurrency: int, max_seconds: float, epoch: float
) -> None:
    """Warm up, print `ready`, wait for `go`, drive the load and print the tally as JSON."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        load = Load(session, url, mode, concurrency, epoch)
        warm = await load.drive(warmup, time.monotonic() + max_seconds)
        if warm["bad"] or warm["errors"]:
            print(json.dumps({"warmup_failed": warm}), flush=True)
            return
        print("ready", flush=True)
        line = await asyncio.to_thread(sys.stdin.readline)
        if line.strip() != "go":
            return
        tally = await load.drive(count, time.monotonic() + max_seconds)
        print(json.dumps(tally), flush=True)


def main(argv: list[str]) -> None:
    """Dispatch on the first argument: bare, load or soak."""
    match argv:
        case ["bare"]:
            asyncio.run(serve_bare())
        case ["load", url, mode, count, warmup, concurrency, max_seconds, epoch]:
            asyncio.run(
                run_load(
                    url,
                    mode,
                    int(count),
                    int(warmup),
                    int(concurrency),
                    float(max_seconds),
                    float(epoch),
                )
            )
        case ["soak", url, mode, seconds, warmup, window, concurrency, alerts, epoch]:
            asyncio.run(
                run_soak(
                    url,
                    mode,
                    float(seconds),
                    float(warmup),
                    int(window),
                    int(concurrency),
                    int(alerts),
                    float(epoch),
                )
            )
        case _:
            sys.exit(
                f"usage: {sys.argv[0]} bare"
                " | load URL agent|bare N WARMUP CONCURRENCY MAX_SECONDS EPOCH"
                " | soak URL agent|bare SECONDS WARMUP_SECONDS WINDOW CONCURRENCY ALERTS EPOCH"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
