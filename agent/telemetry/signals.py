"""The signal catalogue: every metric Vigil emits, declared once. Instruments are made from it."""

from __future__ import annotations

import dataclasses
import enum
import re

# Seconds buckets: HTTP semconv advice, widened to catch checks that run into their deadline.
DURATION_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


class Instrument(enum.StrEnum):
    """The OTel instrument kind a signal is created as."""

    COUNTER = "counter"
    HISTOGRAM = "histogram"
    UP_DOWN_COUNTER = "up_down_counter"
    OBSERVABLE_GAUGE = "observable_gauge"
    OBSERVABLE_COUNTER = "observable_counter"


_PROMETHEUS_TYPE = {
    Instrument.COUNTER: "counter",
    Instrument.HISTOGRAM: "histogram",
    Instrument.UP_DOWN_COUNTER: "gauge",
    Instrument.OBSERVABLE_GAUGE: "gauge",
    Instrument.OBSERVABLE_COUNTER: "counter",
}
_UNIT_SUFFIX = {"s": "seconds", "By": "bytes"}


@dataclasses.dataclass(frozen=True, slots=True)
class Signal:
    """One metric: its OTel identity, its attributes and the Prometheus family it becomes.

    `detail` names the `CheckResult.details` key a per-kind gauge is read from; `kinds` limits it
    to the check kinds that report it. `scope` says who emits it: `checks` always, `degradation`
    when the degradation engine is enabled, `library` whoever holds breakers, fallbacks and work
    queues (services embedding the library, and the agent for its shared Redis store), `limits`
    whoever holds rate limiters (services, and the agent always, for its own HTTP API).
    """

    name: str
    instrument: Instrument
    unit: str
    description: str
    attributes: tuple[str, ...]
    buckets: tuple[float, ...] = ()
    detail: str | None = None
    kinds: tuple[str, ...] = ()
    informational: bool = False
    scope: str = "checks"

    @property
    def prometheus_name(self) -> str:
        """The family name on `/metrics`, by the OTel-to-Prometheus naming rules."""
        return prometheus_name(self.name, self.unit, self.prometheus_type == "counter")

    @property
    def prometheus_type(self) -> str:
        """The Prometheus metric type of the family."""
        return _PROMETHEUS_TYPE[self.instrument]


def prometheus_name(name: str, unit: str, counter: bool) -> str:
    """OTel name and unit to a Prometheus family name (the spec's compatibility rules).

    Invalid characters become `_`, seconds and bytes become suffixes, `{annotation}` units are
    dropped, and monotonic counters end in `_total`.
    """
    result = re.sub(r"[^a-zA-Z0-9_:]", "_", name)
    suffix = _UNIT_SUFFIX.get(unit, "")
    if suffix and not result.endswith(suffix):
        result = f"{result}_{suffix}"
    if counter and not result.endswith("_total"):
        result = f"{result}_total"
    return result


_CHECK = ("check", "kind")
_QUEUE_KINDS = ("redis_list", "redis_stream", "postgres_queue")


def _detail(
    name: str, unit: str, description: str, detail: str, *kinds: str, informational: bool = False
) -> Signal:
    """A per-kind gauge published from the latest result's `details[detail]`."""
    return Signal(
        name,
        Instrument.OBSERVABLE_GAUGE,
        unit,
        description,
        ("check",),
        (),
        detail,
        kinds,
        informational,
    )


def _queue(name: str, instrument: Instrument, unit: str, description: str, *labels: str) -> Signal:
    """A work queue signal (`agent.queue`), labelled with the queue's name."""
    buckets = DURATION_BUCKETS if instrument is Instrument.HISTOGRAM else ()
    return Signal(name, instrument, unit, description, ("queue", *labels), buckets, scope="queue")


CATALOGUE: tuple[Signal, ...] = (
    # --- checks, every kind -------------------------------------------------------------------
    Signal(
        "vigil.check.status",
        Instrument.OBSERVABLE_GAUGE,
        "",
        "Current status of a check: one series per state, 1 for the current one.",
        ("check", "kind", "critical", "state"),
    ),
    Signal(
        "vigil.check.success",
        Instrument.OBSERVABLE_GAUGE,
        "",
        "1 when the latest run of a check was healthy or degraded, else 0.",
        _CHECK,
        informational=True,
    ),
    Signal(
        "vigil.check.duration",
        Instrument.HISTOGRAM,
        "s",
        "Duration of check runs, deadline included.",
        _CHECK,
        DURATION_BUCKETS,
    ),
    Signal(
        "vigil.check.runs",
        Instrument.OBSERVABLE_COUNTER,
        "{run}",
        "Check runs by outcome (the status the run produced).",
        (*_CHECK, "outcome"),
    ),
    Signal(
        "vigil.check.failures",
        Instrument.OBSERVABLE_COUNTER,
        "{failure}",
        "Unhealthy or unknown check runs by reason (a closed set).",
        (*_CHECK, "reason"),
    ),
    Signal(
        "vigil.check.last_run.timestamp",
        Instrument.OBSERVABLE_GAUGE,
        "s",
        "Unix time the latest run of a check finished.",
        _CHECK,
    ),
    Signal(
        "vigil.check.timeout",
        Instrument.OBSERVABLE_GAUGE,
        "s",
        "Configured deadline of a check.",
        _CHECK,
        informational=True,
    ),
    Signal(
        "vigil.check.interval",
        Instrument.OBSERVABLE_GAUGE,
        "s",
        "Configured interval of a check; a result older than twice this is stale.",
        _CHECK,
    ),
    Signal(
        "vigil.checks.in_flight",
        Instrument.OBSERVABLE_GAUGE,
        "{run}",
        "Check runs executing now.",
        (),
    ),
    Signal(
        "vigil.checks.abandoned",
        Instrument.OBSERVABLE_COUNTER,
        "{run}",
        "Check runs that ignored cancellation at their deadline and were left behind.",
        _CHECK,
    ),
    Signal(
        "vigil.health.status",
        Instrument.OBSERVABLE_GAUGE,
        "",
        "Overall status: one series per state, 1 for the current one.",
        ("state",),
    ),
    Signal(
        "vigil.agent.info",
        Instrument.OBSERVABLE_GAUGE,
        "",
        "Always 1; carries the agent version.",
        ("version",),
    ),
    Signal(
        "vigil.agent.start.timestamp",
        Instrument.OBSERVABLE_GAUGE,
        "s",
        "Unix time the agent process started.",
        (),
    ),
    _detail(
        "vigil.heartbeat.last.timestamp",
        "s",
        "Unix time the heartbeat source (Alertmanager's Watchdog) last arrived.",
        "last_beat_timestamp",
        "heartbeat",
        informational=True,
    ),
    # --- degradation --------------------------------------------------------------------------
    Signal(
        "vigil.degradation.level",
        Instrument.OBSERVABLE_GAUGE,
        "",
        "Effective degradation level: one series per level, 1 for the current one.",
        ("level",),
        scope="degradation",
    ),
    Signal(
        "vigil.degradation.level.index",
        Instrument.OBSERVABLE_GAUGE,
        "",
        "Effective degradation level as a number: 0 full, 1 degraded, 2 minimal, 3 maintenance.",
        (),
        scope="degradation",
    ),
    Signal(
        "vigil.degradation.transitions",
        Instrument.OBSERVABLE_COUNTER,
        "{transition}",
        "Level changes by from, to and cause (alert, recovery, pin, unpin, expiry).",
        ("from", "to", "cause"),
        scope="degradation",
    ),
    Signal(
        "vigil.degradation.suppressed",
        Instrument.OBSERVABLE_COUNTER,
        "{transition}",
        "Recoveries held back, by reason (hold, flap).",
        ("reason",),
        scope="degradation",
    ),
    Signal(
        "vigil.degradation.alerts.active",
        Instrument.OBSERVABLE_GAUGE,
        "{alert}",
        "Firing alerts the engine holds.",
        (),
        scope="degradation",
    ),
    Signal(
        "vigil.degradation.webhook.requests",
        Instrument.OBSERVABLE_COUNTER,
        "{request}",
        "Webhook requests by outcome (accepted, unauthorized, invalid, too_large, unavailable, "
        "overloaded).",
        ("outcome",),
        scope="degradation",
    ),
    Signal(
        "vigil.degradation.pinned",
        Instrument.OBSERVABLE_GAUGE,
        "",
        "1 while a manual pin sets the level.",
        (),
        scope="degradation",
    ),
    Signal(
        "vigil.degradation.pin.set.timestamp",
        Instrument.OBSERVABLE_GAUGE,
        "s",
        "Unix time the current pin was set (absent when not pinned).",
        (),
        scope="degradation",
    ),
    Signal(
        "vigil.degradation.pin.expiry.timestamp",
        Instrument.OBSERVABLE_GAUGE,
        "s",
        "Unix time the current pin expires (absent when not pinned or pinned until unpinned).",
        (),
        scope="degradation",
    ),
    Signal(
        "vigil.degradation.state.staleness",
        Instrument.OBSERVABLE_GAUGE,
        "s",
        "Seconds the engine's state has not been confirmed by its store (0 when in sync).",
        (),
        scope="degradation",
    ),
    Signal(
        "vigil.degradation.flags.off",
        Instrument.OBSERVABLE_GAUGE,
        "",
        "1 for each flag a rule switched off because of firing alerts.",
        ("flag",),
        scope="degradation",
    ),
    Signal(
        "vigil.degradation.reconcile.runs",
        Instrument.OBSERVABLE_COUNTER,
        "{run}",
        "Polls of Alertmanager's alert list by outcome (ok, unreachable, invalid, unavailable).",
        ("outcome",),
        scope="degradation",
    ),
    Signal(
        "vigil.flags.evaluations",
        Instrument.OBSERVABLE_COUNTER,
        "{evaluation}",
        "Flag evaluations by flag and reason.",
        ("flag", "reason"),
        scope="degradation",
    ),
    # --- library: breakers and fallbacks (published by whoever holds them) -------------------
    Signal(
        "vigil.breaker.state",
        Instrument.OBSERVABLE_GAUGE,
        "",
        "Circuit breaker state: one series per state, 1 for the current one.",
        ("breaker", "state"),
        scope="library",
    ),
    Signal(
        "vigil.breaker.calls",
        Instrument.OBSERVABLE_COUNTER,
        "{call}",
        "Calls through a breaker by outcome (successful, failed, ignored, not_permitted, ...).",
        ("breaker", "outcome"),
        scope="library",
    ),
    Signal(
        "vigil.fallback.uses",
        Instrument.OBSERVABLE_COUNTER,
        "{call}",
        "Fallback calls by the source that served them (primary, cached, static, alternative).",
        ("fallback", "source"),
        scope="library",
    ),
    Signal(
        "vigil.fallback.exhausted",
        Instrument.OBSERVABLE_COUNTER,
        "{call}",
        "Fallback calls that every strategy failed.",
        ("fallback",),
        scope="library",
    ),
    # --- library: work queues (published by whoever holds them) -------------------------------
    _queue("vigil.queue.depth", Instrument.OBSERVABLE_GAUGE, "{job}", "Jobs waiting in a queue."),
    _queue(
        "vigil.queue.capacity",
        Instrument.OBSERVABLE_GAUGE,
        "{job}",
        "Jobs a queue can hold waiting.",
    ),
    _queue("vigil.queue.wait", Instrument.HISTOGRAM, "s", "Time jobs waited for a worker."),
    _queue("vigil.queue.processing", Instrument.HISTOGRAM, "s", "Duration of job attempts."),
    _queue(
        "vigil.queue.items",
        Instrument.OBSERVABLE_COUNTER,
        "{job}",
        "Jobs by final outcome (completed, failed, expired, rejected, cancelled) and retries "
        "(retried).",
        "outcome",
    ),
    _queue("vigil.queue.workers", Instrument.OBSERVABLE_GAUGE, "{worker}", "Workers of a queue."),
    _queue(
        "vigil.backpressure.active", Instrument.OBSERVABLE_GAUGE, "", "1 while backpressure is on."
    ),
    # --- rate limiters (whoever holds them: services, and the agent for its own API) ---------
    Signal(
        "vigil.ratelimit.decisions",
        Instrument.OBSERVABLE_COUNTER,
        "{decision}",
        "Rate-limit decisions by limiter and outcome (allowed, denied, never, fail_open, "
        "fail_closed).",
        ("limiter", "outcome"),
        scope="limits",
    ),
    Signal(
        "vigil.ratelimit.utilization",
        Instrument.OBSERVABLE_GAUGE,
        "",
        "Peak used share (0 to 1) of any key's quota since the collection before last.",
        ("limiter",),
        scope="limits",
    ),
    Signal(
        "vigil.ratelimit.storage.errors",
        Instrument.OBSERVABLE_COUNTER,
        "{error}",
        "Decisions the limiter's storage failed to make (timeouts, connection and script "
        "errors); each was answered by the failure policy.",
        ("limiter",),
        scope="limits",
    ),
    Signal(
        "vigil.ratelimit.factor",
        Instrument.OBSERVABLE_GAUGE,
        "",
        "Throttling factor applied to the limiter's configured rates (1: unthrottled).",
        ("limiter",),
        scope="limits",
    ),
    # --- postgres -----------------------------------------------------------------------------
    _detail(
        "vigil.postgres.connections.used",
        "{connection}",
        "Client backends connected to the server.",
        "connections_used",
        "postgres",
    ),
    _detail(
        "vigil.postgres.connections.max",
        "{connection}",
        "The server's max_connections.",
        "connections_max",
        "postgres",
    ),
    _detail(
        "vigil.postgres.replication.lag",
        "s",
        "Replay lag of a replica (absent on a primary).",
        "replication_lag_seconds",
        "postgres",
        informational=True,
    ),
    _detail(
        "vigil.postgres.replica",
        "",
        "1 when the server is in recovery (a replica).",
        "replica",
        "postgres",
        informational=True,
    ),
    _detail(
        "vigil.postgres.wal_receiver.up",
        "",
        "1 when a standby's WAL receiver runs (absent on a primary).",
        "wal_receiver_up",
        "postgres",
        informational=True,
    ),
    # --- redis --------------------------------------------------------------------------------
    _detail(
        "vigil.redis.memory.used", "By", "used_memory from INFO.", "memory_used_bytes", "redis"
    ),
    _detail(
        "vigil.redis.memory.max",
        "By",
        "maxmemory from INFO; 0 means no limit.",
        "memory_max_bytes",
        "redis",
    ),
    _detail(
        "vigil.redis.clients.connected",
        "{client}",
        "connected_clients from INFO.",
        "clients_connected",
        "redis",
        informational=True,
    ),
    _detail(
        "vigil.redis.clients.blocked",
        "{client}",
        "blocked_clients from INFO.",
        "clients_blocked",
        "redis",
        informational=True,
    ),
    Signal(
        "vigil.redis.connections.rejected",
        Instrument.OBSERVABLE_COUNTER,
        "{connection}",
        "rejected_connections from INFO (resets when the server restarts).",
        ("check",),
        (),
        "rejected_connections",
        ("redis",),
        informational=True,
    ),
    Signal(
        "vigil.redis.keys.evicted",
        Instrument.OBSERVABLE_COUNTER,
        "{key}",
        "evicted_keys from INFO (resets when the server restarts).",
        ("check",),
        (),
        "evicted_keys",
        ("redis",),
        informational=True,
    ),
    _detail(
        "vigil.redis.rdb.last_save.success",
        "",
        "1 when the last RDB save succeeded.",
        "rdb_last_save_ok",
        "redis",
        informational=True,
    ),
    _detail(
        "vigil.redis.replica",
        "",
        "1 when the server's role is replica.",
        "replica",
        "redis",
        informational=True,
    ),
    _detail(
        "vigil.redis.replication.link.up",
        "",
        "1 when a replica's link to its primary is up (absent on a primary).",
        "replication_link_up",
        "redis",
        informational=True,
    ),
    # --- external queues ----------------------------------------------------------------------
    _detail(
        "vigil.external_queue.depth",
        "{item}",
        "Items waiting in a watched queue (a stream group: pending plus lag).",
        "depth",
        *_QUEUE_KINDS,
    ),
    _detail(
        "vigil.external_queue.capacity",
        "{item}",
        "Configured capacity of a watched queue.",
        "capacity",
        *_QUEUE_KINDS,
    ),
    _detail(
        "vigil.external_queue.oldest.age",
        "s",
        "Age of the oldest waiting item; 0 when the queue is empty.",
        "oldest_age_seconds",
        "redis_stream",
        "postgres_queue",
    ),
    _detail(
        "vigil.external_queue.pending",
        "{entry}",
        "Stream entries delivered to the consumer group and not acknowledged.",
        "pending",
        "redis_stream",
    ),
    _detail(
        "vigil.external_queue.lag",
        "{entry}",
        "Stream entries not yet delivered to the consumer group.",
        "lag",
        "redis_stream",
    ),
    # --- http ---------------------------------------------------------------------------------
    _detail(
        "vigil.http.status_code", "", "Status code of the latest response.", "status_code", "http"
    ),
    _detail(
        "vigil.tls.cert.expiry.timestamp",
        "s",
        "Unix time the served certificate expires.",
        "cert_expiry_timestamp",
        "http",
    ),
    # --- disk ---------------------------------------------------------------------------------
    _detail(
        "vigil.disk.free",
        "By",
        "Bytes available to the agent at the path.",
        "free_bytes",
        "disk",
        informational=True,
    ),
    _detail(
        "vigil.disk.total",
        "By",
        "Size of the file system at the path.",
        "total_bytes",
        "disk",
        informational=True,
    ),
    _detail(
        "vigil.disk.free.ratio",
        "",
        "Share of the file system available, 0 to 1.",
        "free_ratio",
        "disk",
    ),
)

BY_NAME = {s.name: s for s in CATALOGUE}
