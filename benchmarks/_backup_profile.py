"""Where a Vigil backup spends its time: the CPU of every thread of this process (read from /proc
while the backup runs, as threads end before it does) and of the children it waited for, in one
plain run; then the calling thread's functions under cProfile, in another (cProfile slows the
thread it watches, so the thread figures come from the run without it)."""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import resource
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import CLK_TCK

TOP = 14


def _task_cpu(tid: int) -> float | None:
    try:
        fields = Path(f"/proc/self/task/{tid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class ThreadSampler:
    """Polls the CPU of each thread of this process; names the ones Python knows."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.start_cpu: dict[int, float] = {}
        self.last_cpu: dict[int, float] = {}
        self.names: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def _sample(self) -> None:
        for thread in threading.enumerate():
            if thread.native_id is not None:
                self.names.setdefault(thread.native_id, thread.name)
        for entry in os.listdir("/proc/self/task"):
            tid = int(entry)
            cpu = _task_cpu(tid)
            if cpu is not None:
                self.start_cpu.setdefault(tid, cpu)
                self.last_cpu[tid] = cpu

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> ThreadSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def by_name(self) -> dict[str, float]:
        """CPU seconds per thread during the sampling; unnamed threads are native (zstd's)."""
        totals: dict[str, float] = {}
        for tid, cpu in self.last_cpu.items():
            name = self.names.get(tid, "native (zstd workers)")
            if name == "sampler":
                continue
            totals[name] = totals.get(name, 0.0) + cpu - self.start_cpu.get(tid, 0.0)
        return dict(sorted(totals.items(), key=lambda item: -item[1]))


def profiled(work: Callable[[], Any], clean: Callable[[], None]) -> dict[str, Any]:
    """Run `work` twice, `clean` after each: once watched by the thread sampler (wall seconds,
    CPU seconds per thread and of child processes), once under cProfile (the calling thread's
    top functions by internal time)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    with ThreadSampler() as sampler:
        work()
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    clean()
    threads = sampler.by_name()
    spent = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    if spent > 0.005:
        threads["child processes"] = spent
    profile = cProfile.Profile()
    profile.enable()
    try:
        work()
    finally:
        profile.disable()
        clean()
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("tottime").print_stats(TOP)
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    return {
        "seconds": round(seconds, 3),
        "threads": {name: round(cpu, 2) for name, cpu in threads.items() if cpu >= 0.005},
        "top": [line.rstrip() for line in lines[start : start + TOP + 1]],
    }
