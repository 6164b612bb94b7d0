"""`kind: disk`: free bytes and free ratio at a path."""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

from agent.config.checks import DiskCheck
from agent.probes.context import ProbeContext
from agent.probes.result import CheckResult, Reason


async def probe_disk(check: DiskCheck, ctx: ProbeContext) -> CheckResult:
    """Rate the file system holding `path` by the space still available to the agent."""
    try:
        # statvfs can block on a dead network mount; a thread keeps the deadline enforceable.
        usage = await asyncio.to_thread(shutil.disk_usage, check.path)
    except OSError as exc:
        return CheckResult.unhealthy(Reason.ASSERTION_FAILED, f"{check.path}: {exc.strerror}")
    ratio = usage.free / usage.total if usage.total else 0.0
    details: dict[str, Any] = {
        "path": check.path,
        "free_bytes": usage.free,
        "total_bytes": usage.total,
        "free_ratio": round(ratio, 6),
    }
    low_bytes = check.min_free_bytes is not None and usage.free < check.min_free_bytes
    summary = f"{usage.free} bytes ({ratio:.1%}) free at {check.path}"
    if ratio < check.unhealthy_free_ratio:
        return CheckResult.unhealthy(Reason.DISK_LOW, summary, **details)
    if ratio < check.degraded_free_ratio or low_bytes:
        return CheckResult.degraded(Reason.DISK_LOW, summary, **details)
    return CheckResult.healthy(**details)
