"""Vigil's memory and CPU with 100 checks, beside blackbox_exporter probing the same targets.

Goal (issue 9): an agent with 100 checks (40 http, 30 redis, 20 tcp, 10 postgres, every 5 s)
holds <= 80 MB RSS after a minute (`rss_mb`).

Method:

* Targets, all on 127.0.0.1 and started here: `_services.py target` (its own process, HTTP/1.1
  keep-alive answering `200 ok`) serves the http checks, each on its own path, and the tcp checks,
  which only connect to it; a private redis-server (tests/harness/redis.py) serves the redis
  checks and a private PostgreSQL cluster (tests/harness/postgres.py) the postgres checks.
* Vigil: `python -m agent run --config FILE` (what `vigil run` runs) in its own process, on a
  generated config: the 100 checks with `interval_seconds: 5`, `timeout_seconds: 2`, OTLP off,
  degradation off (its defaults), JSON logs to a file.
* The anchor: Debian's prometheus-blackbox-exporter with the equivalent modules (`http_2xx`;
  `tcp_connect` for the tcp and the postgres targets, as blackbox has no PostgreSQL prober;
  `redis_ping`, a tcp module sending PING and expecting +PONG), probing the same 100 targets,
  driven by a private Prometheus every 5 s through the usual `/probe` relabelling. The same
  Prometheus scrapes Vigil's `/metrics` every 5 s, as a deployment would.
* Both run at once. When both are steady (every Vigil check healthy on `/health`, and
  `probe_success` 1 for all 100 targets in Prometheus), the window opens: the CPU (utime+stime,
  every thread, from /proc/PID/stat) of the agent and of blackbox_exporter is read at its start
  and end, `--seconds` (60) apart, and RSS (VmRSS) and peak RSS (VmHWM) from /proc/PID/status at
  its end. RSS is also sampled every interval, to show whether it still grows.
* Reported per side: `rss_mb` (VmRSS at the end, MiB), `hwm_mb`, `cpu_seconds_per_second` (CPU in
  the window / its length); the ratios Vigil / blackbox. Prometheus's own figures are printed for
  information and counted against neither side. What each side did in the window is counted too:
  Vigil's check runs (the increase of `vigil_check_runs_total`) and blackbox's probes (Prometheus's
  `count_over_time(probe_success[...])`).

The work is not identical, and the difference favours the anchor: Vigil's redis check sends PING
and INFO over a kept connection and its postgres check runs `SELECT 1` and a facts query from a
pool, while blackbox connects anew for each probe and only connects (PINGs Redis).

Everything binds 127.0.0.1 on free ports; every process started here is stopped by PID on the way
out, errors included. `--json` makes the last line of the output one JSON object. Exit codes: 0
measured (goal met or not), 1 something failed, 2 a required binary is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import yaml  # noqa: E402
from _common import (  # noqa: E402
    START_SECONDS,
    BenchError,
    Services,
    free_port,
    print_ratios,
    proc_cpu_seconds,
    read_line,
    say,
    stop_on_signals,
    wait_healthy,
)

from tests.harness.agent_process import (  # noqa: E402
    AgentProcess,
    start_agent_process,
    stop_agent_process,
)
from tests.harness.binaries import find  # noqa: E402
from tests.harness.httpclient import get  # noqa: E402
from tests.harness.postgres import PostgresServer  # noqa: E402
from tests.harness.prometheus import PrometheusServer  # noqa: E402
from tests.harness.redis import RedisServer  # noqa: E402

BLACKBOX = "prometheus-blackbox-exporter"
SERVICES = Path(__file__).resolve().parent / "_services.py"
# The agent: how many checks of each kind.
CHECKS = {"http": 40, "redis": 30, "tcp": 20, "postgres": 10}
TIMEOUT_SECONDS = 2.0
GOALS = {"rss_mb": 80.0}
PG_PASSWORD_ENV = "VIGIL_BENCH_PG_PASSWORD"  # noqa: S105 (the name of a variable, not a secret)
RUNS = "vigil_check_runs_total{"  # the counter of check runs on /metrics, with its labels
# blackbox_exporter's module for each check kind.
MODULES = {
    "http": "http_2xx",
    "redis": "redis_ping",
    "tcp": "tcp_connect",
    "postgres": "tcp_connect",
}


def blackbox_yaml(timeout: float) -> str:
    """The modules equivalent to the check kinds, with the checks' timeout."""
    ip4 = {"preferred_ip_protocol": "ip4"}
    modules = {
        "http_2xx": {"prober": "http", "timeout": f"{timeout:g}s", "http": ip4},
        "tcp_connect": {"prober": "tcp", "timeout": f"{timeout:g}s", "tcp": ip4},
        "redis_ping": {
            "prober": "tcp",
            "timeout": f"{timeout:g}s",
            "tcp": {**ip4, "query_response": [{"send": "PING"}, {"expect": "^\\+PONG"}]},
        },
    }
    return yaml.safe_dump({"modules": modules}, sort_keys=False)


# --- the targets and the two sides ----------------------------------------------------------------


def check_targets(http_port: int, redis_port: int, pg_port: int) -> list[dict[str, Any]]:
    """The checks: name, kind, Vigil's config keys (`keys`) and blackbox's target (`probe`)."""
    targets = []
    for kind, count in CHECKS.items():
        for i in range(count):
            name = f"{kind}-{i:02d}"
            if kind == "http":
                url = f"http://127.0.0.1:{http_port}/{name}"
                keys: dict[str, Any] = {"url": url}
                probe = url
            elif kind == "tcp":
                keys, probe = {"host": "127.0.0.1", "port": http_port}, f"127.0.0.1:{http_port}"
            elif kind == "redis":
                keys = {"url": f"redis://127.0.0.1:{redis_port}/0"}
                probe = f"127.0.0.1:{redis_port}"
            else:
                dsn = f"host=127.0.0.1 port={pg_port} user=postgres dbname=postgres"
                keys = {"dsn": dsn, "password_env": PG_PASSWORD_ENV}
                probe = f"127.0.0.1:{pg_port}"
            targets.append({"name": name, "kind": kind, "keys": keys, "probe": probe})
    return targets


def agent_config(targets: list[dict[str, Any]], interval: float, data_dir: Path) -> dict[str, Any]:
    """Vigil's config: the checks, a free port, OTLP off, everything else at its default."""
    checks = [
        {
            "name": t["name"],
            "kind": t["kind"],
            **t["keys"],
            "interval_seconds": interval,
            "timeout_seconds": TIMEOUT_SECONDS,
        }
        for t in targets
    ]
    return {
        "agent": {
            "listen_host": "127.0.0.1",
            "listen_port": 0,
            "data_dir": str(data_dir),
            "log_format": "json",
        },
        "telemetry": {"otlp": {"enabled": False}},
        "checks": checks,
    }


def prometheus_yaml(
    targets: list[dict[str, Any]], interval: float, blackbox_port: int, agent_port: int
) -> str:
    """One job per blackbox module (`/probe` relabelling) and one for Vigil's `/metrics`."""
    jobs: list[dict[str, Any]] = []
    for module in dict.fromkeys(MODULES.values()):
        kinds = [k for k, m in MODULES.items() if m == module]
        jobs.append(
            {
                "job_name": module,
                "metrics_path": "/probe",
                "params": {"module": [module]},
                # Several checks probe one address: the `check` label keeps them apart.
                "static_configs": [
                    {"targets": [t["probe"]], "labels": {"check": t["name"]}}
                    for t in targets
                    if t["kind"] in kinds
                ],
                "relabel_configs": [
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"source_labels": ["__param_target"], "target_label": "instance"},
                    {"target_label": "__address__", "replacement": f"127.0.0.1:{blackbox_port}"},
                ],
            }
        )
    jobs.append({"job_name": "vigil", "static_configs": [{"targets": [f"127.0.0.1:{agent_port}"]}]})
    config = {
        "global": {
            "scrape_interval": f"{interval:g}s",
            "scrape_timeout": f"{min(interval, TIMEOUT_SECONDS + 1):g}s",
        },
        "scrape_configs": jobs,
    }
    return yaml.safe_dump(config, sort_keys=False)


class Bench:
    """The running processes, started and stopped in order."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.services = Services(workdir)
        self.redis = RedisServer()
        self.postgres = PostgresServer(max_connections=40)
        self.agent: AgentProcess | None = None
        self.agent_url = ""
        self.blackbox: subprocess.Popen[bytes] | None = None
        self.prometheus: PrometheusServer | None = None
        self.targets: list[dict[str, Any]] = []

    def start(self) -> None:
        """The targets, the agent, blackbox_exporter and the Prometheus driving it."""
        say(self.args, "starting the HTTP/TCP target, redis-server and postgres")
        proc = self.services.start("target", [sys.executable, str(SERVICES), "target"])
        http_port = int(read_line(proc, START_SECONDS).removeprefix("port "))
        self.redis.start()
        self.postgres.start()
        self.targets = check_targets(http_port, self.redis.port, self.postgres.port)
        say(self.args, f"starting the agent with {len(self.targets)} checks and blackbox_exporter")
        config = agent_config(self.targets, self.args.interval, self.workdir / "agent" / "data")
        env = {PG_PASSWORD_ENV: self.postgres.superuser_password}
        self.agent = start_agent_process(self.workdir / "agent", config, env)
        self.agent_url = self.agent.url.rstrip("/")
        self.blackbox, blackbox_port = self._start_blackbox()
        agent_port = int(self.agent_url.rsplit(":", 1)[1])
        self.prometheus = PrometheusServer(
            prometheus_yaml(self.targets, self.args.interval, blackbox_port, agent_port)
        )
        self.prometheus.start()

    def _start_blackbox(self) -> tuple[subprocess.Popen[bytes], int]:
        config = self.workdir / "blackbox.yml"
        config.write_text(blackbox_yaml(TIMEOUT_SECONDS))
        for _ in range(3):  # the port may be taken between probing it and the exporter binding it
            port = free_port()
            argv = [
                BLACKBOX,
                f"--config.file={config}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ]
            proc = self.services.start("blackbox", argv)
            if wait_healthy(proc, f"http://127.0.0.1:{port}/-/healthy"):
                return proc, port
            self.services.stop(proc)
        raise BenchError(f"{BLACKBOX} did not start:\n{self.services.log_tail('blackbox')}")

    def stop(self) -> list[str]:
        """Stop everything started here, newest first; what was stopped."""
        stopped = []
        if self.prometheus is not None:
            stopped.append(f"prometheus {_pid(self.prometheus)}")
            self.prometheus.stop()
            self.prometheus = None
        if self.agent is not None:
            stopped.append(f"agent {self.agent.proc.pid}")
            stop_agent_process(self.agent)
            self.agent = None
        stopped += [f"pid {pid}" for pid in self.services.stop_all()]
        if self.postgres.postmaster_pid is not None:
            stopped.append(f"postgres {self.postgres.postmaster_pid}")
        self.postgres.cleanup()
        if self.redis.pid is not None:
            stopped.append(f"redis-server {self.redis.pid}")
        self.redis.cleanup()
        return stopped

    # -- what each side sees ---------------------------------------------------------------------

    def unhealthy_checks(self) -> list[str]:
        """Vigil's checks that are not healthy on `/health` (200 or 503 alike), with status."""
        _, body = get(f"{self.agent_url}/health", timeout=5.0)
        checks = json.loads(body)["checks"]
        return [
            f"{c['name']}: {c['status']} {c['message']}" for c in checks if c["status"] != "healthy"
        ]

    def failing_probes(self) -> list[str]:
        """Blackbox targets whose latest `probe_success` in Prometheus is not 1 (or missing)."""
        assert self.prometheus is not None
        results = self.prometheus.query("probe_success")
        good = {r["metric"].get("check") for r in results if r["value"][1] == "1"}
        return [t["name"] for t in self.targets if t["name"] not in good]

    def vigil_runs(self) -> float:
        """The sum of `vigil_check_runs_total` on the agent's `/metrics`."""
        _, body = get(f"{self.agent_url}/metrics", timeout=5.0)
        lines = body.decode().splitlines()
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(RUNS))

    def blackbox_probes(self, seconds: float) -> float:
        """Probes Prometheus recorded in the last `seconds` (one sample per probe)."""
        assert self.prometheus is not None
        found = self.prometheus.query(f"sum(count_over_time(probe_success[{int(seconds)}s]))")
        return float(found[0]["value"][1]) if found else 0.0


def _pid(server: PrometheusServer) -> int | None:
    proc = getattr(server, "_proc", None)
    return None if proc is None else proc.pid


def wait(probe: Callable[[], Any], what: str, within: float, interval: float = 0.5) -> None:
    """Poll `probe` until it answers something empty; BenchError with its last answer after."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if not last:
            return
        time.sleep(interval)
    raise BenchError(f"{what} within {within:g} s; still: {last!r:.600}")


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (kB) and Threads of process `pid`, from /proc/PID/status."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            found[key] = int(value.split()[0])
    return found


# --- the measurement ------------------------------------------------------------------------------


def measure(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    """Wait for both sides to be steady, then read CPU and memory over one window."""
    assert bench.agent is not None
    assert bench.blackbox is not None
    assert bench.prometheus is not None
    pids = {
        "vigil": bench.agent.proc.pid,
        "blackbox": bench.blackbox.pid,
        "prometheus": _pid(bench.prometheus),
    }
    say(args, "waiting until every check is healthy and blackbox probes every target")
    settle = args.settle_timeout
    wait(bench.unhealthy_checks, "vigil's checks did not all become healthy", settle)
    wait(bench.failing_probes, "blackbox did not probe every target successfully", settle)
    cpu_start = {side: proc_cpu_seconds(pid) for side, pid in pids.items() if pid}
    runs_start = bench.vigil_runs()
    started = time.monotonic()
    say(args, f"measuring for {args.seconds:g} s")
    samples: dict[str, list[float]] = {"vigil": [], "blackbox": []}
    next_sample = started
    while (left := started + args.seconds - time.monotonic()) > 0:
        if time.monotonic() >= next_sample:
            for side in samples:
                samples[side].append(round(proc_status(pids[side])["VmRSS"] / 1024, 1))
            next_sample += args.interval
        time.sleep(min(left, max(0.0, next_sample - time.monotonic()), 1.0))
    cpu_end = {side: proc_cpu_seconds(pid) for side, pid in pids.items() if pid}
    window = time.monotonic() - started
    status = {side: proc_status(pid) for side, pid in pids.items() if pid}
    runs = bench.vigil_runs() - runs_start
    probes = bench.blackbox_probes(window)
    unhealthy, failing = bench.unhealthy_checks(), bench.failing_probes()
    if unhealthy or failing:
        raise BenchError(f"at the end: unhealthy {unhealthy}, failing probes {failing}")
    sides = {
        side: {
            "rss_mb": round(status[side]["VmRSS"] / 1024, 1),
            "hwm_mb": round(status[side]["VmHWM"] / 1024, 1),
            "cpu_seconds_per_second": round((cpu_end[side] - cpu_start[side]) / window, 5),
            "cpu_seconds_before_window": round(cpu_start[side], 2),
            "threads": status[side]["Threads"],
        }
        for side in status
    }
    return {"sides": sides, "window": window, "runs": runs, "probes": probes, "samples": samples}


def summarize(measured: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The JSON summary: Vigil's figures at the top level, the anchor's beside, the ratios."""
    vigil, blackbox = measured["sides"]["vigil"], measured["sides"]["blackbox"]
    window = measured["window"]
    summary: dict[str, Any] = {
        "benchmark": "footprint",
        **vigil,
        **{f"blackbox_{key}": value for key, value in blackbox.items()},
        "rss_ratio": round(vigil["rss_mb"] / blackbox["rss_mb"], 3),
        "cpu_ratio": round(vigil["cpu_seconds_per_second"] / blackbox["cpu_seconds_per_second"], 3)
        if blackbox["cpu_seconds_per_second"]
        else None,
        "goals": GOALS,
        "goals_met": {"rss_mb": vigil["rss_mb"] <= GOALS["rss_mb"]},
        "checks": CHECKS,
        "interval_seconds": args.interval,
        "window_seconds": round(window, 2),
        "vigil_runs_per_second": round(measured["runs"] / window, 2),
        "blackbox_probes_per_second": round(measured["probes"] / window, 2),
        "rss_samples_mb": measured["samples"],
    }
    if "prometheus" in measured["sides"]:
        prom = measured["sides"]["prometheus"]
        summary["prometheus_rss_mb"] = prom["rss_mb"]
        summary["prometheus_cpu_seconds_per_second"] = prom["cpu_seconds_per_second"]
    summary["machine"] = {
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "python": platform.python_version(),
        "blackbox": version(BLACKBOX),
    }
    return summary


def version(binary: str) -> str:
    """The first line of `binary --version`."""
    done = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "?"


def print_table(summary: dict[str, Any]) -> None:
    """The readable report: one row per side, then the ratios and the goal."""
    kinds = ", ".join(f"{n} {k}" for k, n in summary["checks"].items())
    print(
        f"\n{sum(summary['checks'].values())} checks ({kinds}) every "
        f"{summary['interval_seconds']:g} s; {summary['window_seconds']:.0f} s window after both"
        " were steady"
    )
    head = f"{'side':<22}{'RSS MB':>8}{'peak MB':>9}{'CPU s/s':>10}{'threads':>9}{'runs/s':>8}"
    print(head + "\n" + "-" * len(head))
    rows = [
        ("vigil", "", summary["vigil_runs_per_second"]),
        ("blackbox_exporter", "blackbox_", summary["blackbox_probes_per_second"]),
    ]
    for label, prefix, rate in rows:
        print(
            f"{label:<22}{summary[prefix + 'rss_mb']:>8.1f}{summary[prefix + 'hwm_mb']:>9.1f}"
            f"{summary[prefix + 'cpu_seconds_per_second']:>10.4f}{summary[prefix + 'threads']:>9}"
            f"{rate:>8.1f}"
        )
    if "prometheus_rss_mb" in summary:
        print(
            f"{'(prometheus, info)':<22}{summary['prometheus_rss_mb']:>8.1f}{'':>9}"
            f"{summary['prometheus_cpu_seconds_per_second']:>10.4f}"
        )
    for side, values in summary["rss_samples_mb"].items():
        print(f"RSS samples, {side} (MB): {' '.join(f'{v:g}' for v in values)}")
    print("\nratios and goal")
    ratio_rows = [
        ("rss_mb", f"<= {GOALS['rss_mb']:g} MB"),
        ("rss_ratio", "vigil / blackbox, info"),
        ("cpu_ratio", "vigil / blackbox, info"),
    ]
    print_ratios(summary, [r for r in ratio_rows if summary.get(r[0]) is not None], 12, "8.3f")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window (60)")
    parser.add_argument("--interval", type=float, default=5.0, help="check interval (5)")
    parser.add_argument(
        "--settle-timeout", type=float, default=60.0, help="cap on reaching steady state (60)"
    )
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.interval < TIMEOUT_SECONDS:
        parser.error(f"--seconds must be positive and --interval at least {TIMEOUT_SECONDS:g}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run both sides, measure them and print the report; the exit code says whether it measured."""
    args = parse_args(argv)
    needed = ("redis-server", "prometheus", BLACKBOX, "initdb", "pg_ctl")
    missing = [b for b in needed if not find(b)]
    if missing:
        print(f"error: required binaries not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    stop_on_signals()
    workdir = Path(tempfile.mkdtemp(prefix="vigil-bench-footprint-"))
    bench = Bench(args, workdir)
    try:
        bench.start()
        measured = measure(bench, args)
    except (BenchError, AssertionError, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if bench.agent is not None:
            print(bench.agent.log.read_text(errors="replace")[-1500:], file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        say(args, f"stopped {bench.stop()}")
        shutil.rmtree(workdir, ignore_errors=True)
    summary = summarize(measured, args)
    print_table(summary)
    if args.json:
        print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
