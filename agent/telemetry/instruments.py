"""Creates OTel instruments from the signal catalogue, so no metric name is written twice."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from agent.telemetry.catalogue import BY_NAME
from agent.telemetry.catalogue.model import Instrument

Callback = Callable[[CallbackOptions], Iterable[Observation]]


def create_instruments(
    meter: Meter, names: Iterable[str], callbacks: Mapping[str, Sequence[Callback]]
) -> dict[str, Any]:
    """Instruments for the catalogue signals `names`; observable ones take their `callbacks`.

    An observable signal without a callback is a wiring bug, so it raises at start-up instead of
    exporting a family that never has samples.
    """
    made: dict[str, Any] = {}
    for name in names:
        signal = BY_NAME[name]
        common = {"name": signal.name, "unit": signal.unit, "description": signal.description}
        match signal.instrument:
            case Instrument.COUNTER:
                made[name] = meter.create_counter(**common)
            case Instrument.UP_DOWN_COUNTER:
                made[name] = meter.create_up_down_counter(**common)
            case Instrument.HISTOGRAM:
                made[name] = meter.create_histogram(
                    **common, explicit_bucket_boundaries_advisory=list(signal.buckets) or None
                )
            case Instrument.OBSERVABLE_GAUGE | Instrument.OBSERVABLE_COUNTER:
                if not callbacks.get(name):
                    msg = f"observable signal {name} has no callback"
                    raise ValueError(msg)
                create = (
                    meter.create_observable_gauge
                    if signal.instrument is Instrument.OBSERVABLE_GAUGE
                    else meter.create_observable_counter
                )
                made[name] = create(**common, callbacks=list(callbacks[name]))
    return made
