"""`kind: heartbeat`: rates how long ago a heartbeat last arrived (the Watchdog alert)."""

from __future__ import annotations

from typing import Any

from agent.config.checks import HeartbeatCheck
from agent.probes.context import ProbeContext
from agent.probes.result import CheckResult, Reason


async def probe_heartbeat(check: HeartbeatCheck, ctx: ProbeContext) -> CheckResult:
    """Unhealthy when the source's last beat is older than `max_age_seconds` (or never came).

    A missing Watchdog means the alerting pipeline is blind: alerts may fire and nobody hears.
    That is a failure to report, never a reason to recover the degradation level.
    """
    source = ctx.heartbeats.get(check.source)
    if source is None:
        return CheckResult.unknown(Reason.INTERNAL_ERROR, f"no heartbeat source {check.source}")
    last = source()
    if last is None:
        return CheckResult.unhealthy(
            Reason.HEARTBEAT_MISSING, f"no {check.source} heartbeat received yet"
        )
    age = max(0.0, ctx.clock() - last)
    details: dict[str, Any] = {"last_beat_timestamp": last, "age_seconds": round(age, 3)}
    if age > check.max_age_seconds:
        return CheckResult.unhealthy(
            Reason.HEARTBEAT_MISSING,
            f"last {check.source} heartbeat {age:.0f}s ago: the alerting pipeline is blind",
            **details,
        )
    return CheckResult.healthy(**details)
