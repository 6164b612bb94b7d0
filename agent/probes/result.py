"""The health model every probe speaks: statuses, closed failure reasons and the result value."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping
from typing import Any


class Status(enum.StrEnum):
    """A check's rating; the values become the `state` label."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"

    @property
    def severity(self) -> int:
        """Rank used to pick the worst status; unknown sits between degraded and unhealthy."""
        return _SEVERITY[self]

    @property
    def exit_code(self) -> int:
        """The `vigil check` exit code for this status."""
        return _EXIT_CODES[self]


_SEVERITY = {Status.HEALTHY: 0, Status.DEGRADED: 1, Status.UNKNOWN: 2, Status.UNHEALTHY: 3}
_EXIT_CODES = {Status.HEALTHY: 0, Status.DEGRADED: 1, Status.UNHEALTHY: 2, Status.UNKNOWN: 3}


def worst(statuses: Iterable[Status]) -> Status:
    """The most severe status of `statuses`, healthy when there are none."""
    return max(statuses, key=lambda s: s.severity, default=Status.HEALTHY)


class Reason(enum.StrEnum):
    """Why a check is not healthy: a closed set, so it can be a metric label."""

    TIMEOUT = "timeout"
    CONNECTION_REFUSED = "connection_refused"
    CONNECTION_ERROR = "connection_error"
    DNS_ERROR = "dns_error"
    TLS_ERROR = "tls_error"
    AUTH_FAILED = "auth_failed"
    HTTP_STATUS = "http_status"
    BODY_MISMATCH = "body_mismatch"
    ASSERTION_FAILED = "assertion_failed"
    PROTOCOL_ERROR = "protocol_error"
    SERVER_ERROR = "server_error"
    LATENCY = "latency"
    SATURATION = "saturation"
    REPLICATION = "replication"
    PERSISTENCE = "persistence"
    CERT_EXPIRING = "cert_expiring"
    DISK_LOW = "disk_low"
    STALE = "stale"
    HEARTBEAT_MISSING = "heartbeat_missing"
    NOT_RUN = "not_run"
    INVALID_RESULT = "invalid_result"
    INTERNAL_ERROR = "internal_error"


@dataclasses.dataclass(frozen=True, slots=True)
class CheckResult:
    """What one run of a check found. Failure is data: probes return this, they never raise.

    `details` holds JSON-friendly facts (numbers, strings, booleans) shown by `/health`; numeric
    details named in the signal catalogue also become per-kind gauges.
    """

    status: Status
    reason: Reason | None = None
    message: str = ""
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    duration_seconds: float = 0.0
    finished_at: float = 0.0

    @classmethod
    def healthy(cls, message: str = "", **details: Any) -> CheckResult:
        """A healthy result carrying `details`."""
        return cls(Status.HEALTHY, None, message, details)

    @classmethod
    def degraded(cls, reason: Reason, message: str, **details: Any) -> CheckResult:
        """A degraded result: the dependency works but crossed a threshold."""
        return cls(Status.DEGRADED, reason, message, details)

    @classmethod
    def unhealthy(cls, reason: Reason, message: str, **details: Any) -> CheckResult:
        """An unhealthy result: the dependency does not do its job."""
        return cls(Status.UNHEALTHY, reason, message, details)

    @classmethod
    def unknown(cls, reason: Reason, message: str, **details: Any) -> CheckResult:
        """An unknown result: the agent could not tell."""
        return cls(Status.UNKNOWN, reason, message, details)


def rate(
    findings: Iterable[tuple[bool, Reason, str]],
    **details: Any,
) -> CheckResult:
    """Fold degraded-threshold findings into one result: degraded at the first breach found.

    Each finding is `(breached, reason, message)`; the messages of every breach are joined so the
    operator sees all of them, and the first breach's reason labels the result.
    """
    breaches = [(reason, message) for breached, reason, message in findings if breached]
    if not breaches:
        return CheckResult.healthy(**details)
    message = "; ".join(m for _, m in breaches)
    return CheckResult.degraded(breaches[0][0], message, **details)
