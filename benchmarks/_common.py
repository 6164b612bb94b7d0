"""What the benchmarks share: helper processes started and stopped by PID, CPU readings, I/O."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")
START_SECONDS = 30.0  # how long a service may take to come up


class BenchError(Exception):
    """The benchmark could not measure what it claims to (a failed request, a missing service)."""


class Services:
    """Processes this benchmark started; `stop()` ends each one by its PID, newest first."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        self, name: str, argv: list[str], env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start `argv` with stdin and stdout piped (stdout unbuffered), stderr to a log file.

        The helpers exit at EOF on stdin, so they end with this process even if it is killed.
        """
        with (self.workdir / f"{name}.log").open("ab") as log_file:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log_file,
                bufsize=0,
                env=None if env is None else dict(env),
                cwd=REPO,
            )
        self.procs.append((name, proc))
        return proc

    def log_tail(self, name: str, size: int = 800) -> str:
        """The end of the stderr log of service `name`."""
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-size:] if path.exists() else ""

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM `proc` by PID, SIGKILL it after 10 s, and reap it."""
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()

    def stop_all(self) -> list[int]:
        """Stop every process still running; returns the PIDs handled."""
        pids = []
        while self.procs:
            _, proc = self.procs.pop()
            self.stop(proc)
            pids.append(proc.pid)
        return pids


def read_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    """The next stdout line of `proc`; BenchError if it exits or stays silent for `timeout`."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, left))
        if not ready:
            raise BenchError(f"pid {proc.pid} ({proc.args!r:.80}) said nothing for {timeout:g}s")
        chunk = proc.stdout.readline()
        if not chunk:
            raise BenchError(f"pid {proc.pid} ({proc.args!r:.80}) exited with {proc.wait()}")
        line += chunk
    return line.decode().strip()


def free_port() -> int:
    """A port the kernel considers free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> bytes:
    """GET `url` without any proxy from the environment."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as response:
        return bytes(response.read())


def proc_cpu_seconds(pid: int) -> float:
    """utime+stime of process `pid`, every thread included, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def quantile(values: list[float], q: float) -> float:
    """The `q` quantile of `values` (nearest rank), 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def say(args: Any, text: str) -> None:
    """Progress on stderr, unless --quiet."""
    if not args.quiet:
        print(f"# {text}", file=sys.stderr, flush=True)


def wait_healthy(proc: subprocess.Popen[bytes], url: str) -> bool:
    """Poll `url` until it answers, `proc` exits, or START_SECONDS pass."""
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(OSError):
            http_get(url, timeout=1.0)
            return True
        time.sleep(0.1)
    return False


def print_ratios(
    summary: dict[str, Any], rows: list[tuple[str, str]], name_width: int, value_format: str
) -> None:
    """One line per (ratio, goal note) present in `summary`, with met / NOT met when judged."""
    for key, note in rows:
        if key not in summary:
            continue
        met = summary["goals_met"].get(key)
        verdict = "" if met is None else ("  met" if met else "  NOT met")
        print(f"  {key:<{name_width}}{summary[key]:{value_format}}  ({note}){verdict}")


def stop_on_signals() -> None:
    """Ctrl-C and SIGTERM both raise KeyboardInterrupt in the main thread, so the benchmark's
    `finally` blocks stop every service it started, even when it was started with `&` (which
    makes a shell ignore SIGINT in it)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)


def _terminate(signum: int, _: object) -> None:
    signal.raise_signal(signal.SIGINT)
