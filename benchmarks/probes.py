"""Vigil's HTTP check against Debian's blackbox_exporter, and `/metrics` against prometheus_client.

Goals (from the issue):

* CPU per probe: Vigil's HTTP check with full telemetry on costs <= 0.5x blackbox_exporter's
  `/probe?module=http_2xx` against the same local target at the same concurrency.
* `/metrics` render with 1,000 configured checks costs <= 1.5x `prometheus_client.generate_latest`
  over a registry with the same families, label sets and number of series.

Method (the research's: /work/shared/research/probes.md, section 7 (a), (b) and (e)): the box
is a shared, noisy 2-core machine, so the figure that counts is **CPU time**, not wall-clock.

* One HTTP/1.1 target (`_services.py target`, its own process) serves both sides.
* blackbox_exporter is started with an `http_2xx` module; a load generator in a separate process
  sends N `GET /probe` at concurrency C over keep-alive after a warm-up. Blackbox CPU per probe is
  the change of utime+stime of the blackbox PID (`/proc/PID/stat`) across the measured load,
  divided by the probes answered 200 with `probe_success 1`.
* Vigil runs in this process through the agent's own objects (config, Pipeline, Scoreboard,
  CheckRecorder, ProbeContext, Runner), with OTLP/HTTP push of spans and metrics to a throwaway
  sink (`_services.py sink`, its own process). C workers loop `runner.run(check)` until N probes
  are done. CPU per probe is the change of `time.process_time()` (every thread of this process,
  the exporter threads included) divided by N; the span queue is flushed right before and right
  after the measured window, so exactly the measured probes' spans are exported inside it.
  Measured twice: default keep-alive (the headline ratio) and `keepalive: false`, a new
  connection per probe like blackbox (reported as `cpu_per_probe_ratio_new_connection`).
* Sides are interleaved per repeat (blackbox, vigil, vigil new-connection, blackbox, ...) and the
  medians are reported. The target's request count and the sink's span count confirm that every
  probe reached the target and every span reached the sink.
* Render: `--checks` tcp checks get synthetic results (no I/O), then `Pipeline.render()` and
  `generate_latest()` of the anchor registry are timed alternately in CPU time; medians are
  reported. The anchor is rebuilt from Vigil's own exposition, so the series match one to one.

Everything binds 127.0.0.1 on free ports; loops are bounded in count and time; every process
started here is stopped by PID on the way out, errors included. `--json` makes the last line of
the output one JSON object. Exit codes: 0 done (goals met or not), 1 a probe failed or a check
did not hold, 2 blackbox_exporter is not installed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import dataclasses
import gc
import io
import json
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import prometheus_client
import structlog
from _common import (
    START_SECONDS,
    BenchError,
    Services,
    free_port,
    http_get,
    print_ratios,
    proc_cpu_seconds,
    quantile,
    read_line,
    say,
    stop_on_signals,
    wait_healthy,
)
from prometheus_client.parser import text_string_to_metric_families

from agent import __version__
from agent.config import parse_config
from agent.probes import PROBES
from agent.probes.board import Scoreboard
from agent.probes.context import ProbeContext
from agent.probes.recorder import CheckRecorder
from agent.probes.result import CheckResult, Status
from agent.probes.runner import Runner
from agent.server.loop import loop_factory
from exporters.otel import Pipeline

BLACKBOX = "prometheus-blackbox-exporter"
SERVICES = Path(__file__).resolve().parent / "_services.py"
GOALS = {"cpu_per_probe_ratio": 0.5, "metrics_render_ratio": 1.5}
BLACKBOX_YML = """\
modules:
  http_2xx:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
"""
SERIES_TOLERANCE = 0.03  # the two renders must hold the same series count within 3 %
SPANS_PER_PROBE = 2  # the runner's `check http` span and the probe's CLIENT `GET` span


@dataclasses.dataclass
class Measurement:
    """One measured load: `probes` good probes cost `cpu_seconds` of the process under test."""

    side: str
    probes: int
    cpu_seconds: float
    wall_seconds: float
    p50_seconds: float
    p99_seconds: float
    target_hits: int
    spans: int | None = None
    loop_cpu_seconds: float | None = None  # vigil: the event-loop thread, final flush excluded
    machine_busy_pct: float | None = None  # the whole box during the load, all processes

    @property
    def cpu_ms_per_probe(self) -> float:
        """CPU milliseconds per probe."""
        return 1000 * self.cpu_seconds / self.probes

    @property
    def probes_per_second(self) -> float:
        """Wall-clock throughput: informational only on a shared box."""
        return self.probes / self.wall_seconds if self.wall_seconds else 0.0


# --- processes ------------------------------------------------------------------------------


def start_helper(services: Services, kind: str) -> int:
    """Start `_services.py <kind>` (target or sink) and return the port it bound."""
    proc = services.start(kind, [sys.executable, str(SERVICES), kind])
    try:
        line = read_line(proc, START_SECONDS)
    except BenchError as exc:
        raise BenchError(f"{kind} did not start: {exc}\n{services.log_tail(kind)}") from None
    return int(line.removeprefix("port "))


def stats(port: int) -> dict[str, int]:
    """The counters of a helper server (`GET /__stats`)."""
    return dict(json.loads(http_get(f"http://127.0.0.1:{port}/__stats")))


def start_blackbox(services: Services, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start blackbox_exporter on a free port and wait until `/-/healthy` answers."""
    config = workdir / "blackbox.yml"
    config.write_text(BLACKBOX_YML)
    for _ in range(3):  # the port may be taken between probing it and the exporter binding it
        port = free_port()
        argv = [
            BLACKBOX,
            f"--config.file={config}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ]
        proc = services.start("blackbox", argv)
        if wait_healthy(proc, f"http://127.0.0.1:{port}/-/healthy"):
            return proc, port
        services.stop(proc)
    raise BenchError(f"{BLACKBOX} did not start:\n{services.log_tail('blackbox')}")


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot, from /proc/stat."""
    ticks = [int(t) for t in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)  # idle and iowait are not busy


def busy_pct(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Percent of the machine's CPU that was busy between two `machine_ticks()`."""
    total = after[1] - before[1]
    return round(100 * (after[0] - before[0]) / total, 1) if total else 0.0


# --- blackbox side --------------------------------------------------------------------------


def measure_blackbox(
    services: Services, bb: tuple[int, int], target: int, args: Any
) -> Measurement:
    """Drive `--probes` blackbox probes at `--concurrency` from a separate load generator."""
    pid, port = bb
    url = f"http://127.0.0.1:{port}/probe?target=http://127.0.0.1:{target}/&module=http_2xx"
    argv = [sys.executable, str(SERVICES), "load", url, str(args.probes), str(args.warmup)]
    argv += [str(args.concurrency), str(args.max_seconds)]
    load = services.start("load", argv)
    try:
        if read_line(load, args.max_seconds + START_SECONDS) != "ready":
            raise BenchError(f"load generator: {services.log_tail('load')}")
        hits, cpu, box = stats(target)["requests"], proc_cpu_seconds(pid), machine_ticks()
        assert load.stdin is not None
        load.stdin.write(b"go\n")
        tally = json.loads(read_line(load, args.max_seconds + START_SECONDS))
        cpu = proc_cpu_seconds(pid) - cpu
        busy = busy_pct(box, machine_ticks())
        hits = stats(target)["requests"] - hits
    finally:
        services.procs.remove(("load", load))
        services.stop(load)
    if tally["bad"] or tally["errors"] or not tally["ok"]:
        raise BenchError(f"blackbox probes failed: {tally}")
    wall, p50, p99 = tally["wall_seconds"], tally["p50"], tally["p99"]
    return Measurement("blackbox", tally["ok"], cpu, wall, p50, p99, hits, machine_busy_pct=busy)


# --- vigil side -----------------------------------------------------------------------------


def vigil_yaml(target: int, sink: int) -> str:
    """One HTTP check per connection mode against the target; OTLP/HTTP push to the sink."""
    url = f"http://127.0.0.1:{target}/"
    return f"""\
telemetry:
  otlp:
    endpoint: http://127.0.0.1:{sink}
    protocol: http/protobuf
    export_interval_seconds: 5
checks:
  - {{name: target, kind: http, url: "{url}", interval_seconds: 60, timeout_seconds: 5}}
  - {{name: target-new-conn, kind: http, url: "{url}", interval_seconds: 60, timeout_seconds: 5,
      keepalive: false}}
"""


class VigilSide:
    """The agent's own probe pipeline, built the way `agent.server.agent.Agent` builds it."""

    def __init__(self, target: int, sink: int, concurrency: int) -> None:
        self.target, self.sink = target, sink
        self.config = parse_config(vigil_yaml(target, sink), "bench")
        self.pipeline = Pipeline(self.config.telemetry)
        self.board = Scoreboard(self.config.checks)
        meter = self.pipeline.meter_provider.get_meter("vigil", __version__)
        self.recorder = CheckRecorder(meter, self.board)
        self.ctx = ProbeContext(self.pipeline.tracer_provider.get_tracer("vigil", __version__))
        self.runner = Runner(self.board, PROBES, self.ctx, self.recorder, concurrency)
        self.checks = {c.name: c for c in self.config.checks}

    async def drive(self, name: str, count: int, workers: int, max_seconds: float) -> dict:
        """Run check `name` `count` times from `workers` loops, stopping at `max_seconds`."""
        check, deadline = self.checks[name], time.monotonic() + max_seconds
        outcomes: Counter[str] = Counter()
        durations: list[float] = []
        issued, first_bad = 0, ""

        async def worker() -> None:
            nonlocal issued, first_bad
            while issued < count and time.monotonic() < deadline:
                issued += 1
                result = await self.runner.run(check)
                outcomes[result.status.value] += 1
                durations.append(result.duration_seconds)
                if result.status is not Status.HEALTHY and not first_bad:
                    first_bad = f"{result.status.value} {result.reason}: {result.message}"

        wall = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        wall = time.perf_counter() - wall
        return {"outcomes": outcomes, "durations": durations, "wall": wall, "first_bad": first_bad}

    async def measure(self, name: str, args: Any) -> Measurement:
        """Warm up, flush, then measure `--probes` runs of check `name` in CPU time."""
        await self.drive(name, args.warmup, args.concurrency, args.max_seconds)
        self.pipeline.flush(10)
        before = await asyncio.to_thread(lambda: (stats(self.target), stats(self.sink)))
        cpu, loop_cpu, box = time.process_time(), time.thread_time(), machine_ticks()
        run = await self.drive(name, args.probes, args.concurrency, args.max_seconds)
        loop_cpu = time.thread_time() - loop_cpu
        self.pipeline.flush(10)  # the measured probes' spans are exported inside the window
        cpu = time.process_time() - cpu
        busy = busy_pct(box, machine_ticks())
        after = await asyncio.to_thread(lambda: (stats(self.target), stats(self.sink)))
        healthy = run["outcomes"][Status.HEALTHY.value]
        if healthy != sum(run["outcomes"].values()) or not healthy:
            raise BenchError(f"vigil {name}: {dict(run['outcomes'])}, first: {run['first_bad']}")
        return Measurement(
            "vigil" if name == "target" else "vigil-new-conn",
            healthy,
            cpu,
            run["wall"],
            quantile(run["durations"], 0.5),
            quantile(run["durations"], 0.99),
            after[0]["requests"] - before[0]["requests"],
            after[1]["spans"] - before[1]["spans"],
            loop_cpu,
            busy,
        )

    async def close(self) -> None:
        """Close the probe clients and flush and stop the exporters."""
        await self.ctx.close()
        await asyncio.to_thread(self.pipeline.shutdown, 5)


def check_measurement(m: Measurement, wanted: int) -> list[str]:
    """Warnings when a measurement probed fewer times, or reached the target less, than claimed."""
    notes = []
    if m.probes < wanted:
        notes.append(f"{m.side}: only {m.probes}/{wanted} probes within --max-seconds")
    if abs(m.target_hits - m.probes) > max(2, m.probes // 100):
        notes.append(f"{m.side}: target saw {m.target_hits} requests for {m.probes} probes")
    if m.spans is not None and m.spans >= 0 and m.spans != SPANS_PER_PROBE * m.probes:
        notes.append(f"{m.side}: sink got {m.spans} spans for {m.probes} probes (dropped?)")
    return notes


def profile_vigil(aio: asyncio.Runner, vigil: VigilSide, args: Any) -> str:
    """cProfile of one keep-alive measurement (main thread only), top functions by own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    aio.run(vigil.measure("target", args))
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(30)
    out.write("\n--- by cumulative time ---\n")
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(40)
    return out.getvalue()


# --- /metrics render ------------------------------------------------------------------------


def render_pipeline(checks: int) -> Pipeline:
    """A Pipeline (no OTLP) whose recorder holds synthetic results of `checks` tcp checks."""
    lines = ["telemetry:", "  otlp: {enabled: false}", "checks:"]
    lines += [
        f"  - {{name: check-{i:04d}, kind: tcp, host: 127.0.0.1, port: 9}}" for i in range(checks)
    ]
    config = parse_config("\n".join(lines), "bench-render")
    pipeline = Pipeline(config.telemetry)
    board = Scoreboard(config.checks)
    recorder = CheckRecorder(pipeline.meter_provider.get_meter("vigil", __version__), board)
    for rnd in range(5):  # varied durations, so each histogram fills several buckets
        for i, check in enumerate(config.checks):
            duration = 0.0004 * (3**rnd) * (1 + i % 7)
            result = CheckResult(
                Status.HEALTHY, None, "", {"connect_seconds": duration / 2}, duration, time.time()
            )
            board.record(check.name, result)
            recorder.started()
            recorder.finished(check.name, result)
    return pipeline


def anchor_registry(exposition: str) -> prometheus_client.CollectorRegistry:
    """A fresh prometheus_client registry with the families, label sets and values parsed."""
    registry = prometheus_client.CollectorRegistry()
    for family in text_string_to_metric_families(exposition):
        if family.type == "histogram":
            _anchor_histogram(registry, family)
        elif family.type == "counter":
            _anchor_simple(registry, family, prometheus_client.Counter, "inc")
        else:
            _anchor_simple(registry, family, prometheus_client.Gauge, "set")
    return registry


def _label_names(family: Any, skip: tuple[str, ...] = ()) -> list[str]:
    """The label names of `family`; every series of a family must carry the same ones."""
    names = {tuple(k for k in s.labels if k not in skip) for s in family.samples}
    if len(names) > 1:
        raise BenchError(f"{family.name}: series with different label names {names}")
    return list(next(iter(names), ()))


def _anchor_simple(registry: Any, family: Any, kind: type, method: str) -> None:
    """A Gauge or Counter with the family's series, set to (or increased by) their values."""
    labels = _label_names(family)
    metric = kind(family.name, family.documentation or family.name, labels, registry=registry)
    for sample in family.samples:
        if sample.name.endswith("_created"):
            continue
        child = metric.labels(**sample.labels) if labels else metric
        getattr(child, method)(sample.value)


def _anchor_histogram(registry: Any, family: Any) -> None:
    """A Histogram with the same buckets, each series observed so its bucket counts match."""
    labels = _label_names(family, skip=("le",))
    buckets = sorted({float(s.labels["le"]) for s in family.samples if "le" in s.labels})
    metric = prometheus_client.Histogram(
        family.name, family.documentation or family.name, labels, registry=registry, buckets=buckets
    )
    series: dict[tuple[str, ...], list[tuple[float, float]]] = {}
    for s in family.samples:
        if s.name.endswith("_bucket"):
            key = tuple(s.labels[k] for k in labels)
            series.setdefault(key, []).append((float(s.labels["le"]), s.value))
    finite = [b for b in buckets if b != float("inf")]
    for key, cumulative in series.items():
        child = metric.labels(*key) if labels else metric
        seen = 0.0
        for bound, total in sorted(cumulative):
            value = bound if bound != float("inf") else (finite[-1] if finite else 0.0) + 1
            for _ in range(int(total - seen)):
                child.observe(value)
            seen = total


def sample_lines(text: str) -> tuple[int, int]:
    """(series, families) of a text exposition: sample lines and `# TYPE` lines."""
    lines = text.splitlines()
    series = sum(1 for line in lines if line and not line.startswith("#"))
    return series, sum(1 for line in lines if line.startswith("# TYPE "))


def cpu_ms(fn: Callable[[], object]) -> float:
    """CPU milliseconds of one call of `fn`, after a full garbage collection."""
    gc.collect()
    started = time.process_time()
    fn()
    return 1000 * (time.process_time() - started)


@contextlib.contextmanager
def created_series_off() -> Iterator[None]:
    """prometheus_client without `_created` series: the OTel exposition has none either."""
    prometheus_client.disable_created_metrics()
    try:
        yield
    finally:
        prometheus_client.enable_created_metrics()


def measure_render(checks: int, renders: int) -> dict[str, Any]:
    """Median CPU ms of Vigil's render and of generate_latest over the equivalent registry."""
    pipeline = render_pipeline(checks)
    try:
        exposition = pipeline.render().decode()
        with created_series_off():
            anchor = anchor_registry(exposition)
            anchor_text = prometheus_client.generate_latest(anchor).decode()
            vigil_ms, anchor_ms = [], []
            for _ in range(renders):  # alternate, so load on the box hits both alike
                vigil_ms.append(cpu_ms(pipeline.render))
                anchor_ms.append(cpu_ms(lambda: prometheus_client.generate_latest(anchor)))
    finally:
        pipeline.shutdown(5)
    (v_series, v_families), (a_series, a_families) = map(sample_lines, (exposition, anchor_text))
    if abs(v_series - a_series) > SERIES_TOLERANCE * v_series or v_families != a_families:
        raise BenchError(
            f"series differ: vigil {v_series}/{v_families}, anchor {a_series}/{a_families}"
        )
    return {
        "checks": checks,
        "renders": renders,
        "vigil_ms": statistics.median(vigil_ms),
        "vigil_ms_all": vigil_ms,
        "prometheus_client_ms": statistics.median(anchor_ms),
        "prometheus_client_ms_all": anchor_ms,
        "series_vigil": v_series,
        "series_prometheus_client": a_series,
        "families": v_families,
        "bytes_vigil": len(exposition),
        "bytes_prometheus_client": len(anchor_text),
    }


# --- run and report -------------------------------------------------------------------------


def run_probes(services: Services, workdir: Path, args: Any) -> dict[str, list[Measurement]]:
    """Start the target, sink and blackbox; measure the sides interleaved, `--repeat` times."""
    target = start_helper(services, "target")
    sink = start_helper(services, "sink")
    bb_proc, bb_port = start_blackbox(services, workdir)
    results: dict[str, list[Measurement]] = {"blackbox": [], "vigil": [], "vigil-new-conn": []}
    with asyncio.Runner(loop_factory=loop_factory()) as aio:
        vigil = aio.run(_make_vigil(target, sink, args.concurrency))
        try:
            for rep in range(args.repeat):
                say(args, f"repeat {rep + 1}/{args.repeat}: blackbox")
                bb = measure_blackbox(services, (bb_proc.pid, bb_port), target, args)
                results["blackbox"].append(bb)
                for name in ("target", "target-new-conn"):
                    say(args, f"repeat {rep + 1}/{args.repeat}: vigil {name}")
                    m = aio.run(vigil.measure(name, args))
                    results[m.side].append(m)
            if args.profile:
                print(profile_vigil(aio, vigil, args), file=sys.stderr)
        finally:
            aio.run(vigil.close())
    return results


async def _make_vigil(target: int, sink: int, concurrency: int) -> VigilSide:
    """VigilSide built inside the running loop its sessions will belong to."""
    return VigilSide(target, sink, concurrency)


def summarize(results: dict[str, list[Measurement]], render: dict[str, Any], args: Any) -> dict:
    """The JSON summary: medians, ratios, absolute figures and the per-repeat values."""
    med = {side: statistics.median(m.cpu_ms_per_probe for m in ms) for side, ms in results.items()}
    bb = med["blackbox"]
    summary: dict[str, Any] = {
        "cpu_per_probe_ratio": med["vigil"] / bb,
        "cpu_per_probe_ratio_new_connection": med["vigil-new-conn"] / bb,
        "metrics_render_ratio": render["vigil_ms"] / render["prometheus_client_ms"],
        "goals": GOALS,
        "blackbox_cpu_ms_per_probe": bb,
        "vigil_cpu_ms_per_probe": med["vigil"],
        "vigil_new_connection_cpu_ms_per_probe": med["vigil-new-conn"],
        "concurrency": args.concurrency,
        "probes_per_run": args.probes,
        "warmup_per_run": args.warmup,
        "repeat": args.repeat,
    }
    for side, ms in results.items():
        key = side.replace("-", "_")
        summary[f"{key}_probes"] = sum(m.probes for m in ms)
        summary[f"{key}_runs"] = [_run_json(m) for m in ms]
    summary["render"] = render
    summary["vigil_render_ms"] = render["vigil_ms"]
    summary["prometheus_client_render_ms"] = render["prometheus_client_ms"]
    summary["series"] = render["series_vigil"]
    summary["goals_met"] = {
        "cpu_per_probe_ratio": summary["cpu_per_probe_ratio"] <= GOALS["cpu_per_probe_ratio"],
        "metrics_render_ratio": summary["metrics_render_ratio"] <= GOALS["metrics_render_ratio"],
    }
    summary["machine"] = {
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "python": platform.python_version(),
        "blackbox": blackbox_version(),
    }
    return summary


def _run_json(m: Measurement) -> dict[str, Any]:
    """One measured run as JSON."""
    return {
        "probes": m.probes,
        "cpu_ms_per_probe": round(m.cpu_ms_per_probe, 4),
        "cpu_seconds": round(m.cpu_seconds, 4),
        "probes_per_second": round(m.probes_per_second, 1),
        "p50_ms": round(1000 * m.p50_seconds, 3),
        "p99_ms": round(1000 * m.p99_seconds, 3),
        "target_hits": m.target_hits,
        "spans": m.spans,
        "machine_busy_pct": m.machine_busy_pct,
        "loop_thread_cpu_share": None
        if m.loop_cpu_seconds is None
        else round(m.loop_cpu_seconds / m.cpu_seconds, 3),
    }


def blackbox_version() -> str:
    """`prometheus-blackbox-exporter --version`, first line."""
    done = subprocess.run([BLACKBOX, "--version"], capture_output=True, text=True, timeout=10)
    return (done.stdout or done.stderr).splitlines()[0] if (done.stdout or done.stderr) else "?"


def print_table(results: dict[str, list[Measurement]], summary: dict[str, Any]) -> None:
    """The readable report: per-side medians with (min-max), then the render and the ratios."""
    print(f"\nHTTP probe, concurrency {summary['concurrency']}, median of {summary['repeat']} runs")
    head = f"{'side':<16}{'CPU ms/probe':>22}{'probes':>8}{'probes/s':>9}{'p50 ms':>8}"
    head += f"{'p99 ms':>8}{'box busy':>9}"
    print(head + "\n" + "-" * len(head))
    for side, ms in results.items():
        cpu = [m.cpu_ms_per_probe for m in ms]
        spread = f"{statistics.median(cpu):.3f} ({min(cpu):.3f}-{max(cpu):.3f})"
        rate = statistics.median(m.probes_per_second for m in ms)
        p50 = statistics.median(1000 * m.p50_seconds for m in ms)
        p99 = statistics.median(1000 * m.p99_seconds for m in ms)
        count = sum(m.probes for m in ms)
        busy = statistics.median(m.machine_busy_pct or 0.0 for m in ms)
        row = f"{side:<16}{spread:>22}{count:>8}{rate:>9.0f}{p50:>8.2f}{p99:>8.2f}{busy:>8.0f}%"
        print(row)
    r = summary["render"]
    print(f"\n/metrics render, {r['checks']} checks, median of {r['renders']} (CPU ms)")
    print(f"  vigil Pipeline.render()          {r['vigil_ms']:9.1f}  {r['series_vigil']} series")
    print(
        f"  prometheus_client generate_latest {r['prometheus_client_ms']:8.1f}  "
        f"{r['series_prometheus_client']} series, {r['families']} families"
    )
    print("\nratios (goal)")
    rows = [
        ("cpu_per_probe_ratio", f"<= {GOALS['cpu_per_probe_ratio']}"),
        ("cpu_per_probe_ratio_new_connection", "info"),
        ("metrics_render_ratio", f"<= {GOALS['metrics_render_ratio']}"),
    ]
    print_ratios(summary, rows, 36, "7.3f")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=8, help="probes in flight (8)")
    parser.add_argument("--probes", type=int, default=4000, help="measured probes per run (4000)")
    parser.add_argument("--warmup", type=int, default=300, help="unmeasured probes first (300)")
    parser.add_argument("--checks", type=int, default=1000, help="checks for the render (1000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per side; medians (3)")
    parser.add_argument("--renders", type=int, default=7, help="timed renders per side (7)")
    parser.add_argument("--max-seconds", type=float, default=120, help="cap per load (120)")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    parser.add_argument("--profile", action="store_true", help="cProfile a vigil run to stderr")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    for name in ("concurrency", "probes", "checks", "repeat", "renders"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run both benchmarks and print the report; the exit code says whether it measured."""
    args = parse_args(argv)
    if shutil.which(BLACKBOX) is None:
        print(f"error: {BLACKBOX} not found on PATH (apt-get install {BLACKBOX})", file=sys.stderr)
        return 2
    stop_on_signals()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))  # warnings up
    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp:
        services = Services(Path(tmp))
        try:
            results = run_probes(services, Path(tmp), args)
        except BenchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        finally:
            say(args, f"stopped pids {services.stop_all()}")
    notes = [n for ms in results.values() for m in ms for n in check_measurement(m, args.probes)]
    say(args, f"render: {args.checks} checks")
    try:
        render = measure_render(args.checks, args.renders)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    summary = summarize(results, render, args)
    summary["notes"] = notes
    print_table(results, summary)
    for note in notes:
        print(f"note: {note}")
    if args.json:
        print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
