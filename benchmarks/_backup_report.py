"""The backup benchmark's report: the ratios judged against the goals of issue 11, the tables."""

from __future__ import annotations

import argparse
import os
import platform
from typing import Any

from _common import print_ratios

GOALS = {
    "fs_throughput_ratio": (">=", 0.9),
    "pg_speedup": (">=", 3.0),
    "pg_size_ratio": ("<=", 1.0),
    "pgbackrest_time_ratio": ("<=", 1.2),
}


def summarize(args: argparse.Namespace, found: dict[str, Any], threads: int) -> dict[str, Any]:
    """The figures, and the ratios judged against the goals."""
    summary: dict[str, Any] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "scale": args.scale,
        "runs": args.runs,
        "vigil_zstd_threads": threads,
        **found,
    }
    if "files" in found:
        f = found["files"]
        summary["fs_throughput_ratio"] = f["tar"]["seconds"] / f["vigil"]["seconds"]
        summary["fs_cpu_ratio"] = f["vigil"]["cpu_seconds"] / f["tar"]["cpu_seconds"]
        summary["fs_size_ratio"] = f["vigil"]["bytes"] / f["tar"]["bytes"]
        summary["fs_equivalent_ratio"] = f["tar|age"]["seconds"] / f["vigil"]["seconds"]
    if "logical" in found:
        lg = found["logical"]
        summary["pg_speedup"] = lg["pg_dump"]["seconds"] / lg["vigil"]["seconds"]
        summary["pg_cpu_ratio"] = lg["vigil"]["cpu_seconds"] / lg["pg_dump"]["cpu_seconds"]
        summary["pg_size_ratio"] = lg["vigil"]["bytes"] / lg["pg_dump"]["bytes"]
        db = found["pg_dataset"]
        db["zstd_ratio_of_dump"] = round(lg["dump_plain_bytes"] / lg["vigil"]["bytes"], 2)
        db["zstd_ratio_of_database"] = round(db["db_bytes"] / lg["vigil"]["bytes"], 2)
    if "physical" in found:
        ph = found["physical"]
        summary["pgbackrest_time_ratio"] = ph["vigil"]["seconds"] / ph["pgbackrest"]["seconds"]
        cpu = ph["vigil"]["cpu_seconds"] / ph["pgbackrest"]["cpu_seconds"]
        summary["pgbackrest_cpu_ratio"] = cpu
        summary["pgbackrest_size_ratio"] = ph["vigil"]["bytes"] / ph["pgbackrest"]["bytes"]
        summary["pgbackrest_total_cpu_ratio"] = sum(
            ph["vigil"][k] for k in ("cpu_seconds", "server_cpu_seconds")
        ) / sum(ph["pgbackrest"][k] for k in ("cpu_seconds", "server_cpu_seconds"))
    summary["goals_met"] = {
        key: (summary[key] >= goal if op == ">=" else summary[key] <= goal)
        for key, (op, goal) in GOALS.items()
        if key in summary
    }
    return summary


def _mib(value: float) -> str:
    return f"{value / 2**20:,.1f}"


def print_report(summary: dict[str, Any]) -> None:
    """The data sets, one table per part, and the ratios."""
    print(f"Python {summary['python']}, {summary['cpus']} CPUs, scale {summary['scale']:g}, "
          f"median of {summary['runs']} runs; Vigil: zstd-3 x{summary['vigil_zstd_threads']} "
          "threads + age + SHA-256")  # fmt: skip
    if "files" in summary:
        d = summary["files"]["dataset"]
        print(f"files tree: {d['files']:,} files, {_mib(d['bytes'])} MiB "
              f"({d['large_files']} large = {_mib(d['large_bytes'])} MiB, "
              f"{d['small_files']:,} small = {_mib(d['small_bytes'])} MiB), "
              f"tar+zstd-3 ratio {d['compression_ratio']}x; SHA-256 of every file "
              f"{d['sha256_cpu_seconds']} CPU s")  # fmt: skip
    if "pg_dataset" in summary:
        d = summary["pg_dataset"]
        rows = ", ".join(f"{k} {v:,}" for k, v in d["rows"].items())
        print(f"database: {_mib(d['db_bytes'])} MiB ({rows}), loaded in {d['load_seconds']} s; "
              f"zstd ratio {d.get('zstd_ratio_of_dump', '?')}x of the dump, "
              f"{d.get('zstd_ratio_of_database', '?')}x of the database")  # fmt: skip
    print(f"\n{'part':<10}{'side':<12}{'wall s':>8}{'CPU s':>8}{'server':>8}{'MiB out':>10}"
          "  runs (s)   load before")  # fmt: skip
    for part, anchor in (("files", "tar"), ("logical", "pg_dump"), ("physical", "pgbackrest")):
        if part not in summary:
            continue
        for side in [s for s in summary[part] if s in (anchor, "tar|age")] + ["vigil"]:
            r = summary[part][side]
            server = f"{r['server_cpu_seconds']:.2f}" if "server_cpu_seconds" in r else "-"
            print(f"{part:<10}{side:<12}{r['seconds']:>8.2f}{r['cpu_seconds']:>8.2f}{server:>8}"
                  f"{_mib(r['bytes']):>10}  {r['runs_seconds']}  "
                  f"{summary[part]['load']['before']}")  # fmt: skip
    for part in ("files", "logical", "physical"):
        profile = summary.get(part, {}).get("profile")
        if profile:
            print(f"\nVigil's {part} backup, profiled: {profile['seconds']:.2f} s wall")
            for name, cpu in profile["threads"].items():
                print(f"  thread {name:<40}{cpu:>8.2f} CPU s")
            print("  the calling thread under cProfile (another run):")
            for line in profile["top"]:
                print(f"  {line}")
    print()
    print_ratios(
        summary,
        [
            ("fs_throughput_ratio", "tar time / Vigil time, goal >= 0.9"),
            ("fs_cpu_ratio", "Vigil CPU / tar CPU, reported"),
            ("fs_size_ratio", "Vigil stored / tar output, reported"),
            ("fs_equivalent_ratio", "tar|zstd|age|sha256sum time / Vigil time, reported"),
            ("pg_speedup", "pg_dump -Fc time / Vigil time, goal >= 3"),
            ("pg_size_ratio", "Vigil stored / pg_dump -Fc size, goal <= 1"),
            ("pg_cpu_ratio", "Vigil CPU / pg_dump CPU, reported"),
            ("pgbackrest_time_ratio", "Vigil time / pgBackRest time, goal <= 1.2"),
            ("pgbackrest_cpu_ratio", "Vigil CPU / pgBackRest CPU, reported"),
            ("pgbackrest_total_cpu_ratio", "the same, the server's CPU added, reported"),
            ("pgbackrest_size_ratio", "Vigil stored / pgBackRest repo, reported"),
        ],
        28,
        ".2f",
    )
