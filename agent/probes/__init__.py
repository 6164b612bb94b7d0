"""Probes: one file per check kind, each `probe_<kind>(check, ctx) -> CheckResult`."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import cast

from agent.probes.result import CheckResult, Reason, Status
from agent.probes.runner import Probe


class ProbeMap(Mapping[str, Probe]):
    """Kind -> probe, each probe's module imported the first time its kind is looked up.

    A probe module imports its driver (psycopg and its pool, say), and drivers are most
    of an agent's memory: an agent loads only the kinds its configuration has.
    """

    def __init__(self, targets: Mapping[str, str]) -> None:
        self._targets = dict(targets)
        self._loaded: dict[str, Probe] = {}

    def __getitem__(self, kind: str) -> Probe:
        probe = self._loaded.get(kind)
        if probe is None:
            module, _, name = self._targets[kind].partition(":")
            probe = cast(Probe, getattr(importlib.import_module(module), name))
            self._loaded[kind] = probe
        return probe

    def __iter__(self) -> Iterator[str]:
        return iter(self._targets)

    def __len__(self) -> int:
        return len(self._targets)


# The literal map from config `kind` to its probe (`module:function`); tests keep it equal to the
# config's kinds and check that every entry names a probe.
PROBES: Mapping[str, Probe] = ProbeMap(
    {
        "postgres": "agent.probes.postgres:probe_postgres",
        "redis": "agent.probes.redis:probe_redis",
        "http": "agent.probes.http:probe_http",
        "tcp": "agent.probes.tcp:probe_tcp",
        "disk": "agent.probes.disk:probe_disk",
        "python": "agent.probes.python:probe_python",
        "heartbeat": "agent.probes.heartbeat:probe_heartbeat",
        "redis_list": "agent.probes.redis_list:probe_redis_list",
        "redis_stream": "agent.probes.redis_stream:probe_redis_stream",
        "postgres_queue": "agent.probes.postgres_queue:probe_postgres_queue",
    }
)

__all__ = ["PROBES", "CheckResult", "Probe", "ProbeMap", "Reason", "Status"]
