"""What a signal is: its instrument, unit, attributes, and the Prometheus family it becomes."""

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


CHECK = ("check", "kind")
QUEUE_KINDS = ("redis_list", "redis_stream", "postgres_queue")


def detail(
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


def queue_signal(
    name: str, instrument: Instrument, unit: str, description: str, *labels: str
) -> Signal:
    """A work queue signal (`agent.queue`), labelled with the queue's name."""
    buckets = DURATION_BUCKETS if instrument is Instrument.HISTOGRAM else ()
    return Signal(name, instrument, unit, description, ("queue", *labels), buckets, scope="queue")
