"""The agent as a child process (`python -m agent run`), for tests that kill or fuzz it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).parents[2]


@dataclass
class AgentProcess:
    """`python -m agent run` in a child process; `url` is what its "agent started" log says."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path


def start_agent_process(workdir: Path, config: dict[str, Any], env: dict[str, str]) -> AgentProcess:
    """Write `config`, start the agent on it, wait until it logs its listen address."""
    workdir.mkdir(parents=True, exist_ok=True)
    n = len(list(workdir.glob("vigil-*.yaml")))
    path = workdir / f"vigil-{n}.yaml"
    path.write_text(yaml.safe_dump(config))
    log = workdir / f"agent-{n}.log"
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(path)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**child_env, **env},
            cwd=REPO,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("event") == "agent started":
                return AgentProcess(proc, str(event["listen"]), log)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise AssertionError(f"agent did not start:\n{log.read_text(errors='replace')[-3000:]}")


def stop_agent_process(agent: AgentProcess) -> None:
    """SIGTERM, then SIGKILL if it does not exit within 10 s."""
    if agent.proc.poll() is None:
        agent.proc.terminate()
        try:
            agent.proc.wait(10)
        except subprocess.TimeoutExpired:
            agent.proc.kill()
            agent.proc.wait()
