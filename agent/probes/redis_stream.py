"""`kind: redis_stream`: a stream's consumer group, by its entries waiting and the oldest one's age.

Depth is what the group still owes: entries delivered and not acknowledged (`pending`) plus
entries not delivered yet (`lag`, from `XINFO GROUPS`, Redis >= 7). The oldest waiting entry is
the smallest pending ID, or, with nothing pending, the first entry after the group's
last-delivered ID; its age is the millisecond time of its ID against the server's `TIME`, so the
agent's clock plays no part. Where Redis cannot tell the lag (entries deleted with XDEL after the
last delivered one, or a server before 7.0), the undelivered entries are counted with XRANGE, up
to one more than `capacity`: enough to rate the queue, bounded so a huge backlog is not read.
"""

from __future__ import annotations

from typing import Any

from agent.config.checks import RedisStreamCheck
from agent.probes import backlog, resp
from agent.probes.context import ProbeContext
from agent.probes.result import CheckResult, Reason

# Entries read per XRANGE while counting undelivered ones: the payloads come too.
_PAGE = 1000


async def probe_redis_stream(check: RedisStreamCheck, ctx: ProbeContext) -> CheckResult:
    """Rate a consumer group by what it has not acknowledged and how long the oldest has waited."""
    client = await resp.client(check, ctx)
    stream, group = check.stream, check.group
    try:
        with ctx.client_span("XINFO GROUPS", client.plan.span("PIPELINE", 3)):
            groups, time_reply, summary = await client.pipeline(
                ("XINFO", "GROUPS", stream), ("TIME",), ("XPENDING", stream, group)
            )
        if isinstance(groups, resp.ReplyError):
            return _no_stream(stream, groups)
        info = _group(groups, group)
        # The group may go between the two commands: XPENDING then answers NOGROUP.
        gone = isinstance(summary, resp.ReplyError) and str(summary).startswith("NOGROUP")
        if not info or gone:
            return CheckResult.unhealthy(
                Reason.ASSERTION_FAILED, f"stream {stream!r} has no consumer group {group!r}"
            )
        now_ms = _server_ms(time_reply)
        pending, smallest = _summary(summary)
        lag = info.get("lag")  # None: Redis cannot tell, or is older than 7.0
        if lag is not None and not isinstance(lag, int):
            raise resp.ProtocolError(f"XINFO GROUPS lag is {type(lag).__name__}")
        first = None
        if lag is None or (pending == 0 and lag > 0):
            last = _text(info.get("last-delivered-id"), "last-delivered-id")
            with ctx.client_span("XRANGE", client.plan.span("XRANGE")):
                limit = check.capacity + 1 if lag is None else 1
                counted, first = await _undelivered(client, stream, last, limit)
            lag = counted if lag is None else lag
        oldest = smallest if pending else first
        age = None if oldest is None else max(0.0, (now_ms - _id_ms(oldest)) / 1000)
    except resp.FAILURES as exc:
        return resp.failure(exc)
    details: dict[str, Any] = {"pending": pending, "lag": lag}
    if isinstance(info.get("consumers"), int):
        details["consumers"] = info["consumers"]
    return backlog.judge(check, pending + lag, age, **details)


def _no_stream(stream: str, error: resp.ReplyError) -> CheckResult:
    """The result of XINFO GROUPS refusing: the stream is missing, not a stream, or worse."""
    text = str(error)
    if text.startswith("WRONGTYPE"):
        return CheckResult.unhealthy(
            Reason.ASSERTION_FAILED, f"key {stream!r} holds something other than a stream"
        )
    if "no such key" in text.lower():
        return CheckResult.unhealthy(Reason.ASSERTION_FAILED, f"stream {stream!r} does not exist")
    return resp.failure(error)


def _group(groups: Any, name: str) -> dict[str, Any]:
    """The XINFO GROUPS fields of group `name` (flat name/value arrays in RESP2), {} if none."""
    if not isinstance(groups, list):
        raise resp.ProtocolError(f"XINFO GROUPS answered {type(groups).__name__}")
    for entry in groups:
        if not isinstance(entry, list) or len(entry) % 2:
            raise resp.ProtocolError("XINFO GROUPS answered a malformed group")
        fields = {
            _text(key, "field"): value for key, value in zip(entry[::2], entry[1::2], strict=True)
        }
        if fields.get("name") == name.encode():
            return fields
    return {}


def _summary(reply: Any) -> tuple[int, bytes | None]:
    """Pending entries and the smallest pending ID, from the summary form of XPENDING."""
    if isinstance(reply, resp.ReplyError):
        raise reply
    if not isinstance(reply, list) or len(reply) != 4 or not isinstance(reply[0], int):
        raise resp.ProtocolError("XPENDING answered something other than its summary")
    smallest = reply[1]
    if reply[0] and not isinstance(smallest, bytes):
        raise resp.ProtocolError("XPENDING gave no smallest ID")
    return reply[0], smallest


def _server_ms(reply: Any) -> float:
    """The server's clock, in Unix milliseconds, from a TIME reply."""
    if isinstance(reply, resp.ReplyError):
        raise reply
    try:
        seconds, micros = (int(part) for part in reply)
    except (TypeError, ValueError):
        raise resp.ProtocolError(f"TIME answered {reply!r}") from None
    return seconds * 1000 + micros / 1000


async def _undelivered(
    client: resp.Client, stream: str, last: str, limit: int
) -> tuple[int, bytes | None]:
    """How many entries come after ID `last`, counted up to `limit`, and the first one's ID."""
    counted, first, start = 0, None, f"({last}"
    while counted < limit:
        page = min(_PAGE, limit - counted)
        entries = await client.call("XRANGE", stream, start, "+", "COUNT", str(page))
        if not isinstance(entries, list):
            raise resp.ProtocolError(f"XRANGE answered {type(entries).__name__}")
        ids = [entry[0] for entry in entries if isinstance(entry, list) and entry]
        if len(ids) != len(entries) or not all(isinstance(i, bytes) for i in ids):
            raise resp.ProtocolError("XRANGE answered a malformed entry")
        if not ids:
            break
        first = first or ids[0]
        counted += len(ids)
        start = f"({ids[-1].decode()}"
        if len(ids) < page:
            break
    return counted, first


def _id_ms(entry_id: bytes) -> int:
    """The millisecond time an automatic stream ID (`<ms>-<seq>`) starts with."""
    ms, _, _ = entry_id.partition(b"-")
    if not ms.isdigit():
        raise resp.ProtocolError(f"not a stream ID: {entry_id!r}")
    return int(ms)


def _text(value: Any, what: str) -> str:
    """A bulk string reply as text; anything else is a protocol error naming `what`."""
    if not isinstance(value, bytes):
        raise resp.ProtocolError(f"{what} is {type(value).__name__}, not a bulk string")
    return value.decode(errors="replace")
