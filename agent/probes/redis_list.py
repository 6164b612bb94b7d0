"""`kind: redis_list`: a queue kept in Redis lists (Celery, RQ), its depth the sum of LLENs."""

from __future__ import annotations

from agent.config.checks import RedisListCheck
from agent.probes import backlog, resp
from agent.probes.context import ProbeContext
from agent.probes.result import CheckResult, Reason


async def probe_redis_list(check: RedisListCheck, ctx: ProbeContext) -> CheckResult:
    """Rate a list-backed queue by its depth against its capacity; a missing key is empty."""
    client = await resp.client(check, ctx)
    try:
        with ctx.client_span("LLEN", client.plan.span("LLEN", len(check.keys))):
            # One round trip for every key (Celery keeps a list per priority).
            replies = await client.pipeline(*(("LLEN", key) for key in check.keys))
    except resp.FAILURES as exc:
        return resp.failure(exc)
    depths: dict[str, int] = {}
    for key, reply in zip(check.keys, replies, strict=True):
        if isinstance(reply, resp.ReplyError):
            if str(reply).startswith("WRONGTYPE"):
                return CheckResult.unhealthy(
                    Reason.ASSERTION_FAILED, f"key {key!r} holds something other than a list"
                )
            return resp.failure(reply)
        if not isinstance(reply, int):
            return resp.failure(resp.ProtocolError(f"LLEN answered {type(reply).__name__}"))
        depths[key] = reply
    return backlog.judge(check, sum(depths.values()), depth_by_key=depths)
