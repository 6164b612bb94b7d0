"""Probes: one file per check kind, each `probe_<kind>(check, ctx) -> CheckResult`."""

from agent.probes.disk import probe_disk
from agent.probes.heartbeat import probe_heartbeat
from agent.probes.http import probe_http
from agent.probes.postgres import probe_postgres
from agent.probes.python import probe_python
from agent.probes.redis import probe_redis
from agent.probes.result import CheckResult, Reason, Status
from agent.probes.runner import Probe
from agent.probes.tcp import probe_tcp

# The literal map from config `kind` to probe; tests keep it equal to the config's kinds.
PROBES: dict[str, Probe] = {
    "postgres": probe_postgres,
    "redis": probe_redis,
    "http": probe_http,
    "tcp": probe_tcp,
    "disk": probe_disk,
    "python": probe_python,
    "heartbeat": probe_heartbeat,
}

__all__ = ["PROBES", "CheckResult", "Probe", "Reason", "Status"]
