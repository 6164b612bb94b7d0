"""The Prometheus reader behind `/metrics`: collects from the SDK and writes text format 0.0.4.

It renders straight from the SDK's collected points instead of translating them into
prometheus_client objects first (what opentelemetry-exporter-prometheus does), and caches the
rendered label set of every series: a 1,000-check exposition then costs about what
prometheus_client's own `generate_latest` costs for the same series (see benchmarks/probes.py).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    HistogramDataPoint,
    Metric,
    MetricReader,
    MetricsData,
    NumberDataPoint,
    Sum,
)
from opentelemetry.sdk.metrics.export import Histogram as HistogramData

from agent.telemetry.catalogue.model import prometheus_name

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_CUMULATIVE = dict.fromkeys(
    (
        Counter,
        UpDownCounter,
        Histogram,
        ObservableCounter,
        ObservableUpDownCounter,
        ObservableGauge,
    ),
    AggregationTemporality.CUMULATIVE,
)
_LABEL_CACHE_LIMIT = 500_000


def format_value(value: float) -> str:
    """A sample value as Prometheus writes it (`+Inf`, `NaN`, floats in shortest form)."""
    value = float(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(value)


def _escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _label_value(value: Any) -> str:
    # OTel booleans (the SDK's own otel.metric.overflow) read as Prometheus writes them.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _label_name(key: str) -> str:
    name = "".join(c if c.isalnum() or c == "_" else "_" for c in key)
    return f"_{name}" if name[:1].isdigit() else name


class PrometheusTextReader(MetricReader):
    """A pull reader: `render()` collects from the SDK and returns the text exposition."""

    def __init__(self, cardinality_limits: Mapping[type, int] | None = None) -> None:
        super().__init__(
            preferred_temporality=_CUMULATIVE,  # type: ignore[arg-type]
            cardinality_limits=dict(cardinality_limits or {}),
        )
        self._latest: MetricsData | None = None
        self._labels: dict[tuple[tuple[str, Any], ...], str] = {}
        self._lock = threading.Lock()

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        self._latest = metrics_data

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        """Nothing to release: the reader holds no connection."""

    def render(self) -> bytes:
        """Collect now and return the exposition; one render at a time."""
        with self._lock:
            self._latest = None
            self.collect()
            # Not kept between scrapes: a third of a megabyte of points with 100 checks.
            data, self._latest = self._latest, None
            if data is None:
                return b""
            if len(self._labels) > _LABEL_CACHE_LIMIT:
                self._labels.clear()
            out: list[str] = []
            for metric in _metrics(data):
                self._family(metric, out)
            return "".join(out).encode("utf-8")

    def _label_text(self, attributes: Mapping[str, Any] | None) -> str:
        """`k="v",…` for `attributes`, cached: series keep their label sets across scrapes."""
        if not attributes:
            return ""
        key = tuple(attributes.items())
        text = self._labels.get(key)
        if text is None:
            text = ",".join(
                f'{_label_name(k)}="{_escape_label(_label_value(v))}"'
                for k, v in attributes.items()
            )
            self._labels[key] = text
        return text

    def _family(self, metric: Metric, out: list[str]) -> None:
        data = metric.data
        if isinstance(data, Sum):
            counter = data.is_monotonic
            kind = "counter" if counter else "gauge"
        elif isinstance(data, Gauge):
            counter, kind = False, "gauge"
        elif isinstance(data, HistogramData):
            counter, kind = False, "histogram"
        else:  # exponential histograms cannot be written in the text format
            return
        name = prometheus_name(metric.name, metric.unit or "", counter)
        out.append(f"# HELP {name} {_escape_help(metric.description or '')}\n")
        out.append(f"# TYPE {name} {kind}\n")
        if kind == "histogram":
            for point in data.data_points:
                assert isinstance(point, HistogramDataPoint)
                self._histogram(name, point, out)
            return
        for point in data.data_points:
            assert isinstance(point, NumberDataPoint)
            labels = self._label_text(point.attributes)
            series = f"{name}{{{labels}}}" if labels else name
            out.append(f"{series} {format_value(point.value)}\n")

    def _histogram(self, name: str, point: HistogramDataPoint, out: list[str]) -> None:
        labels = self._label_text(point.attributes)
        prefix = f"{labels}," if labels else ""
        cumulative = 0
        for bound, count in zip(point.explicit_bounds, point.bucket_counts, strict=False):
            cumulative += count
            out.append(f'{name}_bucket{{{prefix}le="{format_value(bound)}"}} {cumulative}.0\n')
        out.append(f'{name}_bucket{{{prefix}le="+Inf"}} {point.count}.0\n')
        braces = f"{{{labels}}}" if labels else ""
        out.append(f"{name}_sum{braces} {format_value(point.sum)}\n")
        out.append(f"{name}_count{braces} {point.count}.0\n")


def _metrics(data: MetricsData) -> Iterable[Metric]:
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            yield from scope.metrics
