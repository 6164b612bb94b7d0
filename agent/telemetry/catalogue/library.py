"""Signals of the library's primitives: breakers, fallbacks, work queues and rate limiters."""

from __future__ import annotations

from agent.telemetry.catalogue.model import Instrument, Signal, queue_signal

LIBRARY: tuple[Signal, ...] = (
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
    queue_signal(
        "vigil.queue.depth", Instrument.OBSERVABLE_GAUGE, "{job}", "Jobs waiting in a queue."
    ),
    queue_signal(
        "vigil.queue.capacity",
        Instrument.OBSERVABLE_GAUGE,
        "{job}",
        "Jobs a queue can hold waiting.",
    ),
    queue_signal("vigil.queue.wait", Instrument.HISTOGRAM, "s", "Time jobs waited for a worker."),
    queue_signal("vigil.queue.processing", Instrument.HISTOGRAM, "s", "Duration of job attempts."),
    queue_signal(
        "vigil.queue.items",
        Instrument.OBSERVABLE_COUNTER,
        "{job}",
        "Jobs by final outcome (completed, failed, expired, rejected, cancelled) and retries "
        "(retried).",
        "outcome",
    ),
    queue_signal(
        "vigil.queue.workers", Instrument.OBSERVABLE_GAUGE, "{worker}", "Workers of a queue."
    ),
    queue_signal(
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
        "The busiest key's used share of its quota, 0 to 1: 1 after a refusal since the "
        "collection before last.",
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
)
