"""One server under the soak load of `soak.py`: the load generator started and driven, the
server's process and the machine sampled every second, `/metrics` and `/health` read meanwhile,
and the figures per window."""

from __future__ import annotations

import dataclasses
import json
import statistics
import subprocess
import sys
import time
import urllib.error
from collections import Counter
from pathlib import Path
from typing import Any

from _agent import SERVICES
from _common import (
    CLK_TCK,
    START_SECONDS,
    BenchError,
    Services,
    http_get,
    proc_cpu_seconds,
    read_line,
)

STATUS_FIELDS = {
    "VmRSS": "rss_kb",
    "RssAnon": "anon_kb",
    "RssFile": "file_kb",
    "Threads": "threads",
}


@dataclasses.dataclass
class Sample:
    """One reading of the server process, `second` seconds into the measured load."""

    second: float
    rss_kb: int
    anon_kb: int
    file_kb: int
    threads: int
    cpu_seconds: float
    load_cpu_seconds: float = 0.0  # of the load generator
    box_busy_seconds: float = 0.0  # of every process on the machine, all CPUs


@dataclasses.dataclass
class Polls:
    """The `/metrics` and `/health` reads made during the load."""

    statuses: Counter[str] = dataclasses.field(default_factory=Counter)
    metrics_ms: list[tuple[float, float]] = dataclasses.field(default_factory=list)
    first_bad: str = ""

    def get(self, url: str, second: float) -> None:
        """GET `url`; count its status, and keep how long `/metrics` took."""
        started = time.perf_counter()
        try:
            http_get(url)
            status = "200"
        except urllib.error.HTTPError as exc:
            status = str(exc.code)
            self.first_bad = self.first_bad or f"{url}: {exc.code}"
        except OSError as exc:
            status = "error"
            self.first_bad = self.first_bad or f"{url}: {exc}"
        self.statuses[status] += 1
        if url.endswith("/metrics"):
            self.metrics_ms.append((second, 1000 * (time.perf_counter() - started)))


def read_status(pid: int, load_pid: int, second: float) -> Sample:
    """The memory and thread figures of `/proc/PID/status`, with the CPU time so far of the
    server, of the load generator and of the whole machine."""
    values = dict.fromkeys(STATUS_FIELDS.values(), 0)
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in STATUS_FIELDS:
            values[STATUS_FIELDS[key]] = int(rest.split()[0])
    return Sample(
        second,
        cpu_seconds=proc_cpu_seconds(pid),
        load_cpu_seconds=proc_cpu_seconds(load_pid),
        box_busy_seconds=box_busy_seconds(),
        **values,
    )


def box_busy_seconds() -> float:
    """CPU seconds the machine has spent busy (not idle, not waiting for I/O), all CPUs."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already inside user)
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


@dataclasses.dataclass
class SideRun:
    """One server under the soak load: the load's tally, the samples and the polls."""

    side: str
    seconds: int
    window: int
    tally: dict[str, Any]
    samples: list[Sample]
    polls: Polls | None

    def windows(self) -> list[dict[str, Any]]:
        """Per window: throughput, latency, memory and CPU per answer."""
        rows = []
        for load in self.tally["windows"]:
            first = load["from_second"]
            inside = [s for s in self.samples if first <= s.second < first + self.window]
            start, end = inside[0], inside[-1]
            cpu = end.cpu_seconds - start.cpu_seconds
            answers = sum(self.tally["ok_per_second"][int(start.second) : int(end.second)])
            elapsed = end.second - start.second
            others = end.box_busy_seconds - start.box_busy_seconds
            others -= cpu + end.load_cpu_seconds - start.load_cpu_seconds
            row = {
                "from_second": first,
                "per_second": load["ok"] / self.window,
                "p50_ms": 1000 * load["p50"],
                "p99_ms": 1000 * load["p99"],
                "max_ms": 1000 * load["max"],
                "rss_mb": statistics.fmean(s.rss_kb for s in inside) / 1024,
                "anon_mb": statistics.fmean(s.anon_kb for s in inside) / 1024,
                "file_mb": statistics.fmean(s.file_kb for s in inside) / 1024,
                "threads": max(s.threads for s in inside),
                "cpu_ms_per_answer": 1000 * cpu / answers if answers else 0.0,
                "server_cores": cpu / elapsed if elapsed else 0.0,
                # What everything else on the machine used: the share of the CPUs the server
                # and its load generator did not have.
                "other_cores": max(0.0, others) / elapsed if elapsed else 0.0,
            }
            if self.polls is not None:
                took = [ms for t, ms in self.polls.metrics_ms if first <= t < first + self.window]
                row["metrics_ms"] = statistics.median(took) if took else 0.0
            rows.append(row)
        return rows

    def summary(self) -> dict[str, Any]:
        """First and last window, their ratios, and the counts behind them."""
        rows = self.windows()
        first, last = rows[0], rows[-1]
        statuses = self.tally["statuses"]
        non_2xx = sum(n for code, n in statuses.items() if not code.startswith("2"))
        result = {
            "rss_growth_ratio": last["rss_mb"] / first["rss_mb"],
            "p99_growth_ratio": last["p99_ms"] / first["p99_ms"],
            "throughput_ratio": last["per_second"] / first["per_second"],
            "cpu_growth_ratio": last["cpu_ms_per_answer"] / first["cpu_ms_per_answer"],
            "rss_first_mb": first["rss_mb"],
            "rss_last_mb": last["rss_mb"],
            "p99_first_ms": first["p99_ms"],
            "p99_last_ms": last["p99_ms"],
            "throughput_first_per_s": first["per_second"],
            "throughput_last_per_s": last["per_second"],
            "throughput_mean_per_s": sum(self.tally["ok_per_second"]) / self.seconds,
            "other_cores_first": first["other_cores"],
            "other_cores_last": last["other_cores"],
            "seconds": self.seconds,
            "requests": self.tally["sent"],
            "answered_2xx": self.tally["ok"],
            "non_2xx": non_2xx,
            "bad_answers": self.tally["bad"],
            "errors": self.tally["errors"],
            "statuses": statuses,
            "windows": rows,
        }
        if self.polls is not None:
            result["polls"] = dict(self.polls.statuses)
            result["polls_non_2xx"] = sum(
                n for code, n in self.polls.statuses.items() if not code.startswith("2")
            )
            result["polls_first_bad"] = self.polls.first_bad
        return result


def measure(
    services: Services,
    env: dict[str, str],
    side: str,
    server: tuple[subprocess.Popen[bytes], int],
    seconds: int,
    epoch: float,
    args: Any,
) -> SideRun:
    """Warm up, then drive `side` (`agent` or `bare`) for `seconds`, sampling the server process
    and, for the agent, reading `/metrics` and `/health` meanwhile.

    `args` carries the load's settings (--warmup-seconds, --window-seconds, --concurrency,
    --alerts, --poll-seconds); episodes start at `epoch`.
    """
    proc, port = server
    base = f"http://127.0.0.1:{port}"
    argv = [sys.executable, str(SERVICES), "soak", base + "/webhooks/alertmanager", side]
    argv += [str(seconds), str(args.warmup_seconds), str(args.window_seconds)]
    argv += [str(args.concurrency), str(args.alerts), str(epoch)]
    load = services.start("load", argv, env)
    try:
        first = read_line(load, args.warmup_seconds + START_SECONDS)
        if first != "ready":
            raise BenchError(f"{side} warm-up: {first[:2000]} {services.log_tail('load')}")
        assert load.stdin is not None
        load.stdin.write(b"go\n")
        polls = Polls() if side == "agent" else None
        reads = None if polls is None else (polls, base, args.poll_seconds)
        samples = watch(proc, load, seconds, reads)
        tally = json.loads(read_line(load, START_SECONDS))
    finally:
        services.procs.remove(("load", load))
        services.stop(load)
    return SideRun(side, seconds, args.window_seconds, tally, samples, polls)


def watch(
    proc: subprocess.Popen[bytes],
    load: subprocess.Popen[bytes],
    seconds: int,
    reads: tuple[Polls, str, float] | None,
) -> list[Sample]:
    """Sample `proc` every second for `seconds`; with `reads` (polls, base URL, period), read
    `/metrics` and `/health` every period too."""
    samples: list[Sample] = []
    started = time.monotonic()
    next_sample = next_poll = started
    while (now := time.monotonic()) < started + seconds:
        if proc.poll() is not None:
            raise BenchError(f"pid {proc.pid} exited with {proc.returncode} under the load")
        if now >= next_sample:
            samples.append(read_status(proc.pid, load.pid, now - started))
            next_sample += 1
        if reads is not None and now >= next_poll:
            polls, base, period = reads
            polls.get(base + "/metrics", now - started)
            polls.get(base + "/health", now - started)
            next_poll += period
        wake = min(next_sample, next_poll if reads is not None else next_sample)
        time.sleep(max(0.0, min(wake, started + seconds) - time.monotonic()))
    return samples
