"""Signals of every check run, the overall status and the agent itself (emitted always)."""

from __future__ import annotations

from agent.telemetry.catalogue.model import CHECK, DURATION_BUCKETS, Instrument, Signal, detail

CHECKS: tuple[Signal, ...] = (
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
        CHECK,
        informational=True,
    ),
    Signal(
        "vigil.check.duration",
        Instrument.HISTOGRAM,
        "s",
        "Duration of check runs, deadline included.",
        CHECK,
        DURATION_BUCKETS,
    ),
    Signal(
        "vigil.check.runs",
        Instrument.OBSERVABLE_COUNTER,
        "{run}",
        "Check runs by outcome (the status the run produced).",
        (*CHECK, "outcome"),
    ),
    Signal(
        "vigil.check.failures",
        Instrument.OBSERVABLE_COUNTER,
        "{failure}",
        "Unhealthy or unknown check runs by reason (a closed set).",
        (*CHECK, "reason"),
    ),
    Signal(
        "vigil.check.last_run.timestamp",
        Instrument.OBSERVABLE_GAUGE,
        "s",
        "Unix time the latest run of a check finished.",
        CHECK,
    ),
    Signal(
        "vigil.check.timeout",
        Instrument.OBSERVABLE_GAUGE,
        "s",
        "Configured deadline of a check.",
        CHECK,
        informational=True,
    ),
    Signal(
        "vigil.check.interval",
        Instrument.OBSERVABLE_GAUGE,
        "s",
        "Configured interval of a check; a result older than twice this is stale.",
        CHECK,
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
        CHECK,
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
    detail(
        "vigil.heartbeat.last.timestamp",
        "s",
        "Unix time the heartbeat source (Alertmanager's Watchdog) last arrived.",
        "last_beat_timestamp",
        "heartbeat",
        informational=True,
    ),
)
