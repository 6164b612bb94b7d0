"""The two webhook servers the degradation benchmarks drive, started as processes: the real agent
(`python -m agent run`) and the bare aiohttp handler of `_degradation_services.py`.

Shared by `degradation.py` and `soak.py`, so both measure the same agent configuration.
"""

from __future__ import annotations

import os
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import yaml
from _common import START_SECONDS, BenchError, Services, free_port, read_line, wait_healthy

from agent.config.model import DegradationSettings

SERVICES = Path(__file__).resolve().parent / "_degradation_services.py"
HOOK_ENV = "VIGIL_BENCH_HOOK"
TICK_SECONDS = 60  # the engine's clock tick; the longest the config allows
# The stores `degradation.store` accepts, read from the agent's config model so that a benchmark
# offers what the agent under test has.
STORES: tuple[str, ...] = typing.get_args(DegradationSettings.model_fields["store"].annotation)


def helper_env(token: str) -> dict[str, str]:
    """This environment without OTLP settings (nothing leaves the box), plus the webhook token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env[HOOK_ENV] = token
    return env


def start_bare(services: Services) -> tuple[subprocess.Popen[bytes], int]:
    """Start the bare aiohttp handler and return it with the port it bound."""
    proc = services.start("bare", [sys.executable, str(SERVICES), "bare"])
    try:
        line = read_line(proc, START_SECONDS)
    except BenchError as exc:
        raise BenchError(f"bare server did not start: {exc}\n{services.log_tail('bare')}") from None
    return proc, int(line.removeprefix("port "))


def agent_config(
    port: int, data_dir: Path, store: str | None = None, redis_url: str = ""
) -> dict[str, Any]:
    """A minimal agent: one disk check, degradation on over `store` (None: the default store;
    `redis`: the Redis at `redis_url`)."""
    degradation: dict[str, Any] = {
        "enabled": True,
        "webhook": {"bearer_token_env": HOOK_ENV},
        "hold_seconds": 0,  # a resolve recovers at once: every request a transition
        "flap_max_changes": 1_000_000,  # never suppress: alternation is the point here
        "flap_window_seconds": 0.001,
        "tick_seconds": TICK_SECONDS,
        "rules": [
            {
                "name": "demo",
                "matchers": ['alertname="DemoDown"'],
                "level": "minimal",
                "flags_off": ["recommendations"],
            }
        ],
    }
    if store is not None:
        degradation["store"] = store
    if store == "redis":
        # Named after the data directory: an agent started over it again shares the state.
        degradation["redis"] = {"url": redis_url, "key_prefix": f"vigil-bench-{data_dir.name}"}
    return {
        "agent": {
            "listen_host": "127.0.0.1",
            "listen_port": port,
            "data_dir": str(data_dir),
            "startup_grace_seconds": 0,
            "log_format": "json",
        },
        "telemetry": {"otlp": {"enabled": False}},
        "degradation": degradation,
        "checks": [
            {
                "name": "disk",
                "kind": "disk",
                "path": "/",
                "interval_seconds": 3600,
                "degraded_free_ratio": 0,
                "unhealthy_free_ratio": 0,
            }
        ],
    }


def start_agent(
    services: Services,
    workdir: Path,
    token: str,
    store: str | None = None,
    data_dir: Path | None = None,
    redis_url: str = "",
) -> tuple[subprocess.Popen[bytes], int]:
    """Start `python -m agent run` on a free port and wait until `/healthz` answers.

    Without `data_dir` every attempt gets a fresh one under `workdir`; with it, the agent starts
    over what an earlier one stored there (with `store="redis"`, in `redis_url` under keys named
    after `data_dir`).
    """
    for attempt in range(3):  # the port may be taken between probing it and the agent binding it
        port = free_port()
        config = workdir / f"vigil-{len(list(workdir.glob('vigil-*.yaml')))}.yaml"
        data = data_dir or workdir / f"data-{attempt}"
        config.write_text(yaml.safe_dump(agent_config(port, data, store, redis_url)))
        argv = [sys.executable, "-m", "agent", "run", "--config", str(config)]
        proc = services.start("agent", argv, helper_env(token))
        if wait_healthy(proc, f"http://127.0.0.1:{port}/healthz"):
            return proc, port
        services.procs.remove(("agent", proc))
        services.stop(proc)
    raise BenchError(f"the agent did not start:\n{services.log_tail('agent')}")
