"""Signals of the degradation engine, its webhook and flags (emitted when it is enabled)."""

from __future__ import annotations

from agent.telemetry.catalogue.model import Instrument, Signal

DEGRADATION: tuple[Signal, ...] = (
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
)
